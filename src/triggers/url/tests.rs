use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;

/// A server whose `/ctx.tar.gz` has ETag `"v{N}"` (N from `version`), and whose
/// `/get-only` answers GET alone with a Last-Modified.
async fn serve(version: Arc<AtomicU32>, requests: Arc<AtomicU32>) -> String {
    let etag = move || {
        let (version, requests) = (version.clone(), requests.clone());
        async move {
            requests.fetch_add(1, Ordering::SeqCst);
            let mut h = HeaderMap::new();
            let v = format!("\"v{}\"", version.load(Ordering::SeqCst));
            h.insert(header::ETAG, v.parse().unwrap());
            (h, "tarball")
        }
    };
    let app = Router::new()
        .route("/ctx.tar.gz", get(etag))
        .route(
            "/get-only",
            get(|| async {
                let mut h = HeaderMap::new();
                let at = "Wed, 21 Oct 2026 07:28:00 GMT";
                h.insert(header::LAST_MODIFIED, at.parse().unwrap());
                (h, "tarball")
            })
            .head(|| async { StatusCode::METHOD_NOT_ALLOWED }),
        )
        .route("/plain", get(|| async { "no version" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn next(seen: &mut mpsc::Receiver<Observation>) -> Observation {
    tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("an observation")
        .unwrap()
}

#[tokio::test]
async fn a_changed_etag_is_reported_once_and_an_unchanged_one_never_again() {
    let (version, requests) = (Arc::new(AtomicU32::new(1)), Arc::new(AtomicU32::new(0)));
    let base = serve(version.clone(), requests.clone()).await;
    let url = format!("{base}/ctx.tar.gz");
    let (tx, targets) = watch::channel(Targets::default());
    let (out, mut seen) = mpsc::channel(16);
    let every = Duration::from_millis(100);
    let poller = spawn_url_poller(targets, every, reqwest::Client::new(), out);
    tx.send_modify(|t| {
        t.urls.insert(url.clone());
    });
    let first = Observation::Url {
        url: url.clone(),
        version: "\"v1\"".into(),
    };
    assert_eq!(next(&mut seen).await, first);
    // several intervals with the same ETag: looked at, nothing reported
    tokio::time::sleep(every * 4).await;
    assert!(requests.load(Ordering::SeqCst) >= 3, "it polls");
    assert!(seen.try_recv().is_err(), "an unchanged ETag is no news");
    version.store(2, Ordering::SeqCst);
    let second = Observation::Url {
        url: url.clone(),
        version: "\"v2\"".into(),
    };
    assert_eq!(next(&mut seen).await, second);
    poller.abort();
}

#[tokio::test]
async fn a_refused_head_falls_back_to_get_and_errors_hide_credentials() {
    let base = serve(Arc::default(), Arc::default()).await;
    let client = reqwest::Client::new();
    assert_eq!(
        current_version(&client, &format!("{base}/get-only")).await,
        Ok("Wed, 21 Oct 2026 07:28:00 GMT".into())
    );
    let none = current_version(&client, &format!("{base}/plain")).await;
    assert!(none.unwrap_err().contains("neither ETag nor Last-Modified"));
    let missing = current_version(&client, &format!("{base}/missing")).await;
    assert_eq!(missing, Err("HTTP 404 Not Found".into()));
    let down = current_version(&client, "http://bob:hunter2@127.0.0.1:1/c.tar").await;
    let down = down.unwrap_err();
    assert!(!down.contains("hunter2"), "{down}");
    assert_eq!(
        Urls { client }.shown("http://bob:hunter2@example.org/c.tar"),
        "http://example.org/c.tar"
    );
}

#[tokio::test]
async fn zero_never_polls() {
    let requests = Arc::new(AtomicU32::new(0));
    let base = serve(Arc::default(), requests.clone()).await;
    let mut t = Targets::default();
    t.urls.insert(format!("{base}/ctx.tar.gz"));
    let (_tx, targets) = watch::channel(t);
    let (out, _seen) = mpsc::channel(16);
    let poller = spawn_url_poller(targets, Duration::ZERO, reqwest::Client::new(), out);
    poller.await.unwrap();
    assert_eq!(requests.load(Ordering::SeqCst), 0);
}
