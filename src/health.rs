//! Health endpoints for probes and scrapers: `/healthz` (the process answers),
//! `/readyz` (every required check is ready) and `/metrics` (see [`crate::metrics`]).

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::Result;
use crate::metrics::Metrics;

/// Content type of the OpenMetrics text format that [`crate::metrics::Metrics::encode`] writes.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Named readiness checks: the process is ready when every one is.
#[derive(Default)]
pub struct Readiness {
    /// Check name → `None` when ready, else why not.
    checks: Mutex<BTreeMap<String, Option<String>>>,
}

static READINESS: LazyLock<Readiness> = LazyLock::new(Readiness::default);

/// The process-wide readiness checks.
pub fn readiness() -> &'static Readiness {
    &READINESS
}

impl Readiness {
    fn update(&self, name: &str, state: Option<String>) {
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks.insert(name.to_string(), state);
    }

    /// Registers the check `name`, not ready until [`Readiness::set`] says so
    /// (again not ready if it was registered before).
    pub fn require(&self, name: &str) {
        self.update(name, Some("not ready".into()));
    }

    /// The check `name` is ready (`ok`) or not.
    pub fn set(&self, name: &str, ok: bool) {
        self.update(name, (!ok).then(|| "not ready".to_string()));
    }

    /// The check `name` is not ready, for the reason `why` (shown by `/readyz`).
    pub fn not_ready(&self, name: &str, why: impl Into<String>) {
        // `/readyz` shows one check per line
        self.update(name, Some(why.into().replace('\n', " ")));
    }

    /// One line per check not ready, `name: why`; empty when ready.
    pub fn failing(&self) -> Vec<String> {
        let checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks
            .iter()
            .filter_map(|(name, why)| Some(format!("{name}: {}", why.as_ref()?)))
            .collect()
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` (of `metrics`), and `extra`'s
/// routes, on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    extra: Router,
) -> Result<()> {
    axum::serve(listener, router(readiness(), metrics).merge(extra)).await?;
    Ok(())
}

fn router(ready: &'static Readiness, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(ready)
        .route("/metrics", get(metrics_text).with_state(metrics))
}

async fn readyz(State(ready): State<&'static Readiness>) -> impl IntoResponse {
    let failing = ready.failing();
    if failing.is_empty() {
        (StatusCode::OK, "ok".to_string())
    } else {
        let mut body = failing.join("\n");
        body.push('\n');
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

async fn metrics_text(State(metrics): State<Metrics>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, OPENMETRICS)], metrics.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_required_check_is() {
        let r = Readiness::default();
        assert!(r.failing().is_empty(), "no checks: ready");
        r.require("watch");
        r.require("mesos");
        assert_eq!(r.failing(), ["mesos: not ready", "watch: not ready"]);
        r.set("watch", true);
        r.not_ready("mesos", "not subscribed");
        assert_eq!(r.failing(), ["mesos: not subscribed"]);
        r.set("mesos", true);
        assert!(r.failing().is_empty());
        r.set("mesos", false);
        assert_eq!(r.failing(), ["mesos: not ready"]);
    }

    /// Serves a router over a fresh readiness and `metrics` on 127.0.0.1; returns
    /// its base URL.
    async fn start(ready: &'static Readiness, metrics: Metrics) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(ready, metrics)).await });
        format!("http://{addr}")
    }

    async fn get(client: &reqwest::Client, url: String) -> (u16, String, String) {
        let resp = client.get(url).send().await.unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (status, ctype, resp.text().await.unwrap())
    }

    #[tokio::test]
    async fn endpoints_answer_over_http() {
        // a readiness of its own: the process-wide one is shared with other tests
        let ready: &'static Readiness = Box::leak(Box::default());
        let metrics = Metrics::new();
        let base = start(ready, metrics.clone()).await;
        let client = reqwest::Client::builder().no_proxy().build().unwrap();

        assert_eq!(
            get(&client, format!("{base}/healthz")).await,
            (200, "text/plain; charset=utf-8".into(), "ok".into())
        );

        ready.require("watch");
        ready.not_ready("mesos", "not subscribed");
        let (status, _, body) = get(&client, format!("{base}/readyz")).await;
        assert_eq!(status, 503);
        assert_eq!(body, "mesos: not subscribed\nwatch: not ready\n");
        ready.set("watch", true);
        ready.set("mesos", true);
        let (status, _, body) = get(&client, format!("{base}/readyz")).await;
        assert_eq!((status, body.as_str()), (200, "ok"));

        let (status, ctype, body) = get(&client, format!("{base}/metrics")).await;
        assert_eq!(status, 200);
        assert_eq!(ctype, OPENMETRICS);
        assert!(body.contains("# TYPE slipway_queue_depth gauge"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        // what the server was given is what it serves, byte for byte
        metrics.queue(4, 1);
        let (_, _, body) = get(&client, format!("{base}/metrics")).await;
        assert!(body.contains("\nslipway_queue_depth 4\n"), "{body}");
        assert_eq!(body, metrics.encode());
    }
}
