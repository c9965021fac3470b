//! A remote Docker daemon over TCP with mutual TLS, read the way the docker CLI reads
//! it: `DOCKER_HOST=tcp://host:2376`, `DOCKER_TLS_VERIFY`, and `DOCKER_CERT_PATH`
//! holding `ca.pem`, `cert.pem`, `key.pem` (default `~/.docker`).

use std::path::{Path, PathBuf};

use bollard::{API_DEFAULT_VERSION, Docker};

use crate::registry::error_chain;
use crate::{Error, Result};

/// bollard's own default; `connect_docker` raises it after negotiating.
const TIMEOUT_SECS: u64 = 120;

/// How to reach a daemon over TLS (flags shared by `watch` and `build`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DockerTls {
    /// Talk to --docker-host over TLS, checking the daemon's certificate against
    /// ca.pem and presenting cert.pem/key.pem from --docker-cert-path.
    #[arg(long, env = "DOCKER_TLS_VERIFY", value_parser = clap::builder::FalseyValueParser::new())]
    pub docker_tls_verify: bool,
    /// Directory with ca.pem, cert.pem and key.pem; ~/.docker otherwise.
    #[arg(long, env = "DOCKER_CERT_PATH")]
    pub docker_cert_path: Option<PathBuf>,
}

impl DockerTls {
    /// The same as `slipway executor` flags, for a Mesos task (paths as the agents
    /// see them).
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.docker_tls_verify {
            args.push("--docker-tls-verify".to_string());
        }
        if let Some(dir) = &self.docker_cert_path {
            args.push("--docker-cert-path".to_string());
            args.push(dir.display().to_string());
        }
        args
    }

    /// As the docker CLI reads the environment: any non-empty DOCKER_TLS_VERIFY.
    pub fn from_env() -> Self {
        let env = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        Self {
            docker_tls_verify: env("DOCKER_TLS_VERIFY").is_some(),
            docker_cert_path: env("DOCKER_CERT_PATH").map(PathBuf::from),
        }
    }

    fn cert_dir(&self) -> PathBuf {
        self.docker_cert_path.clone().unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".docker")
        })
    }

    /// A client for `host` (`tcp://host:port`) over TLS; nothing is sent yet.
    pub(crate) fn connect(&self, host: &str) -> Result<Docker> {
        let dir = self.cert_dir();
        let (ca, cert, key) = (
            dir.join("ca.pem"),
            dir.join("cert.pem"),
            dir.join("key.pem"),
        );
        for f in [&ca, &cert, &key] {
            if !f.is_file() {
                return Err(Error::Docker(
                    format!(
                        "Docker daemon {host} (DOCKER_HOST) over TLS: no {} (DOCKER_CERT_PATH \
                     needs ca.pem, cert.pem and key.pem)",
                        f.display()
                    )
                    .into(),
                ));
            }
        }
        Docker::connect_with_ssl(host, &key, &cert, &ca, TIMEOUT_SECS, API_DEFAULT_VERSION)
            .map_err(|e| self.error(host, e))
    }

    /// A failed TLS connection, naming the daemon and what went wrong in the handshake
    /// (told by the rustls error in the chain, not by the text: a path or a host name
    /// can hold any word).
    pub(crate) fn error(
        &self,
        host: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        let chain = error_chain(&e);
        let dir = self.cert_dir();
        let why = match crate::find_cause::<rustls::Error>(&e) {
            Some(rustls::Error::InvalidCertificate(_)) => format!(
                "the daemon's certificate is not trusted by {}: ",
                dir.join("ca.pem").display()
            ),
            Some(rustls::Error::AlertReceived(_)) => format!(
                "the daemon refused the client certificate {}: ",
                dir.join("cert.pem").display()
            ),
            _ => String::new(),
        };
        Error::docker(
            format!("cannot reach the Docker daemon {host} (DOCKER_HOST) over TLS: {why}{chain}"),
            e,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{AlertDescription, CertificateError};

    fn tls_in(dir: &Path) -> DockerTls {
        DockerTls {
            docker_tls_verify: true,
            docker_cert_path: Some(dir.to_path_buf()),
        }
    }

    /// As hyper-util's client hands over a failed connection: hyper-rustls's
    /// io::Error as the source, tokio-rustls's inside it, the rustls error in that.
    #[derive(Debug)]
    struct Connect(std::io::Error);
    impl std::fmt::Display for Connect {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }
    impl std::error::Error for Connect {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    fn handshake(e: rustls::Error) -> Connect {
        let tokio_rustls = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        Connect(std::io::Error::other(tokio_rustls))
    }

    #[test]
    fn the_handshake_failure_is_told_by_the_rustls_error() {
        let tls = tls_in(Path::new("/certs"));
        let host = "tcp://d:2376";
        let untrusted = tls.error(
            host,
            handshake(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        );
        assert_eq!(
            untrusted.to_string(),
            "docker daemon: cannot reach the Docker daemon tcp://d:2376 (DOCKER_HOST) over TLS: \
             the daemon's certificate is not trusted by /certs/ca.pem: client error (Connect): \
             invalid peer certificate: UnknownIssuer"
        );
        assert!(untrusted.is_retryable());
        assert!(std::error::Error::source(&untrusted).is_some());
        let refused = tls.error(
            host,
            handshake(rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired,
            )),
        );
        assert!(
            refused
                .to_string()
                .contains("the daemon refused the client certificate /certs/cert.pem: "),
            "{refused}"
        );
        // the same words from elsewhere (the daemon's answer) are no TLS verdict
        let said = tls.error(
            host,
            std::io::Error::other("proxy: invalid peer certificate, sent an alert"),
        );
        assert_eq!(
            said.to_string(),
            "docker daemon: cannot reach the Docker daemon tcp://d:2376 (DOCKER_HOST) over TLS: \
             proxy: invalid peer certificate, sent an alert"
        );
    }

    /// A certificate directory whose path holds "alert" (an alertmanager's, say) and
    /// an unreadable ca.pem: the message names the file, and blames no handshake.
    #[test]
    fn a_bad_ca_file_in_a_directory_named_alert_is_not_a_refused_certificate() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("alertmanager");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join("ca.pem"),
            "-----BEGIN CERTIFICATE-----\nnot base64\n",
        )
        .unwrap();
        std::fs::write(dir.join("cert.pem"), "").unwrap();
        std::fs::write(dir.join("key.pem"), "").unwrap();
        let e = tls_in(&dir).connect("tcp://127.0.0.1:2376").unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("alertmanager/ca.pem"), "{shown}");
        assert!(!shown.contains("refused the client certificate"), "{shown}");
        assert!(!shown.contains("not trusted"), "{shown}");
    }
}
