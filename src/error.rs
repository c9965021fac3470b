//! The [`Detail`] an infrastructure [`crate::Error`] carries: its message and the
//! typed error behind it, for code that classifies a failure by type, not by text.

/// The typed cause behind a [`Detail`].
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A message and, when there is one, the typed error it was made from (reqwest,
/// bollard, tonic, io, gix...): code that classifies a failure looks at the cause,
/// never at the message's text.
#[derive(Debug)]
pub struct Detail {
    message: String,
    source: Option<Cause>,
}

impl Detail {
    pub(crate) fn new(message: impl Into<String>, source: impl Into<Cause>) -> Self {
        Detail {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// `prefix: message`, keeping the cause.
    pub fn prefixed(self, prefix: impl std::fmt::Display) -> Self {
        Detail {
            message: format!("{prefix}: {}", self.message),
            source: self.source,
        }
    }

    /// What users see (the status message, without the variant's prefix).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The typed error the message was made from, if any.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl From<String> for Detail {
    fn from(message: String) -> Self {
        Detail {
            message,
            source: None,
        }
    }
}

impl From<&str> for Detail {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The first `T` in `e`'s chain, `e` included. Goes through `std::io::Error`
/// payloads, which an io::Error's own `source()` skips (hyper-rustls hands a
/// `rustls::Error` over in an io::Error inside another).
pub fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        let payload = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
        next = match payload {
            Some(p) => Some(p as _),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::{Error, Kind};
    use std::error::Error as _;

    #[test]
    fn a_message_only_error_has_no_source_and_a_caused_one_keeps_its_cause() {
        let plain = Error::new(Kind::Registry, "token service sent no token");
        assert!(plain.source().is_none());
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = Error::docker("cannot reach the daemon: refused", refused);
        assert_eq!(
            e.to_string(),
            "docker daemon: cannot reach the daemon: refused"
        );
        assert_eq!(e.detail(), "cannot reach the daemon: refused");
        let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            io.map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        // a prefix added on the way up keeps the cause
        let Error::Context(d) = Error::context("git fetch failed", std::io::Error::other("x"))
        else {
            unreachable!()
        };
        let e = Error::Context(d.prefixed("submodule 'lib' of r"));
        assert_eq!(
            e.to_string(),
            "build context: submodule 'lib' of r: git fetch failed"
        );
        assert!(e.source().is_some());
    }

    #[test]
    fn a_cause_inside_an_io_error_is_found() {
        // as hyper-rustls hands it over: tokio-rustls's io::Error in another
        let wrapped = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let e = Error::docker("handshake", wrapped);
        assert!(matches!(
            crate::find_cause::<rustls::Error>(&e),
            Some(rustls::Error::InvalidCertificate(_))
        ));
        assert!(crate::find_cause::<std::fmt::Error>(&e).is_none());
    }
}
