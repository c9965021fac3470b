//! The integration tests: one binary (each file used to link its own copy of the
//! dependency tree and of `common`). `cargo test --test it AREA::` runs one area.

mod common;

mod base_images;
mod build_logs;
mod buildkit;
mod buildkit_inline_cache;
mod buildkitd;
mod crd;
mod cred_helpers;
mod daemon_filesync;
mod examples;
mod executor;
mod family;
mod fuzz_corpus;
mod git_http;
mod git_triggers;
mod gitops;
mod graph;
mod helm;
mod helm_builder;
mod helm_sidecar;
mod image;
mod kube;
mod kube_cluster;
mod kube_logs;
mod local_build;
mod mesos;
mod mesos_double;
mod mesos_engine;
mod mesos_logs;
mod mesos_staging;
mod one_shot;
mod private_ca;
mod pull_policy;
mod remote_sources;
mod scripts;
mod tls_daemon;
mod triggers_context;
mod watch_folder;
