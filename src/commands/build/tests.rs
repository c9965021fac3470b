use clap::error::ErrorKind;

use super::*;
use crate::commands::Command;
use crate::commands::tests::{parse, refused};

/// `slipway build FILE ARGS...`'s Dockerfile flags.
fn df_args(args: &[&str]) -> DockerfileArgs {
    let mut all = vec!["build", "Dockerfile"];
    all.extend_from_slice(args);
    match parse(&all).unwrap().command {
        Command::Build { args, .. } => args,
        _ => unreachable!(),
    }
}

#[test]
fn build_args_split_at_the_first_equals_sign() {
    let a = df_args(&[
        "--build-arg",
        "VERSION=1.2",
        "--build-arg",
        "OPTS=a=b",
        "--build-arg",
        "EMPTY=",
    ]);
    let want = [("VERSION", "1.2"), ("OPTS", "a=b"), ("EMPTY", "")]
        .map(|(k, v)| (k.to_string(), v.to_string()));
    assert_eq!(a.build_args, want);
}

#[test]
fn a_build_arg_without_a_value_says_what_is_expected() {
    let m = refused(
        &["build", "Dockerfile", "--build-arg", "VERSION"],
        ErrorKind::ValueValidation,
    );
    assert!(m.contains("expected KEY=VALUE, got 'VERSION'"), "{m}");
}

#[test]
fn the_dockerfile_flags_describe_the_resource() {
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    let a = df_args(&[
        "--registry",
        "reg:5000",
        "--repository",
        "team/app",
        "-t",
        "v1",
        "--tag",
        "latest",
        "--build-arg",
        "A=1",
        "--target",
        "runtime",
        "--no-cache",
        "--timeout-seconds",
        "60",
    ]);
    let (spec, context) = spec_from_dockerfile(&dockerfile, &a).unwrap();
    // the context defaults to the Dockerfile's directory
    assert_eq!(context, dir.path());
    assert_eq!(spec.dockerfile.as_deref(), Some("Dockerfile"));
    assert_eq!(spec.source.path.as_deref(), Some("."));
    assert_eq!(spec.build_args.get("A").map(String::as_str), Some("1"));
    assert_eq!(spec.target.as_deref(), Some("runtime"));
    assert!(spec.no_cache);
    assert_eq!(spec.timeout_seconds, Some(60));
    let out = spec.output.unwrap();
    assert_eq!(out.registry.as_deref(), Some("reg:5000"));
    assert_eq!(out.repository.as_deref(), Some("team/app"));
    assert_eq!(out.tags, ["v1", "latest"]);
    assert!(out.push_secret_ref.is_none());
}

#[test]
fn without_flags_the_dockerfiles_own_lines_decide() {
    let a = df_args(&[]);
    let (spec, _) = spec_from_dockerfile(Path::new("/src/app/Dockerfile"), &a).unwrap();
    let out = spec.output.unwrap();
    assert_eq!((out.registry, out.repository), (None, None));
    assert!(out.tags.is_empty());
    assert!(!spec.no_cache);
    assert_eq!(spec.timeout_seconds, None);
}

#[test]
fn a_dockerfile_in_a_subfolder_of_the_context_is_named_relative_to_it() {
    let a = df_args(&["--context", "/src"]);
    let (spec, context) =
        spec_from_dockerfile(Path::new("/src/docker/app/Dockerfile"), &a).unwrap();
    assert_eq!(context, Path::new("/src"));
    assert_eq!(spec.dockerfile.as_deref(), Some("docker/app/Dockerfile"));
}

#[test]
fn a_dockerfile_outside_the_context_is_refused() {
    let a = df_args(&["--context", "/src/app"]);
    let e = spec_from_dockerfile(Path::new("/elsewhere/Dockerfile"), &a).unwrap_err();
    assert!(
        e.to_string()
            .contains("the Dockerfile /elsewhere/Dockerfile is outside the context /src/app"),
        "{e}"
    );
}

#[test]
fn a_resource_files_builds_keep_their_logs_beside_it() {
    assert_eq!(
        one_shot_log_store(Path::new("ci/builds.yaml"))
            .unwrap()
            .root,
        Path::new("ci/.slipway/logs")
    );
    // a bare file name: the current directory, as `slipway watch .` would
    assert_eq!(
        one_shot_log_store(Path::new("builds.yml")).unwrap().root,
        Path::new("./.slipway/logs")
    );
    assert!(one_shot_log_store(Path::new("ci/Dockerfile")).is_none());
}

const TWO: &str = "\
apiVersion: slipway.dev/v1alpha1
kind: DockerBuild
metadata: {name: base}
spec:
  source: {path: base}
  output: {registry: 'reg:5000', repository: base, tags: [latest]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
---
apiVersion: slipway.dev/v1alpha1
kind: DockerBuild
metadata: {name: app, namespace: team}
spec:
  source: {path: app}
  output: {registry: 'reg:5000', repository: app, tags: [latest]}
";

#[test]
fn a_resource_file_builds_every_dockerbuild_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("builds.yaml");
    std::fs::write(&file, TWO).unwrap();
    let reqs = one_shot_requests(&file, &DockerfileArgs::default(), None).unwrap();
    let keys: Vec<_> = reqs.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["default/base", "team/app"]);
    // `path` sources are relative to the file, as in a watch folder
    let base = std::path::absolute(dir.path()).unwrap();
    assert!(reqs.iter().all(|r| r.base_dir.as_deref() == Some(&*base)));
}

#[test]
fn a_resource_file_without_a_dockerbuild_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("other.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .unwrap();
    let e = one_shot_requests(&file, &DockerfileArgs::default(), None).unwrap_err();
    assert!(e.to_string().contains("holds no DockerBuild"), "{e}");
}

#[test]
fn a_bare_dockerfile_is_one_request_keyed_by_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Dockerfile");
    std::fs::write(&file, "FROM scratch\n").unwrap();
    let a = df_args(&["--repository", "r", "-t", "1"]);
    let reqs = one_shot_requests(&file, &a, None).unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].key, file.display().to_string());
    assert_eq!(reqs[0].base_dir.as_deref(), Some(dir.path()));
    assert_eq!(reqs[0].spec.output.as_ref().unwrap().tags, ["1"]);
}

#[test]
fn one_failed_build_fails_the_command() {
    let ok = || {
        Ok(BuildOutcome {
            image: "reg/app@sha256:1".into(),
            ..Default::default()
        })
    };
    assert_eq!(report(vec![("a".into(), ok())]), ExitCode::SUCCESS);
    assert_eq!(
        report(vec![
            ("a".into(), ok()),
            ("b".into(), Err(Error::InvalidSpec("bad".into())))
        ]),
        ExitCode::FAILURE
    );
}
