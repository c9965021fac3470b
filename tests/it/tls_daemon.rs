//! `slipway build` on a remote Docker daemon over TCP with mutual TLS, as the docker
//! CLI reaches one: a second, throwaway dockerd (scripts/tls-dockerd.sh) listening
//! on 127.0.0.1 with `--tlsverify` and certificates the script makes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::mesos::free_port;
use crate::common::*;

/// The second daemon; stopped when dropped, whatever the test did.
struct TlsDaemon {
    dir: tempfile::TempDir,
    port: u16,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tls-dockerd.sh")
}

impl TlsDaemon {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let out = Command::new("bash")
            .arg(script())
            .args(["start", "--dir"])
            .arg(dir.path())
            .args([
                "--port",
                &port.to_string(),
                "--insecure-registry",
                &registry(),
            ])
            .output()
            .expect("run tls-dockerd.sh");
        let d = Self { dir, port };
        assert!(
            out.status.success(),
            "second dockerd starts: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        d
    }

    fn host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// `client` (certificates the daemon trusts), `other` (another CA's client
    /// certificate) or `untrusted` (a CA that did not sign the daemon's).
    fn certs(&self, which: &str) -> PathBuf {
        self.dir.path().join(which)
    }
}

impl Drop for TlsDaemon {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", "--dir"])
            .arg(self.dir.path())
            .status();
    }
}

/// `slipway build` of `fx`'s Dockerfile with only `env` saying where the daemon is.
fn build(fx: &Fixture, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.arg("build")
        .arg(fx.path("Dockerfile"))
        .args([
            "--registry",
            &registry(),
            "--repository",
            "slipway-test/tls",
        ])
        .args(args)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run slipway build")
}

#[tokio::test]
async fn builds_on_a_tls_daemon_and_refuses_a_wrong_certificate_clearly() {
    let base = ensure_base().await;
    let daemon = TlsDaemon::start();
    let fx = Fixture::new().file(
        "Dockerfile",
        &format!("FROM {base}\nRUN echo remote > /where\n"),
    );
    let host = daemon.host();

    // the docker CLI's environment
    let out = build(
        &fx,
        &[],
        &[
            ("DOCKER_HOST", Path::new(&host)),
            ("DOCKER_TLS_VERIFY", Path::new("1")),
            ("DOCKER_CERT_PATH", &daemon.certs("client")),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build over TLS: {stderr}");
    assert!(
        stderr.contains(&format!("pushed {}/slipway-test/tls", registry())),
        "{stderr}"
    );
    // the same as flags; the flag alone also keeps the build session off plain HTTP
    let client = daemon.certs("client");
    let out = build(
        &fx,
        &[
            "--docker-host",
            &host,
            "--docker-tls-verify",
            "--docker-cert-path",
            client.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build over TLS, by flags: {stderr}");

    // flags again, with a client certificate from a CA the daemon does not trust
    let other = daemon.certs("other");
    let out = build(
        &fx,
        &[
            "--docker-host",
            &host,
            "--docker-tls-verify",
            "--docker-cert-path",
            other.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a stranger's certificate is refused");
    assert!(
        stderr.contains(&format!("Docker daemon {host} (DOCKER_HOST) over TLS"))
            && stderr.contains("refused the client certificate")
            && stderr.contains(&other.join("cert.pem").display().to_string()),
        "the error names the daemon and the TLS problem: {stderr}"
    );

    // a CA that did not sign the daemon's certificate: the daemon is not trusted
    let untrusted = daemon.certs("untrusted");
    let out = build(
        &fx,
        &[],
        &[
            ("DOCKER_HOST", Path::new(&host)),
            ("DOCKER_TLS_VERIFY", Path::new("1")),
            ("DOCKER_CERT_PATH", &untrusted),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an untrusted daemon is refused");
    assert!(
        stderr.contains(&format!("Docker daemon {host} (DOCKER_HOST) over TLS"))
            && stderr.contains("the daemon's certificate is not trusted by")
            && stderr.contains("UnknownIssuer"),
        "the error names the daemon and the TLS problem: {stderr}"
    );
}
