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
    /// The other holder's record as last seen, and when it last changed.
    observed: Mutex<Option<(String, Instant)>>,
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
            observed: Mutex::new(None),
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
        let mine = holder.as_deref() == Some(me.as_str());
        if !mine && let Some(h) = &holder {
            let record = format!("{h} {:?}", spec.renew_time.as_ref().map(|t| t.0));
            let held_for = Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(secs)).unwrap_or(1),
            );
            if !self.expired(record, held_for) {
                return Ok(Attempt::Taken(h.clone()));
            }
            info!(lease = %self.cfg.name, holder = %h, "the leader stopped renewing; taking over");
        }
        if !mine {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
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

    /// True when `record` has not changed for `held_for` as seen from here.
    fn expired(&self, record: String, held_for: Duration) -> bool {
        let mut seen = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        match seen.as_ref() {
            Some((r, since)) if *r == record => since.elapsed() >= held_for,
            _ => {
                *seen = Some((record, Instant::now()));
                false
            }
        }
    }
}

fn kube_err(e: kube::Error) -> Error {
    Error::kube("the leader lease", e)
}
