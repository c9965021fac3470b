//! TLS for gitoxide's HTTP client: the same provider (ring) and trust as slipway's
//! other clients, `--ca-file` included ([`GitTls`]).

use crate::tls::GitTls;

/// gix's reqwest takes rustls's process-wide provider: ring, the one every other TLS
/// client here is built with.
pub(super) fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// gitoxide's HTTP options for `url` trusting `tls`. reqwest's own default (the
/// platform verifier) refuses to start without a system bundle, and the controller
/// image has none.
pub(super) fn http_options(
    repo: &gix::Repository,
    url: &str,
    tls: &GitTls,
) -> Option<Box<dyn std::any::Any>> {
    use gix_transport::client::blocking_io::http;
    let opts = repo.transport_options(url, None).ok().flatten()?;
    let mut opts = opts.downcast::<http::Options>().ok()?;
    let config = tls.config().clone();
    let backend = http::reqwest::Options {
        configure_client: Some(Box::new(move |b| {
            Ok(b.tls_backend_preconfigured(config.clone()))
        })),
        configure_request: None,
    };
    opts.backend = Some(std::sync::Arc::new(std::sync::Mutex::new(backend)));
    Some(opts)
}
