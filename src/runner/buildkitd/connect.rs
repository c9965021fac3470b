//! Reaching buildkitd: `tcp://HOST:PORT` with mutual TLS (as buildctl's
//! `--tlscacert/--tlscert/--tlskey`), or `unix:///path`.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::runner::engine::BuildkitdArgs;
use crate::{Error, Result};

/// Where buildkitd listens, parsed from `--buildkit-addr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Addr {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// `tcp://HOST:PORT` or `unix:///path`; anything else is a configuration mistake.
pub(super) fn parse_addr(addr: &str) -> Result<Addr> {
    let bad = |why: &str| {
        Error::InvalidSpec(format!(
            "--buildkit-addr '{addr}': {why} (use tcp://HOST:PORT or unix:///path)"
        ))
    };
    if let Some(path) = addr.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(bad("a unix socket path must be absolute"));
        }
        return Ok(Addr::Unix(path.into()));
    }
    let Some(rest) = addr.strip_prefix("tcp://") else {
        return Err(bad("unknown scheme"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let port = port.parse().map_err(|_| bad("the port is not a number"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(Addr::Tcp {
        host: host.trim_start_matches('[').trim_end_matches(']').into(),
        port,
    })
}

fn read_pem(flag: &str, path: &Path) -> Result<Vec<u8>> {
    let data = std::fs::read(path)
        .map_err(|e| Error::InvalidSpec(format!("{flag} {}: {e}", path.display())))?;
    if !String::from_utf8_lossy(&data).contains("-----BEGIN ") {
        return Err(Error::InvalidSpec(format!(
            "{flag} {}: not a PEM file",
            path.display()
        )));
    }
    Ok(data)
}

/// A lazily connecting channel: a buildkitd that is down (a sidecar still starting)
/// fails the build retryably, not the process at start. Bad TLS files fail here.
pub(super) fn channel(args: &BuildkitdArgs) -> Result<(Channel, String)> {
    let shown = args.addr.clone().unwrap_or_default();
    match parse_addr(&shown)? {
        Addr::Unix(path) => {
            // the URI is required but unused: the connector dials the socket
            let endpoint = Endpoint::from_static("http://buildkitd.sock");
            let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(s))
                }
            }));
            Ok((channel, shown))
        }
        Addr::Tcp { host, port } => {
            let uri_host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            let tls = match (&args.ca, &args.cert, &args.key) {
                (None, None, None) => None,
                (ca, cert, key) => {
                    let mut tls = ClientTlsConfig::new().domain_name(host.clone());
                    if let Some(ca) = ca {
                        tls = tls
                            .ca_certificate(Certificate::from_pem(read_pem("--buildkit-ca", ca)?));
                    }
                    match (cert, key) {
                        (Some(c), Some(k)) => {
                            tls = tls.identity(Identity::from_pem(
                                read_pem("--buildkit-cert", c)?,
                                read_pem("--buildkit-key", k)?,
                            ))
                        }
                        (None, None) => {}
                        _ => {
                            return Err(Error::InvalidSpec(
                                "--buildkit-cert and --buildkit-key go together".into(),
                            ));
                        }
                    }
                    Some(tls)
                }
            };
            // tonic speaks TLS only to an https URI
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mut endpoint = Endpoint::from_shared(format!("{scheme}://{uri_host}:{port}"))
                .map_err(|e| Error::InvalidSpec(format!("--buildkit-addr '{shown}': {e}")))?;
            if let Some(tls) = tls {
                endpoint = endpoint
                    .tls_config(tls)
                    .map_err(|e| Error::InvalidSpec(format!("buildkitd TLS settings: {e}")))?;
            }
            Ok((endpoint.connect_lazy(), shown))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_are_refused_clearly() {
        assert_eq!(
            parse_addr("tcp://127.0.0.1:1234").unwrap(),
            Addr::Tcp {
                host: "127.0.0.1".into(),
                port: 1234
            }
        );
        assert_eq!(
            parse_addr("unix:///run/buildkit/buildkitd.sock").unwrap(),
            Addr::Unix("/run/buildkit/buildkitd.sock".into())
        );
        for bad in [
            "127.0.0.1:1234",
            "tcp://host",
            "tcp://h:x",
            "unix://rel.sock",
        ] {
            let e = parse_addr(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidSpec(_)), "{bad}: {e:?}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn unreadable_tls_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("cert.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let args = |ca: PathBuf| BuildkitdArgs {
            addr: Some("tcp://127.0.0.1:1234".into()),
            ca: Some(ca),
            ..Default::default()
        };
        let missing = dir.path().join("nope.pem");
        let e = channel(&args(missing.clone())).unwrap_err();
        assert!(matches!(e, Error::InvalidSpec(_)), "{e:?}");
        assert!(e.to_string().contains(&*missing.to_string_lossy()), "{e}");
        let e = channel(&args(junk.clone())).unwrap_err();
        assert!(e.to_string().contains("not a PEM file"), "{e}");
    }
}
