//! The build runner against the real Docker daemon and the real registry.

use crate::common::*;
use slipway::Error;

#[tokio::test]
async fn builds_pushes_every_tag_and_pulls_back_by_digest() {
    let base = ensure_base().await;
    let fx = Fixture::new()
        .file("ctx/Dockerfile", &format!(
            "FROM {base}\nARG GREETING=hi\nRUN echo \"$GREETING\" > /greeting\nCOPY app.txt /app.txt\nCMD [\"cat\", \"/greeting\"]\n"
        ))
        .file("ctx/app.txt", "payload\n");
    let spec = spec(&format!(
        "source: {{path: ctx}}\nbuildArgs: {{GREETING: hello}}\nlabels: {{team: wiki}}\n\
output: {{registry: '{}', repository: slipway-test/tags, tags: [latest, '1.2', v1]}}",
        registry()
    ));
    let out = run(&fx, spec).await.expect("build succeeds");
    assert_eq!(out.pushed_tags.len(), 3);
    assert!(out.pushed_tags[1].ends_with("/slipway-test/tags:1.2"));
    assert!(out.digest.starts_with("sha256:"));
    assert_pushed(&out).await;

    let docker = docker().await;
    let img = docker.inspect_image(&out.image).await.unwrap();
    let labels = img.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("wiki"));
}

#[tokio::test]
async fn dockerfile_directives_name_the_target_and_are_stripped() {
    let base = ensure_base().await;
    // Docker itself rejects REGISTRY & co; the build only passes if slipway strips them
    let fx = Fixture::new().file(
        "legacy/Dockerfile",
        &format!(
            "REGISTRY {}\nREPOSITORY slipway-test/legacy\nTAG 2024\nTAG stable\nCPUS 0.5\nBUILD_MEM 256\nFROM {base}\nRUN touch /built\n",
            registry()
        ),
    );
    let out = run(&fx, spec("source: {path: legacy}"))
        .await
        .expect("build succeeds");
    let expected: Vec<String> = ["2024", "stable"]
        .iter()
        .map(|t| format!("{}/slipway-test/legacy:{t}", registry()))
        .collect();
    assert_eq!(out.pushed_tags, expected);
    assert_pushed(&out).await;
}

#[tokio::test]
async fn inline_multistage_target_and_dockerignore() {
    let base = ensure_base().await;
    let fx = Fixture::new()
        .file("ctx/Dockerfile", &format!(
            "FROM {base} AS build\nCOPY . /src\nRUN test ! -e /src/secret.txt && test -e /src/keep.txt && echo built > /out\n\
FROM {base} AS runtime\nCOPY --from=build /out /out\nFROM {base} AS debug\nRUN false\n"
        ))
        .file("ctx/.dockerignore", "secret.txt\n")
        .file("ctx/secret.txt", "do not send\n")
        .file("ctx/keep.txt", "send\n");
    let spec = spec(&format!(
        "source: {{path: ctx}}\ntarget: runtime\noutput: {{registry: '{}', repository: slipway-test/target}}",
        registry()
    ));
    let out = run(&fx, spec)
        .await
        .expect("runtime stage builds without the debug stage");
    assert_eq!(
        out.pushed_tags,
        vec![format!("{}/slipway-test/target:latest", registry())]
    );
    assert_pushed(&out).await;

    let inline = crate::common::spec(&format!(
        "source: {{inline: {{dockerfile: \"FROM {base}\\nRUN echo inline > /x\\n\"}}}}\n\
output: {{registry: '{}', repository: slipway-test/inline}}",
        registry()
    ));
    let out = run(&Fixture::new(), inline).await.expect("inline builds");
    assert_pushed(&out).await;
}

#[tokio::test]
async fn failing_step_is_named_in_the_error() {
    let base = ensure_base().await;
    let fx = Fixture::new().file(
        "ctx/Dockerfile",
        &format!(
            "FROM {base}\nRUN echo compiling\nRUN echo 'cc: error: no input files' && exit 3\n"
        ),
    );
    let spec = spec(&format!(
        "source: {{path: ctx}}\noutput: {{registry: '{}', repository: slipway-test/fails}}",
        registry()
    ));
    let err = run(&fx, spec).await.unwrap_err();
    assert!(matches!(err, Error::BuildFailed(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("step 3/3"), "{msg}");
    // the classic builder says "returned a non-zero code: 3", BuildKit "exit code: 3"
    assert!(
        msg.contains("non-zero code: 3") || msg.contains("exit code: 3"),
        "{msg}"
    );
    assert!(msg.contains("cc: error: no input files"), "{msg}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn unreachable_registry_is_an_infrastructure_failure() {
    let fx = Fixture::new().file("ctx/Dockerfile", "FROM scratch\n");
    let spec = spec(
        "source: {path: ctx}\noutput: {registry: '127.0.0.1:9', repository: slipway-test/nowhere}",
    );
    let err = run(&fx, spec).await.unwrap_err();
    assert!(matches!(err, Error::Registry(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains("cannot reach 127.0.0.1:9"),
        "{err}"
    );
}

#[tokio::test]
async fn context_escaping_its_root_is_refused() {
    let fx = Fixture::new()
        .file("ctx/Dockerfile", "FROM scratch\nCOPY . /\n")
        .symlink("/etc/passwd", "ctx/passwd");
    let spec = spec(&format!(
        "source: {{path: ctx}}\noutput: {{registry: '{}', repository: slipway-test/escape}}",
        registry()
    ));
    let err = run(&fx, spec).await.unwrap_err();
    assert!(matches!(err, Error::Context(_)), "{err:?}");
    assert!(err.to_string().contains("passwd"), "{err}");

    let dotdot = crate::common::spec(&format!(
        "source: {{path: ../elsewhere}}\noutput: {{registry: '{}', repository: slipway-test/escape}}",
        registry()
    ));
    let err = run(&fx, dotdot).await.unwrap_err();
    assert!(err.to_string().contains(".."), "{err}");
}

/// Root reads any file; without CAP_DAC_OVERRIDE (as a non-root user) a mode-000 file
/// is unreadable. The real binary, one shot, must say which file at once.
#[tokio::test]
async fn unreadable_context_file_is_a_context_error_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let reg = registry();
    let fx = Fixture::new()
        .file("ctx/Dockerfile", "FROM scratch\nCOPY . /\n")
        .file("ctx/secret.key", "locked\n")
        .file(
            "build.yaml",
            &Build::new("locked")
                .path("ctx")
                .push_to_registry(&reg, "slipway-test/unreadable")
                .yaml(),
        );
    std::fs::set_permissions(
        fx.path("ctx/secret.key"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = std::process::Command::new("setpriv")
        .args(["--bounding-set", "-dac_override,-dac_read_search", "--"])
        .arg(env!("CARGO_BIN_EXE_slipway"))
        .arg("build")
        .arg(fx.path("build.yaml"))
        .output()
        .expect("setpriv runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("build context: cannot read 'secret.key': Permission denied"),
        "{stderr}"
    );
    assert!(!stderr.contains("docker daemon"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// A registry that answers every request 401 with a Basic challenge, as a registry
/// with htpasswd auth does for a client without credentials.
async fn registry_wanting_auth() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let body = r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#;
                let head = format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"test\"\r\nDocker-Distribution-Api-Version: registry/2.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
            });
        }
    });
    addr.to_string()
}

#[tokio::test]
async fn registry_wanting_credentials_nobody_gave_fails_once_saying_where_slipway_looked() {
    let reg = registry_wanting_auth().await;
    let fx = Fixture::new()
        .file("ctx/Dockerfile", "FROM scratch\nCOPY Dockerfile /\n")
        .file(
            "config.json",
            r#"{"auths":{"elsewhere.example.org":{"auth":"YTpi"}}}"#,
        );
    let build = |auth: slipway::registry::DockerConfig| slipway::runner::BuildRequest {
        key: "test/auth".into(),
        spec: spec(&format!(
            "source: {{path: ctx}}\noutput: {{registry: '{reg}', repository: slipway-test/auth}}"
        )),
        base_dir: Some(fx.path("")),
        auth: std::sync::Arc::new(auth),
        previous: None,
        secrets: Default::default(),
    };
    let run_one = |req| async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let _daemon = daemon_shared().await;
        runner().await.run(req, tx, Default::default()).await
    };

    let config = fx.path("config.json");
    let err = run_one(build(
        slipway::registry::DockerConfig::load(Some(&config)).unwrap(),
    ))
    .await
    .unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("{reg} requires credentials")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("looked in docker config {}", config.display())),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("which has no auths entry for {reg}")),
        "{msg}"
    );

    let err = run_one(build(slipway::registry::DockerConfig::default()))
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(
        err.to_string().contains("no docker config was given"),
        "{err}"
    );
}
