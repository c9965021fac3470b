//! Cache-aware placement by delay scheduling (Zaharia et al., EuroSys 2010): a build
//! goes to the agent whose Docker daemon already holds most of its base layers, and
//! waits at most `locality_wait` for that agent's offer before taking any that
//! fits. What each agent holds comes with its executors' terminal updates. Pure:
//! the [`super::Core`] feeds it offers and reports, and it answers with decisions.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::mesos::proto::v1::Offer;
use crate::mesos::task::Holdings;

/// What an agent's daemon held at its last report.
struct Held {
    host: String,
    layers: HashSet<String>,
}

/// A build's answer for one fitting offer.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Launch here; the reason, when the build has base layers to place by.
    Take(Option<String>),
    /// Leave this offer: a better agent may offer before `until`. `why` is for the
    /// build's status.
    Wait { until: Instant, why: String },
}

#[derive(Default)]
pub struct Locality {
    wait: Duration,
    agents: HashMap<String, Held>,
    /// When each waiting build first passed up an offer, and what it waits for, by
    /// task ID.
    since: HashMap<String, (Instant, String)>,
    /// The earliest wait that passed up an offer of the current batch.
    earliest: Option<Instant>,
}

impl Locality {
    pub fn new(wait: Duration) -> Self {
        Self {
            wait,
            ..Default::default()
        }
    }

    /// An executor on `agent_id` reported what its daemon holds (replacing what it
    /// said before: images get removed too). An empty report says nothing new.
    pub fn record(&mut self, agent_id: &str, host: &str, holds: &Holdings) {
        if holds.is_empty() {
            return;
        }
        self.agents.insert(
            agent_id.to_string(),
            Held {
                host: host.to_string(),
                layers: holds.layers.iter().cloned().collect(),
            },
        );
    }

    /// How many of `layers` the agent holds.
    pub fn score(&self, agent_id: &str, layers: &[String]) -> usize {
        self.agents.get(agent_id).map_or(0, |h| {
            layers.iter().filter(|l| h.layers.contains(*l)).count()
        })
    }

    /// The known agent holding most of `layers` (at least one), and how many.
    fn best(&self, layers: &[String]) -> Option<(&str, &Held, usize)> {
        self.agents
            .iter()
            .map(|(id, h)| (id.as_str(), h, self.score(id, layers)))
            .filter(|(_, _, s)| *s > 0)
            // ties broken by ID, so the choice does not depend on hash order
            .max_by(|a, b| a.2.cmp(&b.2).then_with(|| b.0.cmp(a.0)))
    }

    /// Whether the build `task_id` on base `layers` takes a fitting offer of
    /// `agent_id` (`host`) at `now`.
    pub fn decide(
        &mut self,
        task_id: &str,
        layers: &[String],
        agent_id: &str,
        host: &str,
        now: Instant,
    ) -> Decision {
        let n = layers.len();
        let here = self.score(agent_id, layers);
        let holds = |h: &str, s: usize| format!("{h}: holds {s}/{n} base layers");
        let best = self.best(layers).map(|(_, held, s)| (held.host.clone(), s));
        let Some((best_host, best_score)) = best.filter(|(_, s)| *s > here) else {
            // nothing known beats this offer (or nothing is known at all)
            self.since.remove(task_id);
            return Decision::Take((n > 0).then(|| format!("placed on {}", holds(host, here))));
        };
        let why = format!(
            "waiting up to {:?} for an offer of {} (locality)",
            self.wait,
            holds(&best_host, best_score)
        );
        let first = self
            .since
            .entry(task_id.to_string())
            .or_insert((now, why))
            .0;
        let until = first + self.wait;
        if now >= until {
            self.since.remove(task_id);
            return Decision::Take(Some(format!(
                "placed on {} ({best_host}, holding {best_score}, made no fitting offer within {:?})",
                holds(host, here),
                self.wait
            )));
        }
        Decision::Wait {
            until,
            why: self.since[task_id].1.clone(),
        }
    }

    /// [`Self::decide`] for an offer, as the offer loop uses it: the reason to launch
    /// there, or None to pass the offer up (remembered for [`Self::refuse`]).
    pub fn take(
        &mut self,
        task_id: &str,
        layers: &[String],
        offer: &Offer,
        now: Instant,
    ) -> Option<Option<String>> {
        match self.decide(task_id, layers, &offer.agent_id.value, &offer.hostname, now) {
            Decision::Take(why) => Some(why),
            Decision::Wait { until, .. } => {
                self.earliest = Some(self.earliest.map_or(until, |e| e.min(until)));
                None
            }
        }
    }

    /// The filter for offers of this batch when one was passed up: short, so they
    /// come back when the earliest wait is over (never below 0.1 s, so the master is
    /// not asked again at once). None: filter as usual.
    pub fn refuse(&self, now: Instant) -> Option<f64> {
        self.earliest
            .map(|until| until.saturating_duration_since(now).as_secs_f64().max(0.1))
    }

    /// The batch of offers is done: its [`Self::refuse`], and forget it.
    pub fn end_batch(&mut self, now: Instant) -> Option<f64> {
        let r = self.refuse(now);
        self.earliest = None;
        r
    }

    /// What the build `task_id` waits for, while it passes up offers.
    pub fn waiting(&self, task_id: &str) -> Option<String> {
        self.since.get(task_id).map(|(_, why)| why.clone())
    }

    /// The build is gone (launched elsewhere, cancelled): forget its wait.
    pub fn forget(&mut self, task_id: &str) {
        self.since.remove(task_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| format!("sha256:{n}")).collect()
    }

    fn holds(names: &[&str]) -> Holdings {
        Holdings {
            images: Vec::new(),
            layers: layers(names),
        }
    }

    fn two_agents() -> Locality {
        let mut l = Locality::new(Duration::from_secs(3));
        l.record("A", "a.test", &holds(&["1", "2", "3", "4", "5", "x"]));
        l.record("B", "b.test", &holds(&["1", "y"]));
        l
    }

    const BASE: &[&str] = &["1", "2", "3", "4", "5", "6"];

    #[test]
    fn scores_count_the_base_layers_an_agent_holds() {
        let l = two_agents();
        assert_eq!(l.score("A", &layers(BASE)), 5);
        assert_eq!(l.score("B", &layers(BASE)), 1);
        assert_eq!(l.score("C", &layers(BASE)), 0, "an agent never heard of");
        assert_eq!(l.score("A", &[]), 0);
    }

    #[test]
    fn the_best_agent_takes_at_once_and_says_why() {
        let mut l = two_agents();
        let d = l.decide("t", &layers(BASE), "A", "a.test", Instant::now());
        assert_eq!(
            d,
            Decision::Take(Some("placed on a.test: holds 5/6 base layers".into()))
        );
    }

    #[test]
    fn a_worse_offer_waits_for_the_best_agent_until_the_wait_runs_out() {
        let mut l = two_agents();
        let t0 = Instant::now();
        let Decision::Wait { until, why } = l.decide("t", &layers(BASE), "B", "b.test", t0) else {
            panic!("took the worse offer at once")
        };
        assert_eq!(until, t0 + Duration::from_secs(3));
        assert!(why.contains("a.test: holds 5/6 base layers"), "{why}");
        // later offers of B within the wait count from the first one passed up
        let later = l.decide(
            "t",
            &layers(BASE),
            "B",
            "b.test",
            t0 + Duration::from_secs(2),
        );
        assert!(matches!(later, Decision::Wait { until: u, .. } if u == until));
        let Decision::Take(Some(why)) = l.decide(
            "t",
            &layers(BASE),
            "B",
            "b.test",
            t0 + Duration::from_secs(3),
        ) else {
            panic!("still waiting after the locality wait")
        };
        assert!(
            why.starts_with("placed on b.test: holds 1/6 base layers"),
            "{why}"
        );
        assert!(why.contains("a.test"), "{why}");
        // the next build of the same task waits afresh
        let again = l.decide(
            "t",
            &layers(BASE),
            "B",
            "b.test",
            t0 + Duration::from_secs(10),
        );
        assert!(matches!(again, Decision::Wait { .. }));
    }

    #[test]
    fn with_no_inventory_or_no_base_layers_any_offer_is_taken() {
        let mut empty = Locality::new(Duration::from_secs(3));
        let d = empty.decide("t", &layers(BASE), "B", "b.test", Instant::now());
        assert_eq!(
            d,
            Decision::Take(Some("placed on b.test: holds 0/6 base layers".into()))
        );
        let mut l = two_agents();
        assert_eq!(
            l.decide("t", &[], "B", "b.test", Instant::now()),
            Decision::Take(None),
            "FROM scratch, or a base not looked up: nothing to place by"
        );
        // layers nobody holds: no agent is better than another
        let d = l.decide("t", &layers(&["9"]), "B", "b.test", Instant::now());
        assert!(matches!(d, Decision::Take(_)), "{d:?}");
    }

    #[test]
    fn a_zero_wait_never_holds_a_build_back() {
        let mut l = two_agents();
        l.wait = Duration::ZERO;
        let d = l.decide("t", &layers(BASE), "B", "b.test", Instant::now());
        assert!(matches!(d, Decision::Take(Some(_))), "{d:?}");
    }

    #[test]
    fn a_new_report_replaces_the_old_and_an_empty_one_is_ignored() {
        let mut l = two_agents();
        l.record("A", "a.test", &holds(&["1"]));
        assert_eq!(l.score("A", &layers(BASE)), 1, "images removed since");
        l.record("A", "a.test", &Holdings::default());
        assert_eq!(l.score("A", &layers(BASE)), 1);
    }
}
