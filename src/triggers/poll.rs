//! What the interval pollers (`url` sources, external base images) share: a pure
//! schedule that says which targets to look at now and whether what was seen is news,
//! and the loop that drives it against the reconciler's [`Targets`].

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Observation, Targets};

/// Targets looked at at once: enough that a slow one does not hold up the rest,
/// few enough not to flood one server.
const CONCURRENCY: usize = 4;

/// Per target: when to look next, the value last reported and the error last logged.
/// Free of I/O and of the clock (the caller says what time it is).
#[derive(Debug)]
pub struct Schedule {
    every: Duration,
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    due: Instant,
    value: Option<String>,
    error: Option<String>,
}

/// What one look means.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// The first value seen, or a new one: report it.
    Report(String),
    /// Nothing new.
    Same,
    /// The look failed; `warn` the first time this error is seen in a row.
    Failed { warn: bool },
}

impl Schedule {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            entries: BTreeMap::new(),
        }
    }

    /// Watches exactly `wanted` from now on: a new target is due at once, a target no
    /// longer wanted is forgotten (and reported anew should it come back).
    pub fn sync<'a>(&mut self, wanted: impl IntoIterator<Item = &'a String>, now: Instant) {
        let mut kept = BTreeMap::new();
        for key in wanted {
            let entry = self.entries.remove(key).unwrap_or(Entry {
                due: now,
                value: None,
                error: None,
            });
            kept.insert(key.clone(), entry);
        }
        self.entries = kept;
    }

    /// The targets to look at now, each once; each is due again an interval later.
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let every = self.every;
        self.entries
            .iter_mut()
            .filter(|(_, e)| e.due <= now)
            .map(|(k, e)| {
                // on the interval's grid, so late wake-ups do not add up; a poller far
                // behind starts a new grid rather than catch up in a burst
                e.due += every;
                if e.due <= now {
                    e.due = now + every;
                }
                k.clone()
            })
            .collect()
    }

    /// When the next target is due, if any is watched.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.due).min()
    }

    /// Records a look at `key`: a value, or why there is none.
    pub fn record(&mut self, key: &str, seen: Result<String, String>) -> Seen {
        // forgotten while it was being looked at: nobody wants it any more
        let Some(e) = self.entries.get_mut(key) else {
            return Seen::Same;
        };
        match seen {
            Ok(v) => {
                e.error = None;
                if e.value.as_ref() == Some(&v) {
                    Seen::Same
                } else {
                    e.value = Some(v.clone());
                    Seen::Report(v)
                }
            }
            Err(msg) => {
                let warn = e.error.as_ref() != Some(&msg);
                e.error = Some(msg);
                Seen::Failed { warn }
            }
        }
    }
}

/// One kind of polled target.
pub(crate) trait Probe: Send + Sync + 'static {
    /// What a look at one target needs besides its key (credentials, say).
    type Arg: Clone + Send + 'static;
    /// `url source`, `base image`: for logs.
    const WHAT: &'static str;
    /// The targets to watch now.
    fn wanted(&self, targets: &Targets) -> BTreeMap<String, Self::Arg>;
    /// The target's current value, or a message (without secrets) saying why not.
    fn look(
        &self,
        key: &str,
        arg: Self::Arg,
    ) -> impl Future<Output = Result<String, String>> + Send;
    fn observation(&self, key: String, value: String) -> Observation;
    /// The key as logs may show it.
    fn shown(&self, key: &str) -> String {
        key.to_string()
    }
}

/// Looks at each target every `every` (zero: never) until the reconciler goes away,
/// sending an observation when a value is first seen and when it changes.
pub(crate) async fn run<P: Probe>(
    probe: P,
    mut targets: watch::Receiver<Targets>,
    every: Duration,
    out: mpsc::Sender<Observation>,
) {
    if every.is_zero() {
        return;
    }
    let mut schedule = Schedule::new(every);
    loop {
        let wanted = probe.wanted(&targets.borrow_and_update());
        let now = Instant::now();
        schedule.sync(wanted.keys(), now);
        let due = schedule.take_due(now);
        let looks = due.into_iter().map(|key| {
            let arg = wanted[&key].clone();
            let probe = &probe;
            async move {
                let seen = probe.look(&key, arg).await;
                (key, seen)
            }
        });
        let mut looks = futures::stream::iter(looks).buffer_unordered(CONCURRENCY);
        while let Some((key, seen)) = looks.next().await {
            match schedule.record(&key, seen.clone()) {
                Seen::Report(value) => {
                    info!(what = P::WHAT, target = %probe.shown(&key), %value, "new version");
                    if out.send(probe.observation(key, value)).await.is_err() {
                        return;
                    }
                }
                Seen::Failed { warn: true } => {
                    let error = seen.err().unwrap_or_default();
                    warn!(what = P::WHAT, target = %probe.shown(&key), %error, "cannot look up; trying again next interval");
                }
                Seen::Same | Seen::Failed { warn: false } => {}
            }
        }
        drop(looks);
        let sleep = async {
            match schedule.next_due() {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            changed = targets.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("r/base-{i}:1")).collect()
    }

    #[test]
    fn each_target_is_due_once_per_interval_however_often_targets_change() {
        let every = Duration::from_secs(600);
        let t0 = Instant::now();
        let mut s = Schedule::new(every);
        let bases = keys(10);
        // 1,000 resources arriving one by one, on 10 bases
        for i in 0..1000 {
            s.sync(&bases[..=i.min(9)], t0);
        }
        assert_eq!(s.take_due(t0).len(), 10);
        for i in 0..1000 {
            s.sync(&bases, t0 + Duration::from_secs(i % 599));
            assert!(s.take_due(t0 + Duration::from_secs(i % 599)).is_empty());
        }
        assert_eq!(s.next_due(), Some(t0 + every));
        // woken late, the next look is still on the interval's grid
        let late = t0 + every + Duration::from_secs(5);
        assert_eq!(s.take_due(late), bases);
        assert_eq!(s.next_due(), Some(t0 + every * 2));
        // far behind: a new grid, not a burst of looks
        let far = t0 + every * 5;
        assert_eq!(s.take_due(far), bases);
        assert_eq!(s.next_due(), Some(far + every));
    }

    #[test]
    fn a_target_is_reported_first_and_on_change_and_an_error_warned_once() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Duration::from_secs(1));
        let k = "r/a:1".to_string();
        s.sync([&k], t0);
        assert_eq!(s.record(&k, Ok("d1".into())), Seen::Report("d1".into()));
        assert_eq!(s.record(&k, Ok("d1".into())), Seen::Same);
        assert_eq!(
            s.record(&k, Err("down".into())),
            Seen::Failed { warn: true }
        );
        assert_eq!(
            s.record(&k, Err("down".into())),
            Seen::Failed { warn: false }
        );
        assert_eq!(s.record(&k, Err("401".into())), Seen::Failed { warn: true });
        // back, unchanged: nothing to report
        assert_eq!(s.record(&k, Ok("d1".into())), Seen::Same);
        assert_eq!(
            s.record(&k, Err("down".into())),
            Seen::Failed { warn: true }
        );
        assert_eq!(s.record(&k, Ok("d2".into())), Seen::Report("d2".into()));
        // gone, then back: reported anew
        s.sync([], t0);
        assert_eq!(s.record(&k, Ok("d2".into())), Seen::Same);
        s.sync([&k], t0);
        assert_eq!(s.take_due(t0), vec![k.clone()]);
        assert_eq!(s.record(&k, Ok("d2".into())), Seen::Report("d2".into()));
    }
}
