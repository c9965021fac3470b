//! TLS for gitoxide's HTTP client: the same provider (ring) and roots as slipway's
//! other clients.

/// gix's reqwest takes rustls's process-wide provider: ring, the one every other TLS
/// client here is built with.
pub(super) fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// gitoxide's HTTP options for `url` with slipway's TLS roots: the compiled-in
/// Mozilla roots plus the system bundle when there is one. reqwest's own default
/// (the platform verifier) refuses to start without a system bundle, and the
/// controller image has none.
pub(super) fn http_options(repo: &gix::Repository, url: &str) -> Option<Box<dyn std::any::Any>> {
    use gix_transport::client::blocking_io::http;
    let opts = repo.transport_options(url, None).ok().flatten()?;
    let mut opts = opts.downcast::<http::Options>().ok()?;
    let tls = tls_config();
    let backend = http::reqwest::Options {
        configure_client: Some(Box::new(move |b| {
            Ok(b.tls_backend_preconfigured(tls.clone()))
        })),
        configure_request: None,
    };
    opts.backend = Some(std::sync::Arc::new(std::sync::Mutex::new(backend)));
    Some(opts)
}

fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let (added, _) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    tracing::trace!(added, "system CA certificates for git over https");
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth()
}
