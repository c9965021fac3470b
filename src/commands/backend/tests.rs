use clap::error::ErrorKind;

use super::*;
use crate::commands::Command;
use crate::commands::tests::{parse, refused};

/// `slipway build Dockerfile ARGS...`'s backend flags.
fn backend_args(args: &[&str]) -> BackendArgs {
    let mut all = vec!["build", "Dockerfile"];
    all.extend_from_slice(args);
    match parse(&all).unwrap().command {
        Command::Build { backend, .. } => backend,
        _ => unreachable!(),
    }
}

fn mesos(args: &[&str]) -> Result<MesosOptions> {
    let mut all = vec!["--backend", "mesos"];
    all.extend_from_slice(args);
    mesos_options(&backend_args(&all), Arc::new(NoStore), &Default::default())
}

fn message(r: Result<MesosOptions>) -> String {
    match r {
        Ok(_) => panic!("the flags are accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn offers_are_refused_and_launches_watched_as_marathon_does() {
    let m = backend_args(&[]).mesos;
    assert_eq!(m.refuse_seconds, 120.0);
    assert_eq!(m.launch_timeout, Duration::from_secs(300));
    assert_eq!(m.locality_wait, Duration::from_secs(3));
}

#[test]
fn defaults_build_locally_and_register_a_framework_named_slipway() {
    let b = backend_args(&[]);
    assert_eq!(b.backend, BackendKind::Local);
    assert_eq!(b.max_context_bytes, 8 << 30);
    let m = b.mesos;
    assert!(m.masters.is_empty());
    assert_eq!(
        (
            m.role.as_str(),
            m.framework_name.as_str(),
            m.mesos_user.as_str()
        ),
        ("*", "slipway", "root")
    );
    assert_eq!(m.failover_timeout, Duration::from_secs(7 * 86400));
    assert_eq!(m.reconcile_interval, Duration::from_secs(300));
    assert_eq!((m.default_cpus, m.default_mem), (1.0, 1024.0));
    assert_eq!(m.context_listen, "127.0.0.1:0".parse().unwrap());
    assert_eq!(m.staging, crate::mesos::staging::Staging::Serve);
    assert_eq!(m.executor_docker_socket, "/var/run/docker.sock");
}

#[test]
fn masters_repeat_or_separate_with_commas() {
    let m = backend_args(&[
        "--mesos-master",
        "a:5050,b:5050",
        "--mesos-master",
        "http://c:5050",
    ])
    .mesos;
    assert_eq!(m.masters, ["a:5050", "b:5050", "http://c:5050"]);
}

#[test]
fn one_way_to_start_the_executor() {
    let m = refused(
        &[
            "build",
            "Dockerfile",
            "--executor-uri",
            "http://x/s.tgz",
            "--executor-path",
            "/bin/slipway",
        ],
        ErrorKind::ArgumentConflict,
    );
    assert!(
        m.contains("--executor-uri") && m.contains("--executor-path"),
        "{m}"
    );
    refused(
        &[
            "build",
            "Dockerfile",
            "--executor-image",
            "slipway:1",
            "--executor-uri",
            "http://x/s.tgz",
        ],
        ErrorKind::ArgumentConflict,
    );
}

#[test]
fn mesos_needs_a_master() {
    let m = message(mesos(&[]));
    assert!(m.contains("--backend mesos needs --mesos-master"), "{m}");
}

#[test]
fn principal_and_secret_file_go_together() {
    for half in [&["--principal", "p"][..], &["--secret-file", "/s"]] {
        let mut args = vec!["--mesos-master", "m:5050"];
        args.extend_from_slice(half);
        let m = message(mesos(&args));
        assert!(
            m.contains("--principal and --secret-file go together"),
            "{m}"
        );
    }
}

#[test]
fn the_secret_is_read_trimmed_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "hunter2\n").unwrap();
    let o = mesos(&[
        "--mesos-master",
        "m:5050",
        "--principal",
        "slipway",
        "--secret-file",
        file.to_str().unwrap(),
    ])
    .unwrap();
    let auth = o.framework.auth.expect("basic auth");
    assert_eq!(
        (auth.principal.as_str(), auth.secret.as_str()),
        ("slipway", "hunter2")
    );
    assert!(!format!("{auth:?}").contains("hunter2"));
    assert_eq!(o.framework.core.principal.as_deref(), Some("slipway"));
}

#[test]
fn an_unreadable_secret_file_is_named() {
    let m = message(mesos(&[
        "--mesos-master",
        "m:5050",
        "--principal",
        "p",
        "--secret-file",
        "/nonexistent/secret",
    ]));
    assert!(
        m.contains("cannot read --secret-file /nonexistent/secret"),
        "{m}"
    );
}

#[test]
fn the_executor_starts_as_the_flags_say() {
    let launch = |args: &[&str]| {
        let mut all = vec!["--mesos-master", "m:5050"];
        all.extend_from_slice(args);
        mesos(&all).unwrap().framework.core.executor
    };
    assert_eq!(
        launch(&["--executor-uri", "http://x/s.tgz"]),
        ExecutorLaunch::Uri("http://x/s.tgz".into())
    );
    assert_eq!(
        launch(&[
            "--executor-image",
            "slipway:1",
            "--executor-docker-socket",
            "/d.sock"
        ]),
        ExecutorLaunch::Image {
            image: "slipway:1".into(),
            docker_socket: "/d.sock".into()
        }
    );
    assert_eq!(
        launch(&["--executor-path", "/opt/slipway"]),
        ExecutorLaunch::Path("/opt/slipway".into())
    );
    // by default the agents run this very binary, at the same path
    let exe = std::env::current_exe().unwrap().display().to_string();
    assert_eq!(launch(&[]), ExecutorLaunch::Path(exe));
}

#[test]
fn the_framework_gets_every_mesos_flag() {
    let o = mesos(&[
        "--mesos-master",
        "m1:5050,m2:5050",
        "--role",
        "builds",
        "--framework-name",
        "ci",
        "--mesos-user",
        "nobody",
        "--failover-timeout",
        "1h",
        "--agent-docker-host",
        "tcp://127.0.0.1:2375",
        "--builder",
        "buildkitd",
        "--refuse-seconds",
        "5",
        "--launch-timeout",
        "30s",
        "--locality-wait",
        "0s",
        "--reconcile-interval",
        "1m",
        "--default-cpus",
        "2",
        "--default-mem",
        "512",
        "--staging",
        "s3",
        "--staging-uri",
        "s3://b/p",
        "--context-listen",
        "0.0.0.0:7000",
        "--context-url",
        "http://me:7000",
    ])
    .unwrap();
    let f = &o.framework;
    assert_eq!(f.masters, ["m1:5050", "m2:5050"]);
    assert!(f.auth.is_none());
    assert_eq!(f.reconcile_interval, Duration::from_secs(60));
    let c = &f.core;
    assert_eq!(
        (c.name.as_str(), c.user.as_str(), c.role.as_str()),
        ("ci", "nobody", "builds")
    );
    assert_eq!(c.failover_timeout, Duration::from_secs(3600));
    assert_eq!(c.agent_docker_host.as_deref(), Some("tcp://127.0.0.1:2375"));
    assert_eq!(c.builder, crate::runner::Builder::Buildkitd);
    assert_eq!(c.refuse_seconds, 5.0);
    assert_eq!(c.launch_timeout, Duration::from_secs(30));
    assert_eq!(c.locality_wait, Duration::ZERO);
    assert_eq!((o.default_cpus, o.default_mem_mib), (2.0, 512.0));
    let s = &o.staging;
    assert_eq!(s.staging, crate::mesos::staging::Staging::S3);
    assert_eq!(s.uri.as_deref(), Some("s3://b/p"));
    assert_eq!(s.listen, "0.0.0.0:7000".parse().unwrap());
    assert_eq!(s.advertise.as_deref(), Some("http://me:7000"));
}
