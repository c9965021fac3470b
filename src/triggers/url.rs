//! The `url` source poller: each URL's ETag (else Last-Modified), read with a HEAD,
//! or a GET whose body is never read when the server refuses HEAD.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::poll::{self, Probe};
use super::{Observation, Targets};
use crate::runner::fetch::{error_chain, redact_credentials, version};

/// Longest wait for one server's answer (headers only).
const LOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks every URL in `targets.urls` every `every` (zero: never), sending
/// [`Observation::Url`] the first time and whenever its version changes.
pub fn spawn_url_poller(
    targets: watch::Receiver<Targets>,
    every: Duration,
    client: reqwest::Client,
    out: mpsc::Sender<Observation>,
) -> JoinHandle<()> {
    tokio::spawn(poll::run(Urls { client }, targets, every, out))
}

struct Urls {
    client: reqwest::Client,
}

impl Probe for Urls {
    type Arg = ();
    const WHAT: &'static str = "url source";

    fn wanted(&self, targets: &Targets) -> BTreeMap<String, ()> {
        targets.urls.iter().map(|u| (u.clone(), ())).collect()
    }

    async fn look(&self, url: &str, _: ()) -> Result<String, String> {
        current_version(&self.client, url).await
    }

    fn observation(&self, url: String, version: String) -> Observation {
        Observation::Url { url, version }
    }

    fn shown(&self, url: &str) -> String {
        redact_credentials(url)
    }
}

/// The version `url` serves now. Errors never carry the URL's credentials.
pub async fn current_version(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let mut resp = headers_of(client, Method::HEAD, url).await?;
    if !resp.status().is_success() {
        // some servers (signed object-store URLs) answer only GET; the body is
        // dropped unread, which closes the connection
        resp = headers_of(client, Method::GET, url).await?;
    }
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    version(resp.headers()).ok_or_else(|| {
        "the server sends neither ETag nor Last-Modified, so changes cannot be told".to_string()
    })
}

async fn headers_of(
    client: &reqwest::Client,
    method: Method,
    url: &str,
) -> Result<reqwest::Response, String> {
    let sent = client
        .request(method, url)
        .timeout(LOOK_TIMEOUT)
        .send()
        .await;
    // reqwest's message embeds the URL, credentials included: keep only the causes
    sent.map_err(|e| error_chain(&e.without_url()))
}

#[cfg(test)]
mod tests;
