//! The command line as a user types it: defaults, conflicts, env fallbacks.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use clap::CommandFactory;
use clap::error::ErrorKind;
use secrecy::ExposeSecret;

use super::*;
use crate::runner::Builder;

/// Parsing reads the environment (`env = ...` flags): tests that set a variable
/// hold this, and so does every parse, so no test sees another's variables.
static ENV: Mutex<()> = Mutex::new(());

fn env_lock() -> MutexGuard<'static, ()> {
    ENV.lock().unwrap_or_else(|e| e.into_inner())
}

/// `slipway ARGS...`, parsed as `main` does.
pub(super) fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
    let _env = env_lock();
    Cli::try_parse_from(std::iter::once("slipway").chain(args.iter().copied()))
}

/// The message a user sees for a command line clap refuses.
pub(super) fn refused(args: &[&str], kind: ErrorKind) -> String {
    let e = parse(args).expect_err("the command line is refused");
    assert_eq!(e.kind(), kind, "{e}");
    e.to_string()
}

/// Sets `vars` while `f` runs (holding the lock), then removes them again.
fn with_env<T>(vars: &[(&str, &str)], f: impl FnOnce() -> T) -> T {
    let _env = env_lock();
    for (k, v) in vars {
        // SAFETY: every test that reads these variables (through clap) holds `ENV`
        unsafe { std::env::set_var(k, v) };
    }
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    for (k, _) in vars {
        // SAFETY: as above
        unsafe { std::env::remove_var(k) };
    }
    out.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Parse without taking the lock again (inside [`with_env`]).
fn parse_locked(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("slipway").chain(args.iter().copied())).unwrap()
}

#[test]
fn the_command_line_definition_is_consistent() {
    // clap checks names, conflicts and requirements only when asked (or in debug
    // builds at parse time, for the subcommand used)
    Cli::command().debug_assert();
}

#[test]
fn watch_defaults_run_two_builds_locally_and_keep_logs_in_the_folder() {
    let cli = parse(&["watch", "builds"]).unwrap();
    assert_eq!(cli.log_level, "info");
    assert!(!cli.log_json);
    let settings = cli.command.reconciler_settings().unwrap();
    let Command::Watch {
        dir,
        backend,
        once,
        max_resource_file_bytes,
        ..
    } = cli.command
    else {
        panic!("not watch");
    };
    assert_eq!(dir, PathBuf::from("builds"));
    assert_eq!(backend.backend, BackendKind::Local);
    assert_eq!(backend.builder, Builder::Auto);
    assert!(!once);
    assert_eq!(max_resource_file_bytes, 1536 * 1024);

    assert!(!settings.once);
    let q = &settings.queue;
    assert_eq!(
        (q.concurrency, q.max_attempts, q.backoff, q.max_auto),
        (2, 4, Duration::from_secs(5), 1)
    );
    let logs = q.logs.as_ref().expect("watch keeps build logs");
    assert_eq!(logs.root, Path::new("builds/.slipway/logs"));
    assert_eq!(logs.retention.keep, 5);
    assert_eq!(logs.retention.max_age, Duration::from_secs(7 * 86400));
    assert_eq!(logs.max_bytes, crate::logs::DEFAULT_MAX_BYTES);
    let t = &settings.triggers;
    assert!(t.enabled);
    assert_eq!(
        (t.poll.git, t.poll.base, t.poll.url),
        (
            Duration::from_secs(60),
            Duration::from_secs(600),
            Duration::from_secs(300)
        )
    );
    assert!(t.webhook.is_none(), "no webhook unless asked for");
}

#[test]
fn watch_once_and_the_queue_flags_reach_the_reconciler() {
    let cli = parse(&[
        "watch",
        "d",
        "--once",
        "--concurrency",
        "8",
        "--max-attempts",
        "1",
        "--retry-backoff",
        "500ms",
        "--max-auto-builds",
        "3",
        "--git-poll",
        "0",
        "--log-retention",
        "2,1h",
        "--max-resource-file-bytes",
        "1000",
    ])
    .unwrap();
    let s = cli.command.reconciler_settings().unwrap();
    assert!(s.once);
    assert_eq!(
        (
            s.queue.concurrency,
            s.queue.max_attempts,
            s.queue.backoff,
            s.queue.max_auto
        ),
        (8, 1, Duration::from_millis(500), 3)
    );
    assert_eq!(
        s.triggers.poll.git,
        Duration::ZERO,
        "0 turns git polling off"
    );
    let logs = s.queue.logs.unwrap();
    assert_eq!(
        (logs.retention.keep, logs.retention.max_age),
        (2, Duration::from_secs(3600))
    );
    let Command::Watch {
        max_resource_file_bytes,
        ..
    } = cli.command
    else {
        panic!("not watch");
    };
    assert_eq!(max_resource_file_bytes, 1000);
}

#[test]
fn a_bad_duration_names_the_flag_and_the_units() {
    let m = refused(
        &["watch", "d", "--retry-backoff", "5 parsecs"],
        ErrorKind::ValueValidation,
    );
    assert!(m.contains("--retry-backoff"), "{m}");
    assert!(m.contains("use ms, s, m, h or d"), "{m}");
    let m = refused(
        &["watch", "d", "--git-poll", "soon"],
        ErrorKind::ValueValidation,
    );
    assert!(m.contains("expected a duration such as 5s"), "{m}");
}

#[test]
fn watch_needs_its_folder() {
    let m = refused(&["watch"], ErrorKind::MissingRequiredArgument);
    assert!(m.contains("<DIR>"), "{m}");
}

#[test]
fn the_log_flags_are_global() {
    let cli = parse(&["crd", "--log-level", "debug", "--log-json"]).unwrap();
    assert_eq!(cli.log_level, "debug");
    assert!(cli.log_json);
}

#[test]
fn only_watch_and_controller_have_reconciler_settings() {
    for args in [
        &["crd"][..],
        &["build", "Dockerfile"],
        &["logs", "x"],
        &["graph"],
    ] {
        assert!(
            parse(args).unwrap().command.reconciler_settings().is_none(),
            "{args:?}"
        );
    }
}

#[test]
fn controller_defaults_elect_a_leader_and_keep_logs_in_the_temp_dir() {
    let cli = parse(&["controller"]).unwrap();
    let s = cli.command.reconciler_settings().unwrap();
    assert!(!s.once, "the controller never stops by itself");
    assert_eq!(
        s.queue.logs.unwrap().root,
        std::env::temp_dir().join("slipway-logs")
    );
    let Command::Controller { args, .. } = cli.command else {
        panic!("not controller");
    };
    assert!(args.leader_elect);
    assert_eq!(args.lease_name, "slipway-controller");
    assert_eq!(args.lease_duration, Duration::from_secs(15));
    assert_eq!(args.framework_id_configmap, "slipway-mesos-framework");
    assert_eq!(args.metrics_listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(args.namespace, None);
}

#[test]
fn controller_leader_election_can_be_turned_off_and_the_log_dir_moved() {
    let cli = parse(&[
        "controller",
        "--leader-elect",
        "false",
        "--log-dir",
        "/var/log/slipway",
    ])
    .unwrap();
    let s = cli.command.reconciler_settings().unwrap();
    assert_eq!(s.queue.logs.unwrap().root, Path::new("/var/log/slipway"));
    let Command::Controller { args, .. } = cli.command else {
        panic!("not controller");
    };
    assert!(!args.leader_elect);
    // `--leader-elect` takes a value: a bare flag would silently mean "true"
    refused(&["controller", "--leader-elect"], ErrorKind::InvalidValue);
}

#[test]
fn the_controller_reads_the_pods_downward_api_variables() {
    let cli = with_env(
        &[
            ("SLIPWAY_NAMESPACE", "builds"),
            ("POD_NAMESPACE", "slipway-system"),
            ("POD_NAME", "slipway-0"),
            ("SLIPWAY_LOG_DIR", "/logs"),
        ],
        || parse_locked(&["controller"]),
    );
    let Command::Controller { args, .. } = cli.command else {
        panic!("not controller");
    };
    assert_eq!(args.namespace.as_deref(), Some("builds"));
    assert_eq!(args.pod_namespace.as_deref(), Some("slipway-system"));
    assert_eq!(args.identity.as_deref(), Some("slipway-0"));
    assert_eq!(args.log_dir(), Path::new("/logs"));
}

#[test]
fn backend_and_builder_come_from_the_environment_and_flags_win() {
    let (from_env, flags_win) = with_env(
        &[
            ("SLIPWAY_BACKEND", "mesos"),
            ("SLIPWAY_BUILDER", "classic"),
            ("SLIPWAY_MESOS_MASTER", "m1:5050,m2:5050"),
            ("SLIPWAY_GIT_CREDENTIALS", "/creds"),
        ],
        || {
            (
                parse_locked(&["watch", "d"]),
                parse_locked(&["watch", "d", "--backend", "local", "--builder", "buildkitd"]),
            )
        },
    );
    let Command::Watch { backend, .. } = from_env.command else {
        panic!("not watch");
    };
    assert_eq!(backend.backend, BackendKind::Mesos);
    assert_eq!(backend.builder, Builder::Classic);
    assert_eq!(backend.mesos.masters, ["m1:5050", "m2:5050"]);
    assert_eq!(backend.git_credentials, Some(PathBuf::from("/creds")));
    let Command::Watch { backend, .. } = flags_win.command else {
        panic!("not watch");
    };
    assert_eq!(backend.backend, BackendKind::Local);
    assert_eq!(backend.builder, Builder::Buildkitd);
}

#[test]
fn an_unknown_backend_or_builder_lists_the_choices() {
    let m = refused(&["watch", "d", "--backend", "k8s"], ErrorKind::InvalidValue);
    assert!(m.contains("local") && m.contains("mesos"), "{m}");
    let m = refused(
        &["build", "Dockerfile", "--builder", "kaniko"],
        ErrorKind::InvalidValue,
    );
    assert!(
        m.contains("buildkit-daemon") && m.contains("classic"),
        "{m}"
    );
}

#[test]
fn logs_defaults_read_the_current_folder() {
    let Command::Logs(a) = parse(&["logs", "web"]).unwrap().command else {
        panic!("not logs");
    };
    assert_eq!(a.name, "web");
    assert_eq!(a.namespace, "default");
    assert_eq!(a.dir, PathBuf::from("."));
    assert_eq!(a.build, None);
    assert!(!a.follow && !a.kube);
    assert_eq!(
        (
            a.controller_namespace.as_str(),
            a.controller_service.as_str(),
            a.controller_port.as_str()
        ),
        ("slipway-system", "slipway", "metrics")
    );
}

#[test]
fn logs_folder_and_cluster_flags_do_not_mix() {
    let m = refused(
        &["logs", "web", "--kube", "--dir", "x"],
        ErrorKind::ArgumentConflict,
    );
    assert!(m.contains("--dir") && m.contains("--kube"), "{m}");
    let m = refused(
        &["logs", "web", "--controller-service", "s"],
        ErrorKind::MissingRequiredArgument,
    );
    assert!(m.contains("--kube"), "{m}");
}

#[test]
fn the_logs_token_is_used_but_never_shown() {
    let cli = parse(&[
        "logs",
        "web",
        "--server",
        "http://c",
        "--token",
        "s3cr3t-tok",
    ])
    .unwrap();
    let shown = format!("{cli:?}");
    assert!(!shown.contains("s3cr3t-tok"), "{shown}");
    let Command::Logs(a) = cli.command else {
        panic!("not logs");
    };
    assert_eq!(a.token.unwrap().expose_secret(), "s3cr3t-tok");

    let cli = with_env(&[("SLIPWAY_TOKEN", "env-tok")], || {
        parse_locked(&["logs", "web", "--kube"])
    });
    assert!(!format!("{cli:?}").contains("env-tok"));
    let Command::Logs(a) = cli.command else {
        panic!("not logs");
    };
    assert_eq!(a.token.unwrap().expose_secret(), "env-tok");
    // nor in the help, where clap would print an env variable's value
    let help = with_env(&[("SLIPWAY_TOKEN", "env-tok")], || {
        Cli::command()
            .find_subcommand_mut("logs")
            .unwrap()
            .render_long_help()
            .to_string()
    });
    assert!(
        help.contains("SLIPWAY_TOKEN") && !help.contains("env-tok"),
        "{help}"
    );
}

#[test]
fn graph_reads_the_current_folder_unless_asked_for_the_cluster() {
    let Command::Graph(g) = parse(&["graph"]).unwrap().command else {
        panic!("not graph");
    };
    assert_eq!(
        (g.dir, g.kube, g.namespace, g.svg),
        (None, false, None, None)
    );
    refused(&["graph", "--kube", "dir"], ErrorKind::ArgumentConflict);
    let m = refused(&["graph", "-n", "ns"], ErrorKind::MissingRequiredArgument);
    assert!(m.contains("--kube"), "{m}");
}

#[test]
fn the_executor_builds_with_the_daemons_builder_by_default() {
    let Command::Executor { builder, .. } = parse(&["executor"]).unwrap().command else {
        panic!("not executor");
    };
    assert_eq!(builder, Builder::Auto);
}

#[test]
fn crd_prints_the_dockerbuild_definition() {
    let y = crd_yaml().unwrap();
    assert!(y.contains("kind: CustomResourceDefinition"), "{y}");
    assert!(y.contains("DockerBuild"), "{y}");
}
