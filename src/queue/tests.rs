use super::*;
use crate::api::DockerBuildSpec;
use crate::registry::DockerConfig;
use crate::runner::{Cancel, Events};
use async_trait::async_trait;

/// A backend that records the order builds start in and fails as told.
struct Recorder {
    order: Mutex<Vec<String>>,
    fail_times: Mutex<HashMap<String, u32>>,
    hold: Duration,
}

#[async_trait]
impl Backend for Recorder {
    async fn run(&self, req: BuildRequest, events: Events, cancel: Cancel) -> Result<BuildOutcome> {
        self.order.lock().unwrap().push(req.key.clone());
        let _ = events.send(crate::runner::BuildEvent::Log(format!(
            "building {}",
            req.key
        )));
        tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Cancelled("x".into())),
            _ = tokio::time::sleep(self.hold) => {}
        }
        let mut f = self.fail_times.lock().unwrap();
        if let Some(n) = f.get_mut(&req.key)
            && *n > 0
        {
            *n -= 1;
            return Err(Error::Registry("connection refused".into()));
        }
        Ok(BuildOutcome {
            digest: "sha256:1".into(),
            image: "r/x@sha256:1".into(),
            pushed_tags: vec![],
            revision: None,
            ..Default::default()
        })
    }
    fn name(&self) -> &'static str {
        "recorder"
    }
}

fn job(ns: &str, name: &str) -> Job {
    Job {
        key: format!("{ns}/{name}"),
        namespace: ns.into(),
        spec_hash: "h".into(),
        request: BuildRequest {
            key: format!("{ns}/{name}"),
            spec: DockerBuildSpec::default(),
            base_dir: None,
            auth: Arc::new(DockerConfig::default()),
            previous: None,
            secrets: Default::default(),
        },
        lane: Lane::User,
        inputs: Inputs::default(),
        number: 1,
    }
}

fn auto(ns: &str, name: &str) -> Job {
    Job {
        lane: Lane::Auto,
        ..job(ns, name)
    }
}

fn recorder(hold_ms: u64) -> Arc<Recorder> {
    Arc::new(Recorder {
        order: Mutex::new(vec![]),
        fail_times: Mutex::new(HashMap::new()),
        hold: Duration::from_millis(hold_ms),
    })
}

async fn finished(
    q: &Queue,
    rx: &mut mpsc::UnboundedReceiver<Update>,
    n: usize,
) -> Vec<(String, Result<BuildOutcome>)> {
    let mut out = vec![];
    while out.len() < n {
        if let Some(Update::Finished {
            key, result, job, ..
        }) = rx.recv().await
        {
            q.done(&key, job);
            out.push((key, result));
        }
    }
    out
}

#[tokio::test]
async fn namespaces_take_turns() {
    let rec = recorder(5);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = QueueConfig {
        concurrency: 1,
        ..Default::default()
    };
    // submit before the dispatcher can start anything
    let q = Queue::start(rec.clone(), cfg, tx);
    for j in [job("a", "1"), job("a", "2"), job("a", "3"), job("b", "1")] {
        q.submit(j);
    }
    finished(&q, &mut rx, 4).await;
    let order = rec.order.lock().unwrap().clone();
    // b's single build does not wait behind all of a's
    let pos_b = order.iter().position(|k| k == "b/1").unwrap();
    assert!(pos_b <= 1, "{order:?}");
}

#[tokio::test]
async fn infrastructure_failures_are_retried_then_succeed() {
    let rec = recorder(1);
    rec.fail_times.lock().unwrap().insert("a/1".into(), 2);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = QueueConfig {
        concurrency: 1,
        max_attempts: 3,
        backoff: Duration::from_millis(1),
        ..Default::default()
    };
    let q = Queue::start(rec.clone(), cfg, tx);
    q.submit(job("a", "1"));
    let mut retries = 0;
    loop {
        match rx.recv().await.unwrap() {
            Update::Retrying { .. } => retries += 1,
            Update::Finished { result, .. } => {
                assert!(result.is_ok());
                break;
            }
            _ => {}
        }
    }
    assert_eq!(retries, 2);
}

#[tokio::test]
async fn gives_up_after_max_attempts() {
    let rec = recorder(1);
    rec.fail_times.lock().unwrap().insert("a/1".into(), 10);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = QueueConfig {
        concurrency: 1,
        max_attempts: 2,
        backoff: Duration::from_millis(1),
        ..Default::default()
    };
    let q = Queue::start(rec.clone(), cfg, tx);
    q.submit(job("a", "1"));
    let (_, result) = finished(&q, &mut rx, 1).await.remove(0);
    let err = result.unwrap_err().to_string();
    assert!(err.contains("gave up after 2 attempts"), "{err}");
    assert_eq!(rec.order.lock().unwrap().len(), 2);
}

/// Each queue counts into the metrics it was given, exactly: two queues side by side
/// (as two tests running at once) never see each other's builds.
#[tokio::test]
async fn a_finished_job_is_counted_by_its_final_result_in_its_own_metrics() {
    let failed = r#"slipway_builds_total{result="RegistryError"}"#;
    let failed_took = r#"slipway_build_duration_seconds_count{result="RegistryError"}"#;
    let ok = r#"slipway_builds_total{result="succeeded"}"#;
    let start = |rec: Arc<Recorder>| {
        let (tx, rx) = mpsc::unbounded_channel();
        let cfg = QueueConfig {
            concurrency: 1,
            max_attempts: 2,
            backoff: Duration::from_millis(1),
            metrics: Metrics::new(),
            ..Default::default()
        };
        (Queue::start(rec, cfg, tx), rx)
    };
    let rec_a = recorder(1);
    rec_a.fail_times.lock().unwrap().insert("a/1".into(), 10);
    let (qa, mut rx_a) = start(rec_a);
    let (qb, mut rx_b) = start(recorder(1));
    qa.submit(job("a", "1"));
    qb.submit(job("b", "1"));
    qb.submit(job("b", "2"));
    finished(&qa, &mut rx_a, 1).await;
    finished(&qb, &mut rx_b, 2).await;
    let (a, b) = (qa.metrics(), qb.metrics());
    // one build, given up after its two attempts: counted once
    assert_eq!(
        (a.sample(failed), a.sample(failed_took), a.sample(ok)),
        (1.0, 1.0, 0.0)
    );
    assert_eq!((b.sample(failed), b.sample(ok)), (0.0, 2.0));
    assert_eq!(b.sample("slipway_queue_depth"), 0.0);
}

#[tokio::test]
async fn cancel_stops_a_running_build() {
    let rec = recorder(10_000);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let q = Queue::start(rec.clone(), QueueConfig::default(), tx);
    q.submit(job("a", "1"));
    while rec.order.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let f = q.in_flight("a/1").expect("in flight");
    assert_eq!((f.hash.as_str(), f.running), ("h", true));
    q.cancel("a/1");
    let (_, result) = finished(&q, &mut rx, 1).await.remove(0);
    assert!(matches!(result, Err(Error::Cancelled(_))));
    assert_eq!(q.in_flight("a/1"), None);
}

#[tokio::test]
async fn a_person_s_build_starts_before_fifty_automatic_ones() {
    let rec = recorder(2);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = QueueConfig {
        concurrency: 1,
        max_auto: 1,
        ..Default::default()
    };
    let q = Queue::start(rec.clone(), cfg, tx);
    for i in 0..50 {
        q.submit(auto("auto", &i.to_string()));
    }
    q.submit(job("user", "1"));
    finished(&q, &mut rx, 51).await;
    let order = rec.order.lock().unwrap().clone();
    let pos = order.iter().position(|k| k == "user/1").unwrap();
    // the dispatcher may have taken one automatic build before the user's arrived
    assert!(pos <= 1, "user build started at {pos}: {order:?}");
}

#[tokio::test]
async fn automatic_builds_stay_within_their_limit() {
    let rec = recorder(30);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = QueueConfig {
        concurrency: 4,
        max_auto: 1,
        ..Default::default()
    };
    let q = Queue::start(rec.clone(), cfg, tx);
    for i in 0..3 {
        q.submit(auto("a", &i.to_string()));
    }
    q.submit(job("u", "1"));
    q.submit(job("u", "2"));
    tokio::time::sleep(Duration::from_millis(15)).await;
    // both user builds and exactly one automatic build run; two automatic wait
    assert_eq!(
        rec.order.lock().unwrap().len(),
        3,
        "{:?}",
        rec.order.lock().unwrap()
    );
    assert_eq!(q.depth(), 2);
    finished(&q, &mut rx, 5).await;
}

#[tokio::test]
async fn a_queued_job_is_replaced_by_the_newest() {
    let rec = recorder(20);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = QueueConfig {
        concurrency: 1,
        ..Default::default()
    };
    let q = Queue::start(rec.clone(), cfg, tx);
    q.submit(job("a", "busy"));
    while rec.order.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for i in 0..20 {
        let mut j = auto("a", "x");
        j.inputs.context = Some(format!("sha256:{i}"));
        q.submit(j);
    }
    let f = q.in_flight("a/x").unwrap();
    assert_eq!(f.inputs.context.as_deref(), Some("sha256:19"));
    assert!(!f.running);
    finished(&q, &mut rx, 2).await;
    // twenty triggers while it waited: one build
    let order = rec.order.lock().unwrap().clone();
    assert_eq!(order, vec!["a/busy", "a/x"]);
}

#[tokio::test]
async fn every_attempt_goes_to_one_log_and_a_failure_brings_its_tail() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recorder(1);
    rec.fail_times.lock().unwrap().insert("a/1".into(), 10);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = QueueConfig {
        max_attempts: 2,
        backoff: Duration::from_millis(1),
        logs: Some(crate::logs::LogStore {
            root: dir.path().to_path_buf(),
            retention: Default::default(),
            max_bytes: crate::logs::DEFAULT_MAX_BYTES,
        }),
        ..Default::default()
    };
    let q = Queue::start(rec.clone(), cfg, tx);
    q.submit(Job {
        number: 7,
        ..job("a", "1")
    });
    let tail = loop {
        if let Update::Finished { log_tail, .. } = rx.recv().await.unwrap() {
            break log_tail;
        }
    };
    let text = std::fs::read_to_string(dir.path().join("a/1/7.log")).unwrap();
    assert_eq!(text.matches("building a/1").count(), 2, "{text}");
    assert!(text.contains("attempt 1 failed, retrying"), "{text}");
    let last = text.lines().last().unwrap();
    assert!(
        last.contains("end of build 7: failed: registry: gave up after 2 attempts"),
        "{last}"
    );
    assert_eq!(tail.last().map(String::as_str), Some("    building a/1"));
}
