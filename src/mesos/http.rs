//! The HTTP side of both Mesos APIs: protobuf calls, and the long-lived SUBSCRIBE
//! response read as a RecordIO stream of events.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use prost::Message;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use reqwest::{StatusCode, Url};

use super::recordio;
use crate::{Error, Result};

pub const PROTOBUF: &str = "application/x-protobuf";
pub const STREAM_ID: &str = "Mesos-Stream-Id";

/// Redirects followed to find the leading master before giving up.
const MAX_REDIRECTS: usize = 4;

/// A client that does not follow redirects by itself: a redirect from a master names
/// the leader, and the framework must send every later call there.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .tcp_keepalive(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// HTTP basic credentials for the master (`--principal`, `--secret-file`).
#[derive(Clone)]
pub struct BasicAuth {
    pub principal: String,
    pub secret: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BasicAuth({}, <redacted>)", self.principal)
    }
}

/// Headers of one call: protobuf both ways, the stream ID, credentials.
pub fn headers(stream_id: Option<&str>, auth: Option<&BasicAuth>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
    h.insert(ACCEPT, HeaderValue::from_static(PROTOBUF));
    if let Some(id) = stream_id.and_then(|s| HeaderValue::from_str(s).ok()) {
        h.insert(STREAM_ID, id);
    }
    if let Some(v) = auth.and_then(BasicAuth::header) {
        h.insert(AUTHORIZATION, v);
    }
    h
}

/// `req` with the credentials, when there are any (the agent's read-only endpoints
/// ask for the same ones the master does).
pub fn authorized(
    req: reqwest::RequestBuilder,
    auth: Option<&BasicAuth>,
) -> reqwest::RequestBuilder {
    match auth.and_then(BasicAuth::header) {
        Some(v) => req.header(AUTHORIZATION, v),
        None => req,
    }
}

impl BasicAuth {
    /// The `Authorization` value, marked sensitive so no debug output shows it.
    pub fn header(&self) -> Option<HeaderValue> {
        let raw = format!("{}:{}", self.principal, self.secret);
        let value = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw)
        );
        let mut v = HeaderValue::from_str(&value).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

/// POSTs a protobuf message, following redirects to the leader. Returns the response
/// and the URL that answered (the leader's).
pub async fn post(
    client: &reqwest::Client,
    url: &Url,
    headers: HeaderMap,
    body: impl Message,
) -> Result<(reqwest::Response, Url)> {
    let body = Bytes::from(body.encode_to_vec());
    let mut url = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let resp = client
            .post(url.clone())
            .headers(headers.clone())
            .body(body.clone())
            .send()
            .await
            .map_err(|e| Error::Mesos(format!("{}: {}", url, crate::registry::error_chain(&e))))?;
        if matches!(
            resp.status(),
            StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
        ) {
            // Mesos answers with a scheme-relative Location: //host:port/api/v1/scheduler
            let next = resp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| Error::Mesos(format!("{url}: redirect without a Location")))?;
            tracing::info!(from = %url, to = %next, "redirected to the leading master");
            url = next;
            continue;
        }
        return Ok((resp, url));
    }
    Err(Error::Mesos(format!("{url}: too many redirects")))
}

/// Checks a call's answer: 200/202 are fine; anything else is an error with the
/// master's or agent's own words.
pub async fn expect_accepted(resp: reqwest::Response, what: &str) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    let text = text.trim();
    Err(Error::Mesos(match status {
        StatusCode::UNAUTHORIZED => {
            format!("{what}: not authenticated (401); check --principal and --secret-file")
        }
        StatusCode::FORBIDDEN => format!("{what}: not authorized (403): {text}"),
        _ => format!("{what}: HTTP {status}: {text}"),
    }))
}

/// The event stream of a SUBSCRIBE response, decoded message by message.
pub fn events<E: Message + Default>(
    resp: reqwest::Response,
) -> impl Stream<Item = Result<E>> + Send + Unpin {
    Box::pin(recordio::records(resp.bytes_stream().boxed())).map(|r| {
        let rec = r.map_err(|e| Error::Mesos(format!("event stream: {e}")))?;
        E::decode(rec).map_err(|e| Error::Mesos(format!("event stream: bad protobuf: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_stream_id_and_hide_the_secret() {
        let auth = BasicAuth {
            principal: "slipway".into(),
            secret: "hunter2".into(),
        };
        let h = headers(Some("abc-123"), Some(&auth));
        assert_eq!(h[STREAM_ID], "abc-123");
        assert_eq!(h[CONTENT_TYPE], PROTOBUF);
        assert!(h[AUTHORIZATION].is_sensitive());
        assert!(!format!("{auth:?}").contains("hunter2"));
        assert!(!format!("{h:?}").contains("c2xpcHdheTpodW50ZXIy"));
    }
}
