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

/// The first `T` in `e`'s chain, `e` included. Also looks inside `std::io::Error`
/// payloads, whose own `source()` skips the wrapped error (hyper-rustls and
/// tokio-rustls hand a `rustls::Error` over that way).
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
        if let Some(t) = payload.and_then(|p| p.downcast_ref::<T>()) {
            return Some(t);
        }
        next = e.source();
    }
    None
}
