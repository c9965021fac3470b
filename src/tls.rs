//! The TLS side of slipway's own HTTPS calls (registries, base lookups, `url`
//! sources), the Docker way: the compiled-in roots, the system bundle when there is
//! one, `--ca-file`, and per registry host `<certs-dir>/<host[:port]>/` with `*.crt`
//! CAs and `*.cert` + `*.key` client identities (Docker's certs.d).
//!
//! reqwest takes one client identity per client, so each host of the certs dir gets
//! its own client; every other host shares the default one. Git over https (gitoxide's
//! own reqwest) gets the same roots and `--ca-file` as a rustls config, [`GitTls`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use reqwest::{Certificate, ClientBuilder, Identity};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tracing::{debug, warn};

use crate::{Error, Result};

/// Where slipway finds extra CAs and client certificates.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// Extra CA certificates (a PEM bundle) trusted for registries, `url` sources
    /// and `git` sources over https.
    #[arg(long, env = "SLIPWAY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Docker's certs.d: `DIR/<host[:port]>/*.crt` are CAs for that registry,
    /// `client.cert` + `client.key` its client certificate. Keep it the same as the
    /// Docker daemon's (and buildkitd's), which push with their own.
    #[arg(long, env = "SLIPWAY_CERTS_DIR", default_value = DEFAULT_CERTS_DIR)]
    pub certs_dir: PathBuf,
}

pub const DEFAULT_CERTS_DIR: &str = "/etc/docker/certs.d";

impl Default for TlsArgs {
    fn default() -> Self {
        Self {
            ca_file: None,
            certs_dir: DEFAULT_CERTS_DIR.into(),
        }
    }
}

impl TlsArgs {
    /// The same flags for `slipway executor` on a Mesos agent (paths as on this
    /// host, as with the buildkitd files: agents are set up alike).
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(f) = &self.ca_file {
            out.extend(["--ca-file".into(), f.display().to_string()]);
        }
        if self.certs_dir != Path::new(DEFAULT_CERTS_DIR) {
            out.extend(["--certs-dir".into(), self.certs_dir.display().to_string()]);
        }
        out
    }
}

/// What one registry host's certs.d directory holds.
#[derive(Clone, Default)]
struct HostTls {
    cas: Vec<Certificate>,
    identity: Option<Identity>,
}

/// The trust and identities of [`TlsArgs`], read once at start-up.
#[derive(Clone, Default)]
pub struct Tls {
    /// The system bundle and `--ca-file`, on top of the compiled-in roots.
    roots: Vec<Certificate>,
    /// `--ca-file`'s certificates as rustls takes them, for git.
    ca_file: Vec<CertificateDer<'static>>,
    hosts: BTreeMap<String, HostTls>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("roots", &self.roots.len())
            .field("hosts", &self.hosts.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Tls {
    /// Reads every file `args` names; a file that cannot be read or holds no PEM
    /// certificate is an error naming it. The system bundle is optional: its
    /// problems are only warned about.
    pub fn load(args: &TlsArgs) -> Result<Self> {
        let ca_file = match &args.ca_file {
            Some(file) => read_certs(file)?,
            None => Vec::new(),
        };
        Ok(Self {
            roots: for_reqwest(native_roots().iter().chain(&ca_file)),
            ca_file,
            hosts: read_certs_dir(&args.certs_dir)?,
        })
    }

    /// The trust for git over https: the compiled-in roots, the system bundle and
    /// `--ca-file` (certs.d is about registries only).
    pub fn git(&self) -> GitTls {
        GitTls::with(&self.ca_file)
    }

    /// A client for each host of the certs dir and one for the rest, each made by
    /// `configure` (timeouts and the like) on top of this trust.
    pub fn clients(&self, configure: impl Fn(ClientBuilder) -> ClientBuilder) -> Result<Clients> {
        let mut hosts = BTreeMap::new();
        for (host, h) in &self.hosts {
            hosts.insert(host.clone(), self.build(Some(h), &configure)?);
        }
        Ok(Clients {
            default: self.build(None, &configure)?,
            hosts: Arc::new(hosts),
        })
    }

    /// One client trusting the roots and `--ca-file`, for hosts that are not
    /// registries (certs.d is about registries only).
    pub fn client(
        &self,
        configure: impl Fn(ClientBuilder) -> ClientBuilder,
    ) -> Result<reqwest::Client> {
        self.build(None, &configure)
    }

    fn build(
        &self,
        host: Option<&HostTls>,
        configure: &impl Fn(ClientBuilder) -> ClientBuilder,
    ) -> Result<reqwest::Client> {
        let mut b = configure(reqwest::Client::builder());
        for c in self.roots.iter().chain(host.iter().flat_map(|h| &h.cas)) {
            b = b.add_root_certificate(c.clone());
        }
        if let Some(id) = host.and_then(|h| h.identity.clone()) {
            b = b.identity(id);
        }
        b.build()
            .map_err(|e| Error::InvalidSpec(format!("TLS setup: {e}")))
    }
}

/// HTTP clients by registry host (see [`Tls::clients`]); cheap to clone.
#[derive(Clone)]
pub struct Clients {
    default: reqwest::Client,
    hosts: Arc<BTreeMap<String, reqwest::Client>>,
}

impl From<reqwest::Client> for Clients {
    fn from(default: reqwest::Client) -> Self {
        Self {
            default,
            hosts: Arc::default(),
        }
    }
}

impl Clients {
    /// The client for hosts without a certs.d entry (and for `url` sources).
    pub fn default_client(&self) -> &reqwest::Client {
        &self.default
    }
}

/// How registry calls reach a host: a plain client, or [`Clients`] by host.
pub trait RegistryHttp: Sync {
    fn client(&self, host: &str) -> &reqwest::Client;
    /// `https://host` or, for loopback registries, `http://host` (Docker's
    /// default insecure range) unless a certs.d entry says the host speaks TLS.
    fn base_url(&self, host: &str) -> String {
        crate::registry::base_url(host)
    }
}

impl RegistryHttp for reqwest::Client {
    fn client(&self, _: &str) -> &reqwest::Client {
        self
    }
}

impl RegistryHttp for Clients {
    fn client(&self, host: &str) -> &reqwest::Client {
        self.hosts.get(host).unwrap_or(&self.default)
    }

    fn base_url(&self, host: &str) -> String {
        if self.hosts.contains_key(host) {
            format!("https://{host}")
        } else {
            crate::registry::base_url(host)
        }
    }
}

/// A rustls client config trusting what [`Tls`] trusts, for gitoxide's HTTP client.
#[derive(Clone)]
pub struct GitTls(Arc<rustls::ClientConfig>);

impl Default for GitTls {
    /// The compiled-in roots and the system bundle.
    fn default() -> Self {
        Self::with(&[])
    }
}

impl std::fmt::Debug for GitTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GitTls")
    }
}

impl GitTls {
    fn with(extra: &[CertificateDer<'static>]) -> Self {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let (added, ignored) =
            roots.add_parsable_certificates(native_roots().iter().chain(extra).cloned());
        debug!(added, ignored, "CA certificates for git over https");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Self(Arc::new(config))
    }

    pub fn config(&self) -> &rustls::ClientConfig {
        &self.0
    }
}

/// The system bundle: `SSL_CERT_FILE`, `SSL_CERT_DIR` or the distribution's usual
/// place, when there is one (the scratch image has none unless given one). Read once:
/// every git fetch needs it.
fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: LazyLock<Vec<CertificateDer<'static>>> = LazyLock::new(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            warn!(error = %e, "system CA bundle");
        }
        debug!(certificates = found.certs.len(), "system CA bundle");
        found.certs
    });
    &ROOTS
}

/// The same certificates as reqwest takes them.
fn for_reqwest<'a>(
    certs: impl IntoIterator<Item = &'a CertificateDer<'static>>,
) -> Vec<Certificate> {
    certs
        .into_iter()
        .filter_map(|c| Certificate::from_der(c).ok())
        .collect()
}

fn read(file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file)
        .map_err(|e| Error::InvalidSpec(format!("cannot read {}: {e}", file.display())))
}

/// The certificates of a PEM file; none is an error naming it.
fn read_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let not_pem = || Error::InvalidSpec(format!("{}: no PEM certificate in it", file.display()));
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&read(file)?)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| not_pem())?;
    if certs.is_empty() {
        return Err(not_pem());
    }
    Ok(certs)
}

/// `name.cert` with its `name.key`, as Docker pairs them.
fn read_identity(cert: &Path) -> Result<Identity> {
    let key = cert.with_extension("key");
    if !key.exists() {
        return Err(Error::InvalidSpec(format!(
            "{}: client certificate without its key {}",
            cert.display(),
            key.display()
        )));
    }
    let mut pem = read(cert)?;
    pem.push(b'\n');
    pem.extend(read(&key)?);
    Identity::from_pem(&pem).map_err(|e| {
        Error::InvalidSpec(format!(
            "{} + {}: not a PEM certificate and key: {}",
            cert.display(),
            key.display(),
            crate::registry::error_chain(&e)
        ))
    })
}

/// `dir/<host>/` for every host; a missing `dir` is just none.
fn read_certs_dir(dir: &Path) -> Result<BTreeMap<String, HostTls>> {
    let unreadable = |p: &Path, e: std::io::Error| {
        Error::InvalidSpec(format!("cannot read {}: {e}", p.display()))
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(unreadable(dir, e)),
    };
    let mut hosts = BTreeMap::new();
    for entry in entries {
        let host_dir = entry.map_err(|e| unreadable(dir, e))?.path();
        if !host_dir.is_dir() {
            continue;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&host_dir)
            .map_err(|e| unreadable(&host_dir, e))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| unreadable(&host_dir, e))?;
        files.sort();
        let mut h = HostTls::default();
        for f in &files {
            match f.extension().and_then(|e| e.to_str()) {
                Some("crt") => h.cas.extend(for_reqwest(&read_certs(f)?)),
                Some("cert") if h.identity.is_none() => h.identity = Some(read_identity(f)?),
                Some("cert") => {
                    warn!(file = %f.display(), "a second client certificate is ignored")
                }
                _ => {}
            }
        }
        let host = host_dir.file_name().unwrap_or_default().to_string_lossy();
        debug!(%host, cas = h.cas.len(), client_cert = h.identity.is_some(), "certs.d");
        hosts.insert(host.into_owned(), h);
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(ca_file: Option<PathBuf>, certs_dir: &Path) -> Result<Tls> {
        Tls::load(&TlsArgs {
            ca_file,
            certs_dir: certs_dir.into(),
        })
    }

    #[test]
    fn bad_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let garbage = tmp.path().join("bundle.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let e = load(Some(garbage.clone()), tmp.path()).err().unwrap();
        assert!(
            e.to_string().contains("bundle.pem: no PEM certificate"),
            "{e}"
        );
        let missing = tmp.path().join("missing.pem");
        let e = load(Some(missing), tmp.path()).err().unwrap();
        assert!(
            e.to_string().contains("cannot read") && e.to_string().contains("missing.pem"),
            "{e}"
        );

        let certs = tmp.path().join("certs.d");
        let host = certs.join("r.example:5000");
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("ca.crt"), "junk").unwrap();
        let e = load(None, &certs).err().unwrap();
        assert!(
            e.to_string().contains("r.example:5000/ca.crt: no PEM"),
            "{e}"
        );
        std::fs::remove_file(host.join("ca.crt")).unwrap();
        std::fs::write(host.join("client.cert"), "junk").unwrap();
        let e = load(None, &certs).err().unwrap();
        assert!(
            e.to_string()
                .contains("client.cert: client certificate without its key"),
            "{e}"
        );
        std::fs::write(host.join("client.key"), "junk").unwrap();
        let e = load(None, &certs).err().unwrap();
        assert!(
            e.to_string().contains("not a PEM certificate and key"),
            "{e}"
        );
    }

    #[test]
    fn the_executor_gets_the_flags_that_differ_from_the_defaults() {
        assert!(TlsArgs::default().to_args().is_empty());
        let args = TlsArgs {
            ca_file: Some("/etc/corp/ca.pem".into()),
            certs_dir: "/certs".into(),
        };
        assert_eq!(
            args.to_args(),
            ["--ca-file", "/etc/corp/ca.pem", "--certs-dir", "/certs"]
        );
    }

    #[test]
    fn a_host_of_the_certs_dir_speaks_tls_even_on_loopback() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("127.0.0.1:5443")).unwrap();
        let clients = load(None, tmp.path()).unwrap().clients(|b| b).unwrap();
        assert_eq!(clients.base_url("127.0.0.1:5443"), "https://127.0.0.1:5443");
        assert_eq!(clients.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        let none = load(None, &tmp.path().join("absent")).unwrap();
        assert!(none.hosts.is_empty());
    }
}
