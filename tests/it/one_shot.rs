//! `slipway build`, the ddocker/portainer way: once, with progress, exit code says.

use std::process::Command;

use crate::common::*;

#[tokio::test]
async fn dockerfile_with_flags_builds_pushes_and_prints_the_image() {
    let base = ensure_base().await;
    let reg = registry();
    let fx = Fixture::new()
        .file(
            "app/docker/Dockerfile",
            &format!(
                "FROM {base}\nARG NAME\nCOPY hello.txt /hello.txt\nRUN echo \"$NAME\" > /name\n"
            ),
        )
        .file("app/hello.txt", "hi\n");
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("build")
        .arg(fx.path("app/docker/Dockerfile"))
        .args(["--context"])
        .arg(fx.path("app"))
        .args([
            "--registry",
            &reg,
            "--repository",
            "slipway-test/oneshot",
            "-t",
            "a",
            "--tag",
            "b",
        ])
        .args(["--build-arg", "NAME=gollum"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // not a terminal here: plain progress lines, naming the step as the builder
    // does (the classic one counts ARG, BuildKit does not and shows the ARG's value)
    assert!(
        stderr.contains("Step 4/4 : RUN echo \"$NAME\" > /name")
            || stderr.contains("[3/3] RUN echo \"gollum\" > /name"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pushed {reg}/slipway-test/oneshot:b (sha256:")),
        "{stderr}"
    );
    let image = stdout
        .lines()
        .next()
        .unwrap()
        .split_once(": ")
        .unwrap()
        .1
        .to_string();
    let digest = image.split_once('@').unwrap().1;
    let served =
        slipway::registry::manifest_digest(&http(), &reg, "slipway-test/oneshot", "a", None)
            .await
            .unwrap();
    assert_eq!(served, digest);
    assert!(
        stdout.contains(&format!("  {reg}/slipway-test/oneshot:b")),
        "{stdout}"
    );
}

#[tokio::test]
async fn yaml_file_builds_and_a_failure_exits_non_zero() {
    let base = ensure_base().await;
    let reg = registry();
    let fx = Fixture::new().file(
        "builds.yaml",
        &format!(
            "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata: {{name: ok}}\nspec:\n  source: {{inline: {{dockerfile: \"FROM {base}\\n\"}}}}\n  output: {{registry: '{reg}', repository: slipway-test/yaml-ok}}\n---\n\
apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata: {{name: bad}}\nspec:\n  source: {{inline: {{dockerfile: \"FROM {base}\\nRUN exit 4\\n\"}}}}\n  output: {{registry: '{reg}', repository: slipway-test/yaml-bad}}\n"
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("build")
        .arg(fx.path("builds.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stdout.contains(&format!("default/ok: {reg}/slipway-test/yaml-ok@sha256:")),
        "{stdout}"
    );
    assert!(
        stderr.contains("default/bad: build failed: step 2/2 `RUN exit 4` failed"),
        "{stderr}"
    );
    // on BuildKit (its step names), the steps close the build's lines
    if stderr.contains("[default/bad] [2/2] RUN exit 4") {
        assert!(
            stderr.contains("[default/bad] step [2/2] RUN exit 4 (failed after "),
            "{stderr}"
        );
    }
    // one shot leaves the file alone
    assert!(!fx.read("builds.yaml").contains("status:"));
    // but keeps each build's log beside it, where `slipway logs` finds it
    let ok = fx.read(".slipway/logs/default/ok/1.log");
    assert!(
        ok.lines().last().unwrap().contains(&format!(
            "--- end of build 1: succeeded, {reg}/slipway-test/yaml-ok@sha256:"
        )),
        "{ok}"
    );
    let logs = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["logs", "bad", "--dir"])
        .arg(fx.path(""))
        .output()
        .unwrap();
    let bad = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    assert!(bad.contains("RUN exit 4"), "{bad}");
    assert!(bad.contains("--- end of build 1: failed"), "{bad}");
    assert!(stderr.contains("default/bad: log kept in "), "{stderr}");
    // a second run is build 2, next to the first
    let again = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("build")
        .arg(fx.path("builds.yaml"))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        fx.read(".slipway/logs/default/bad/2.log")
            .contains("end of build 2: failed")
    );
    assert!(
        fx.read(".slipway/logs/default/bad/1.log")
            .contains("end of build 1: failed")
    );
}

/// A file far past any resource's size is refused before it is read whole.
#[test]
fn a_huge_file_is_refused_with_the_limit_named() {
    let fx = Fixture::new();
    let path = fx.dir.path().join("huge.yaml");
    let line = "# padding padding padding padding padding padding padding padding\n";
    std::fs::write(&path, line.repeat(40_000)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["build", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("over the 1572864-byte limit"), "{err}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["build", "/nonexistent/build.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/build.yaml"));
}
