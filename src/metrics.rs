//! Prometheus metrics: one [`Metrics`] made where the process starts, handed to
//! what updates it (the queue, the Mesos framework, the reconciler through the
//! queue) and served on `/metrics` by [`crate::health`]. Tests make their own, so
//! their counts are exact.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Build durations, 1 s to 1 h: a cached rebuild takes seconds, a cold one minutes.
const DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Cheap to clone; every clone counts into the same registry.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Families>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

struct Families {
    registry: Registry,
    builds: Family<ResultLabel, Counter>,
    build_duration: Family<ResultLabel, Histogram, fn() -> Histogram>,
    queue_depth: Gauge,
    builds_running: Gauge,
    reconcile_errors: Family<ReasonLabel, Counter>,
    mesos_offers: Family<OutcomeLabel, Counter>,
    mesos_tasks_launched: Counter,
    mesos_subscribed: Gauge,
}

/// `"succeeded"`, or the error's [`crate::Error::metric_label`].
fn result_label<T>(result: &crate::Result<T>) -> String {
    match result {
        Ok(_) => "succeeded".into(),
        Err(e) => e.metric_label().into(),
    }
}

impl Default for Families {
    fn default() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("slipway"),
            builds: Family::default(),
            build_duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
            queue_depth: Gauge::default(),
            builds_running: Gauge::default(),
            reconcile_errors: Family::default(),
            mesos_offers: Family::default(),
            mesos_tasks_launched: Counter::default(),
            mesos_subscribed: Gauge::default(),
        };
        // both outcomes show from the start, so rate() works before the first offer
        for outcome in ["used", "declined"] {
            let _ = m.mesos_offers.get_or_create(&OutcomeLabel { outcome });
        }
        let registry = &mut m.registry;
        // counters get `_total` and units their suffix from the encoder
        registry.register(
            "builds",
            "Builds finished, by result (succeeded or the error's reason)",
            m.builds.clone(),
        );
        registry.register_with_unit(
            "build_duration",
            "Time from a build's start to its end, retries included",
            Unit::Seconds,
            m.build_duration.clone(),
        );
        registry.register(
            "queue_depth",
            "Builds queued, not yet running",
            m.queue_depth.clone(),
        );
        registry.register("builds_running", "Builds running", m.builds_running.clone());
        registry.register(
            "reconcile_errors",
            "Reconciliation errors, by reason",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "mesos_offers",
            "Mesos offers received, by outcome (used or declined)",
            m.mesos_offers.clone(),
        );
        registry.register(
            "mesos_tasks_launched",
            "Mesos tasks launched",
            m.mesos_tasks_launched.clone(),
        );
        registry.register(
            "mesos_subscribed",
            "1 when subscribed to a Mesos master, else 0",
            m.mesos_subscribed.clone(),
        );
        m
    }
}

impl Metrics {
    /// A new registry, every series at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A build job ended (after all its retries) with `result`, `took` after it started.
    pub fn build_finished<T>(&self, result: &crate::Result<T>, took: Duration) {
        let label = ResultLabel {
            result: result_label(result),
        };
        self.0.builds.get_or_create(&label).inc();
        self.0
            .build_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// The build queue now holds `depth` builds waiting and `running` running.
    pub fn queue(&self, depth: usize, running: usize) {
        self.0.queue_depth.set(depth.try_into().unwrap_or(i64::MAX));
        self.0
            .builds_running
            .set(running.try_into().unwrap_or(i64::MAX));
    }

    /// A reconciliation failed; `label` is the error's [`crate::Error::metric_label`].
    pub fn reconcile_error(&self, label: &str) {
        self.0
            .reconcile_errors
            .get_or_create(&ReasonLabel {
                reason: label.to_string(),
            })
            .inc();
    }

    /// A batch of Mesos offers was handled: `used` accepted, `declined` declined.
    pub fn offers(&self, used: usize, declined: usize) {
        for (outcome, n) in [("used", used), ("declined", declined)] {
            if n > 0 {
                self.0
                    .mesos_offers
                    .get_or_create(&OutcomeLabel { outcome })
                    .inc_by(n as u64);
            }
        }
    }

    /// `n` Mesos tasks were launched.
    pub fn tasks_launched(&self, n: usize) {
        self.0.mesos_tasks_launched.inc_by(n as u64);
    }

    /// The Mesos framework subscribed to a master (`true`) or lost it (`false`).
    pub fn subscribed(&self, yes: bool) {
        self.0.mesos_subscribed.set(i64::from(yes));
    }

    /// Everything, in the OpenMetrics text format (ending with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // writing into a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}

#[cfg(test)]
impl Metrics {
    /// The value of the sample `series` (name and labels exactly as encoded, e.g.
    /// `slipway_builds_total{result="succeeded"}`), 0 when absent.
    pub(crate) fn sample(&self, series: &str) -> f64 {
        self.encode()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.split(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// Whether `text` has the line `line` exactly.
    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn every_family_is_encoded_with_its_values() {
        let m = Metrics::new();
        m.build_finished(&Ok(()), Duration::from_secs(3));
        m.build_finished::<()>(
            &Err(Error::BuildFailed("step 1/1".into())),
            Duration::from_secs(90),
        );
        m.build_finished::<()>(
            &Err(Error::Cancelled("deleted".into())),
            Duration::from_secs(2),
        );
        m.queue(3, 2);
        m.reconcile_error("KubeError");
        m.reconcile_error("KubeError");
        m.offers(2, 5);
        m.offers(1, 0);
        m.tasks_launched(4);
        m.subscribed(true);
        let text = m.encode();
        for line in [
            "# TYPE slipway_builds counter",
            r#"slipway_builds_total{result="succeeded"} 1"#,
            r#"slipway_builds_total{result="BuildFailed"} 1"#,
            r#"slipway_builds_total{result="Cancelled"} 1"#,
            "# TYPE slipway_build_duration_seconds histogram",
            "# UNIT slipway_build_duration_seconds seconds",
            r#"slipway_build_duration_seconds_bucket{le="60.0",result="BuildFailed"} 0"#,
            r#"slipway_build_duration_seconds_bucket{le="120.0",result="BuildFailed"} 1"#,
            r#"slipway_build_duration_seconds_bucket{le="5.0",result="succeeded"} 1"#,
            r#"slipway_build_duration_seconds_sum{result="BuildFailed"} 90.0"#,
            "# TYPE slipway_queue_depth gauge",
            "slipway_queue_depth 3",
            "# TYPE slipway_builds_running gauge",
            "slipway_builds_running 2",
            "# TYPE slipway_reconcile_errors counter",
            r#"slipway_reconcile_errors_total{reason="KubeError"} 2"#,
            "# TYPE slipway_mesos_offers counter",
            r#"slipway_mesos_offers_total{outcome="used"} 3"#,
            r#"slipway_mesos_offers_total{outcome="declined"} 5"#,
            "# TYPE slipway_mesos_tasks_launched counter",
            "slipway_mesos_tasks_launched_total 4",
            "# TYPE slipway_mesos_subscribed gauge",
            "slipway_mesos_subscribed 1",
        ] {
            assert!(has(&text, line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn gauges_take_the_last_value_and_offers_show_before_the_first() {
        let m = Metrics::new();
        let text = m.encode();
        assert!(
            has(&text, r#"slipway_mesos_offers_total{outcome="used"} 0"#),
            "{text}"
        );
        assert!(has(&text, "slipway_mesos_subscribed 0"), "{text}");
        m.queue(3, 2);
        m.queue(0, 1);
        m.subscribed(true);
        m.subscribed(false);
        let text = m.encode();
        assert!(has(&text, "slipway_queue_depth 0"), "{text}");
        assert!(has(&text, "slipway_builds_running 1"), "{text}");
        assert!(has(&text, "slipway_mesos_subscribed 0"), "{text}");
    }

    #[test]
    fn clones_count_together_and_separate_metrics_apart() {
        let series = r#"slipway_reconcile_errors_total{reason="KubeError"}"#;
        let (a, b) = (Metrics::new(), Metrics::new());
        a.reconcile_error("KubeError");
        a.clone().reconcile_error("KubeError");
        b.reconcile_error("KubeError");
        assert_eq!(a.sample(series), 2.0);
        assert_eq!(b.sample(series), 1.0);
    }
}
