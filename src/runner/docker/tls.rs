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
            .map_err(|e| self.error(host, &e))
    }

    /// A failed TLS connection, naming the daemon and what went wrong in the handshake.
    pub(crate) fn error(&self, host: &str, e: &(dyn std::error::Error + 'static)) -> Error {
        let chain = error_chain(e);
        let dir = self.cert_dir();
        let why = if chain.contains("invalid peer certificate") {
            format!(
                "the daemon's certificate is not trusted by {}: ",
                dir.join("ca.pem").display()
            )
        } else if chain.contains("alert") {
            format!(
                "the daemon refused the client certificate {}: ",
                dir.join("cert.pem").display()
            )
        } else {
            String::new()
        };
        Error::Docker(
            format!("cannot reach the Docker daemon {host} (DOCKER_HOST) over TLS: {why}{chain}")
                .into(),
        )
    }
}
