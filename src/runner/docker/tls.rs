//! A remote Docker daemon over TCP with mutual TLS, read the way the docker CLI reads
//! it: `DOCKER_HOST=tcp://host:2376`, `DOCKER_TLS_VERIFY`, and `DOCKER_CERT_PATH`
//! holding `ca.pem`, `cert.pem`, `key.pem` (default `~/.docker`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, Docker};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncReadExt;

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
        let found = crate::find_cause::<rustls::Error>(&e).cloned();
        self.explain(host, e, found.as_ref(), "")
    }

    /// [`Self::error`] for a request that failed on a connection, asking the daemon
    /// again when the chain holds no handshake verdict: under TLS 1.3 the client's
    /// handshake ends before the daemon has checked its certificate, and hyper can
    /// lose the daemon's alert ("connection was not ready") when it writes the
    /// request on a connection the daemon is closing.
    pub(crate) async fn request_error(
        &self,
        host: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        if crate::find_cause::<rustls::Error>(&e).is_some() {
            return self.error(host, e);
        }
        match self.handshake_verdict(host).await {
            Some(verdict) => {
                let said = format!("{verdict}; the request failed with: ");
                self.explain(host, e, Some(&verdict), &said)
            }
            None => self.explain(host, e, None, ""),
        }
    }

    fn explain(
        &self,
        host: &str,
        e: impl std::error::Error + Send + Sync + 'static,
        verdict: Option<&rustls::Error>,
        said: &str,
    ) -> Error {
        let chain = error_chain(&e);
        let dir = self.cert_dir();
        let why = match verdict {
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
            format!(
                "cannot reach the Docker daemon {host} (DOCKER_HOST) over TLS: {why}{said}{chain}"
            ),
            e,
        )
    }

    /// A handshake of our own with the same files, and the first read after it,
    /// where a daemon refusing the client certificate says so. Sends no request: a
    /// request the daemon never reads makes its kernel reset the connection, which
    /// can drop the alert before it is read. None when the files do not load or
    /// nothing TLS-related goes wrong within a few seconds.
    async fn handshake_verdict(&self, host: &str) -> Option<rustls::Error> {
        let addr = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("https://"))?
            .trim_end_matches('/');
        let (name, _port) = addr.rsplit_once(':')?;
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(name.to_string()).ok()?;
        let config = Arc::new(self.client_config()?);
        let probe = async {
            let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let mut tls = match connector.connect(name, tcp).await {
                Ok(tls) => tls,
                Err(e) => return crate::find_cause::<rustls::Error>(&e).cloned(),
            };
            let mut byte = [0u8; 1];
            let e = tls.read(&mut byte).await.err()?;
            crate::find_cause::<rustls::Error>(&e).cloned()
        };
        tokio::time::timeout(Duration::from_secs(3), probe)
            .await
            .ok()
            .flatten()
    }

    /// What bollard presents: ca.pem as the only root, cert.pem and key.pem.
    fn client_config(&self) -> Option<rustls::ClientConfig> {
        let dir = self.cert_dir();
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(dir.join("ca.pem")).ok()? {
            roots.add(ca.ok()?).ok()?;
        }
        let certs = CertificateDer::pem_file_iter(dir.join("cert.pem"))
            .ok()?
            .collect::<std::result::Result<Vec<_>, _>>()
            .ok()?;
        let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).ok()?;
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .ok()
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

    /// A CA, and the certificates it signs for 127.0.0.1.
    struct Ca(rcgen::CertifiedIssuer<'static, rcgen::KeyPair>);

    impl Ca {
        fn new() -> Self {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let key = rcgen::KeyPair::generate().unwrap();
            Self(rcgen::CertifiedIssuer::self_signed(params, key).unwrap())
        }

        fn sign(&self) -> (rcgen::Certificate, rcgen::KeyPair) {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
                .unwrap()
                .signed_by(&key, &self.0)
                .unwrap();
            (cert, key)
        }

        fn pem(&self) -> String {
            self.0.pem()
        }
    }

    /// A daemon's TLS front: its certificate from `ca`, client certificates checked
    /// against `clients`; it closes each connection once the handshake is through.
    async fn daemon(ca: &Ca, clients: &Ca) -> String {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(clients.0.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .unwrap();
        let (cert, key) = ca.sign();
        let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                    }
                });
            }
        });
        format!("tcp://127.0.0.1:{port}")
    }

    /// DOCKER_CERT_PATH trusting `ca`, presenting a certificate `signer` signed.
    fn cert_dir(ca: &Ca, signer: &Ca) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = signer.sign();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        dir
    }

    /// What hyper says when it wrote the request on a connection the daemon was
    /// closing: no handshake verdict anywhere in it.
    fn not_ready() -> std::io::Error {
        std::io::Error::other("client error (Canceled): connection was not ready")
    }

    /// The daemon's refusal was lost by the request (CI saw it, on dockerd); slipway
    /// asks again with a handshake of its own and still names the certificate.
    #[tokio::test]
    async fn a_refusal_the_request_lost_is_learned_from_a_handshake_of_our_own() {
        let (daemon_ca, clients_ca, stranger) = (Ca::new(), Ca::new(), Ca::new());
        let host = daemon(&daemon_ca, &clients_ca).await;

        let dir = cert_dir(&daemon_ca, &stranger);
        let refused = tls_in(dir.path()).request_error(&host, not_ready()).await;
        let shown = refused.to_string();
        let cert = dir.path().join("cert.pem");
        assert!(
            shown.contains(&format!(
                "the daemon refused the client certificate {}: received fatal alert",
                cert.display()
            )) && shown.ends_with(
                "the request failed with: client error (Canceled): connection was not ready"
            ),
            "{shown}"
        );

        let dir = cert_dir(&stranger, &clients_ca);
        let untrusted = tls_in(dir.path()).request_error(&host, not_ready()).await;
        let shown = untrusted.to_string();
        let ca = dir.path().join("ca.pem");
        assert!(
            shown.contains(&format!(
                "the daemon's certificate is not trusted by {}: invalid peer certificate",
                ca.display()
            )),
            "{shown}"
        );

        // certificates the daemon takes: whatever failed, it was not the handshake
        let dir = cert_dir(&daemon_ca, &clients_ca);
        let other = tls_in(dir.path()).request_error(&host, not_ready()).await;
        assert_eq!(
            other.to_string(),
            format!(
                "docker daemon: cannot reach the Docker daemon {host} (DOCKER_HOST) over TLS: \
                 client error (Canceled): connection was not ready"
            )
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
