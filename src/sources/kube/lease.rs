//! Leader election on a `coordination.k8s.io` Lease, so that of several replicas
//! only one watches and schedules builds. Expiry is judged by how long this replica
//! has seen the record unchanged (as client-go does), not by comparing clocks.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease as KubeLease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tracing::{info, warn};

use crate::{Error, Kind, Result};

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica (the pod name).
    pub identity: String,
    /// A holder that has not renewed for this long has lost the lease.
    pub duration: Duration,
}

impl LeaseConfig {
    /// How often the holder renews, and others look.
    fn retry(&self) -> Duration {
        self.duration / 5
    }

    /// The holder steps down when it could not renew for this long, before others
    /// may take over (after `duration`).
    fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }
}

pub struct Lease {
    api: Api<KubeLease>,
    cfg: LeaseConfig,
    observer: Mutex<Observer>,
}

enum Attempt {
    Held,
    /// Someone else holds it.
    Taken(String),
}

impl Lease {
    pub fn new(client: Client, cfg: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observer: Mutex::new(Observer::default()),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) -> Result<()> {
        let mut told = String::new();
        loop {
            match self.try_acquire().await {
                Ok(Attempt::Held) => {
                    info!(lease = %self.cfg.name, identity = %self.cfg.identity, "became the leader");
                    return Ok(());
                }
                Ok(Attempt::Taken(holder)) => {
                    if holder != told {
                        info!(lease = %self.cfg.name, %holder, "another replica leads; standing by");
                        told = holder;
                    }
                }
                Err(e) => warn!(lease = %self.cfg.name, "cannot read the lease: {e}"),
            }
            tokio::time::sleep(self.cfg.retry()).await;
        }
    }

    /// Renews the lease for as long as it can; returns why leadership was lost.
    pub async fn hold(&self) -> Error {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.cfg.retry()).await;
            match self.try_acquire().await {
                Ok(Attempt::Held) => renewed = Instant::now(),
                Ok(Attempt::Taken(holder)) => {
                    return Error::new(
                        Kind::Kube,
                        format!(
                            "lost the lease {}/{} to {holder}",
                            self.cfg.namespace, self.cfg.name
                        ),
                    );
                }
                Err(e) if renewed.elapsed() >= self.cfg.renew_deadline() => {
                    return Error::new(
                        Kind::Kube,
                        format!(
                            "could not renew the lease {}/{} for {:?}: {e}",
                            self.cfg.namespace,
                            self.cfg.name,
                            renewed.elapsed()
                        ),
                    );
                }
                Err(e) => warn!(lease = %self.cfg.name, "renewing the lease failed: {e}"),
            }
        }
    }

    /// Gives the lease up at shutdown so a standby takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(&self.cfg.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.cfg.name, "released the lease"),
            Err(e) => warn!(lease = %self.cfg.name, "cannot release the lease: {e}"),
        }
    }

    async fn try_acquire(&self) -> Result<Attempt> {
        let now = MicroTime(Timestamp::now());
        let secs = i32::try_from(self.cfg.duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let me = self.cfg.identity.clone();
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await.map_err(kube_err)? else {
            let lease = KubeLease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Taken("?".into())),
                Err(e) => Err(kube_err(e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let verdict = self
            .observer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .judge(spec, &me, secs, Instant::now());
        match verdict {
            Verdict::Taken(h) => return Ok(Attempt::Taken(h)),
            Verdict::Renew => {}
            Verdict::TakeOver(was) => {
                if let Some(h) = was {
                    info!(lease = %self.cfg.name, holder = %h, "the leader stopped renewing; taking over");
                }
                spec.acquire_time = Some(now.clone());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        spec.holder_identity = Some(me);
        spec.lease_duration_seconds = Some(secs);
        spec.renew_time = Some(now);
        // the resourceVersion in `lease` makes a concurrent taker fail with 409
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Taken(
                holder.unwrap_or_else(|| "another replica".into()),
            )),
            Err(e) => Err(kube_err(e)),
        }
    }
}

/// What to do with the lease as read.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// This replica holds it: renew.
    Renew,
    /// Another replica holds it and has renewed within its duration.
    Taken(String),
    /// Free (never held, released) or its holder (named) stopped renewing: take it.
    TakeOver(Option<String>),
}

/// Judges expiry by how long this replica has seen the holder's record unchanged,
/// so no clocks are compared. Pure but for the `now` it is given.
#[derive(Default)]
struct Observer {
    /// The other holder's record as last seen, and when it last changed.
    seen: Option<(String, Instant)>,
}

impl Observer {
    fn judge(&mut self, spec: &LeaseSpec, me: &str, default_secs: i32, now: Instant) -> Verdict {
        let Some(h) = spec.holder_identity.as_deref().filter(|h| !h.is_empty()) else {
            return Verdict::TakeOver(None);
        };
        if h == me {
            return Verdict::Renew;
        }
        let record = format!("{h} {:?}", spec.renew_time.as_ref().map(|t| t.0));
        let held_for = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(default_secs)).unwrap_or(1),
        );
        match &self.seen {
            Some((r, since)) if *r == record => {
                if now.duration_since(*since) >= held_for {
                    Verdict::TakeOver(Some(h.to_string()))
                } else {
                    Verdict::Taken(h.to_string())
                }
            }
            _ => {
                self.seen = Some((record, now));
                Verdict::Taken(h.to_string())
            }
        }
    }
}

fn kube_err(e: kube::Error) -> Error {
    Error::kube("the leader lease", e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed_secs: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed_secs).unwrap())),
            lease_duration_seconds: Some(duration),
            ..Default::default()
        }
    }

    #[test]
    fn a_holder_that_keeps_renewing_keeps_the_lease() {
        let mut o = Observer::default();
        let t0 = Instant::now();
        for i in 0..10u64 {
            // renewed every 5 s, looked at every 5 s, for far longer than 15 s
            let now = t0 + Duration::from_secs(5 * i);
            let v = o.judge(&spec(Some("a"), 5 * i as i64, 15), "b", 15, now);
            assert_eq!(v, Verdict::Taken("a".into()), "at {i}");
        }
    }

    #[test]
    fn a_holder_that_stops_renewing_is_taken_over_after_its_duration_as_seen_here() {
        let mut o = Observer::default();
        let t0 = Instant::now();
        // its renew time is long past by the wall clock: only our own clock counts
        let stale = spec(Some("a"), 0, 15);
        assert_eq!(o.judge(&stale, "b", 15, t0), Verdict::Taken("a".into()));
        let almost = t0 + Duration::from_secs(14);
        assert_eq!(o.judge(&stale, "b", 15, almost), Verdict::Taken("a".into()));
        let after = t0 + Duration::from_secs(15);
        assert_eq!(
            o.judge(&stale, "b", 15, after),
            Verdict::TakeOver(Some("a".into()))
        );
    }

    #[test]
    fn a_new_holder_starts_the_clock_again() {
        let mut o = Observer::default();
        let t0 = Instant::now();
        o.judge(&spec(Some("a"), 0, 15), "b", 15, t0);
        let later = t0 + Duration::from_secs(20);
        let v = o.judge(&spec(Some("c"), 0, 15), "b", 15, later);
        assert_eq!(v, Verdict::Taken("c".into()));
    }

    #[test]
    fn our_own_lease_is_renewed_and_a_released_one_taken() {
        let mut o = Observer::default();
        let now = Instant::now();
        assert_eq!(
            o.judge(&spec(Some("b"), 0, 15), "b", 15, now),
            Verdict::Renew
        );
        assert_eq!(
            o.judge(&spec(None, 0, 1), "b", 15, now),
            Verdict::TakeOver(None)
        );
        assert_eq!(
            o.judge(&spec(Some(""), 0, 1), "b", 15, now),
            Verdict::TakeOver(None)
        );
    }
}
