//! Docker credential helpers (`credHelpers`, `credsStore`) run as the docker CLI runs
//! them: `docker-credential-<name> get` found on PATH. The test registry takes
//! anonymous pushes too, so what is checked is what slipway did: asked the helper,
//! or failed naming it, and never printed the secret.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::watcher::{Watcher, doc, phase_of};
use crate::common::*;

const SECRET: &str = "s3cr3t-from-the-helper";

/// A `docker-credential-test` in `dir` that records what it was asked and answers
/// with the registry's credentials.
fn install_helper(dir: &Path, seen: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("docker-credential-test");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nhost=$(cat)\necho \"$1 $host\" >> {}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"{SECRET}\"}}' \"$host\"\n",
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `slipway build` of a one-line Dockerfile, the helpers' dir first on PATH.
fn build(fx: &Fixture, bin: &Path, config: &str, repository: &str, extra: &[String]) -> Output {
    std::fs::write(fx.path("config.json"), config).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(env!("CARGO_BIN_EXE_slipway"))
        .env("PATH", path)
        // everything slipway logs is searched for the secret
        .env("RUST_LOG", "debug")
        .arg("build")
        .arg(fx.path("app/Dockerfile"))
        .arg("--docker-config")
        .arg(fx.path("config.json"))
        .args(["--registry", &registry(), "--repository", repository])
        .args(extra)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_credential_helper_serves_the_push_and_a_missing_one_fails_the_build() {
    let base = ensure_base().await;
    let reg = registry();
    let fx = Fixture::new().file("app/Dockerfile", &format!("FROM {base}\nENV HELPED=1\n"));
    let bin = tempfile::tempdir().unwrap();
    let seen = bin.path().join("seen");
    install_helper(bin.path(), &seen);

    // credHelpers names the helper for this registry
    let out = build(
        &fx,
        bin.path(),
        &format!(r#"{{"auths":{{}},"credHelpers":{{"{reg}":"test"}}}}"#),
        "slipway-test/cred-helper",
        &[],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("pushed {reg}/slipway-test/cred-helper:latest")),
        "{stderr}"
    );
    let asked = std::fs::read_to_string(&seen).expect("the helper was never run");
    assert!(
        asked.lines().all(|l| l == format!("get {reg}")) && !asked.is_empty(),
        "{asked}"
    );
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));

    // credsStore is the helper for every registry without an entry; a missing one
    // fails the build, naming it, rather than pushing anonymously
    let out = build(
        &fx,
        bin.path(),
        r#"{"credsStore":"slipway-missing"}"#,
        "slipway-test/cred-helper-missing",
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "pushed anonymously: {stderr}");
    assert!(
        stderr.contains(&format!(
            "credential helper docker-credential-slipway-missing (for {reg}): not found on PATH"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("pushed "), "{stderr}");
}

/// The standalone buildkitd pushes itself, through the build session's auth: the
/// helper's credentials are what slipway offers it.
#[tokio::test]
async fn through_a_standalone_buildkitd_the_helper_is_asked_too() {
    let Ok(addr) = std::env::var("SLIPWAY_TEST_BUILDKIT_ADDR") else {
        eprintln!("SLIPWAY_TEST_BUILDKIT_ADDR unset: buildkitd not tried");
        return;
    };
    let certs = std::env::var("SLIPWAY_TEST_BUILDKIT_DIR").unwrap_or_else(|_| "/tmp/devbk".into());
    let reg = registry();
    let fx = Fixture::new().file("app/Dockerfile", "FROM scratch\nCOPY Dockerfile /\n");
    let bin = tempfile::tempdir().unwrap();
    let seen = bin.path().join("seen");
    install_helper(bin.path(), &seen);
    let extra: Vec<String> = [
        "--builder=buildkitd".to_string(),
        format!("--buildkit-addr={addr}"),
        format!("--buildkit-ca={certs}/ca.pem"),
        format!("--buildkit-cert={certs}/cert.pem"),
        format!("--buildkit-key={certs}/key.pem"),
    ]
    .into();
    let out = build(
        &fx,
        bin.path(),
        r#"{"credsStore":"test"}"#,
        "slipway-test/cred-helper-buildkitd",
        &extra,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    let asked = std::fs::read_to_string(&seen).expect("the helper was never run");
    assert!(asked.contains(&format!("get {reg}")), "{asked}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
}

/// In a watch folder, a helper that fails leaves the build Failed with a
/// RegistryError naming it, and what it printed (a secret, here) appears neither in
/// the status nor in the log; the helper that works serves the other build.
#[tokio::test]
async fn a_failing_helper_fails_its_build_and_leaks_nothing() {
    let reg = registry();
    let bin = tempfile::tempdir().unwrap();
    let seen = bin.path().join("seen");
    install_helper(bin.path(), &seen);
    {
        use std::os::unix::fs::PermissionsExt;
        let leaky = bin.path().join("docker-credential-leaky");
        std::fs::write(
            &leaky,
            format!("#!/bin/sh\necho {SECRET}\necho {SECRET} >&2\nexit 1\n"),
        )
        .unwrap();
        std::fs::set_permissions(&leaky, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let spec = |repo: &str, config: &str| {
        format!(
            "  source: {{inline: {{dockerfile: \"FROM scratch\\nLABEL a=b\\n\"}}}}\n  output:\n    registry: '{reg}'\n    repository: slipway-test/{repo}\n    pushSecretRef: {{path: {config}}}\n"
        )
    };
    let fx = Fixture::new()
        .file("leaky.json", r#"{"credsStore":"leaky"}"#)
        .file(
            "good.json",
            &format!(r#"{{"credHelpers":{{"{reg}":"test"}}}}"#),
        )
        .file(
            "builds/bad.yaml",
            &doc("bad", &spec("cred-helper-leaky", "../leaky.json")),
        )
        .file(
            "builds/good.yaml",
            &doc("good", &spec("cred-helper-good", "../good.json")),
        );
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let w = Watcher::start_with_env(
        Path::new("."),
        &fx.path("builds"),
        &[],
        &[("PATH", path.as_str())],
    );
    let status = phase_of(&fx.path("builds/bad.yaml"), "bad", "Failed").await;
    let text = status.to_string();
    assert!(text.contains("RegistryError"), "{text}");
    assert!(
        text.contains(&format!("docker-credential-leaky (for {reg})")),
        "{text}"
    );
    phase_of(&fx.path("builds/good.yaml"), "good", "Succeeded").await;
    let asked = std::fs::read_to_string(&seen).expect("the good helper was never run");
    assert!(asked.contains(&format!("get {reg}")), "{asked}");
    for file in ["builds/bad.yaml", "builds/good.yaml"] {
        assert!(!fx.read(file).contains(SECRET), "{}", fx.read(file));
    }
    assert!(!w.log().contains(SECRET), "{}", w.log());
}
