//! Offers: waiting builds matched to them (first fit, in queue order, with delay
//! scheduling for locality), the rest declined, and why builds still wait.
//! The arithmetic of one offer is [`crate::mesos::scheduler::offers`].

use std::time::Instant;

use tracing::{debug, info};

use super::{Core, tell};
use crate::mesos::proto::v1::scheduler::{Call, call};
use crate::mesos::proto::v1::{self, Offer};
use crate::mesos::scheduler::liveness::LaunchWatch;
use crate::mesos::scheduler::offers::{self, Avail};

impl Core {
    /// Matches waiting builds to offers (first fit, in queue order), launching as many
    /// as each offer holds and declining the rest.
    pub fn on_offers(&mut self, offers: Vec<Offer>, now: Instant) -> Vec<Call> {
        let mut calls = Vec::new();
        let mut declined = Vec::new();
        let (mut used, mut launched) = (0, 0);
        let settling = self.launch_after.is_some_and(|t| now < t);
        let mut largest: Option<(Avail, String)> = None;
        let mut passed = Vec::new();
        for offer in offers {
            if let Some(url) = crate::mesos::scheduler::crashed::agent_url(&offer) {
                self.agent_urls.insert(offer.agent_id.value.clone(), url);
            }
            let mut avail = Avail::of(&offer);
            let mut tasks = Vec::new();
            if !settling {
                let mut i = 0;
                while i < self.pending.len() && !avail.exhausted() {
                    let s = &self.pending[i].spec;
                    let need = (
                        s.cpus + self.cfg.executor_cpus,
                        s.mem_mib + self.cfg.executor_mem_mib,
                    );
                    if avail.fits(need.0, need.1) {
                        // delay scheduling: a better agent may offer soon
                        let Some(why) = self.locality.take(&s.task_id, &s.base_layers, &offer, now)
                        else {
                            i += 1;
                            continue;
                        };
                        if let Some(p) = self.pending.remove(i) {
                            let task = offers::task_info(
                                &self.cfg,
                                self.framework_id(),
                                &p.spec,
                                &offer,
                                &mut avail,
                            );
                            let agent_id = offer.agent_id.value.clone();
                            info!(build = %p.spec.key, task_id = %p.spec.task_id, host = %offer.hostname, "launching");
                            self.attach(
                                p.spec.task_id.clone(),
                                agent_id,
                                offer.hostname.clone(),
                                p.spec.key.clone(),
                                p.tx,
                                Some((LaunchWatch::new(now), why)),
                            );
                            tasks.push(task);
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            let left = avail.clone();
            if largest.as_ref().is_none_or(|(l, _)| left.bigger_than(l)) {
                largest = Some((left, offer.hostname.clone()));
            }
            let id = offer.id.clone();
            if tasks.is_empty() {
                match self.locality.refuse(now) {
                    Some(_) => passed.push(id),
                    None => declined.push(id),
                }
                continue;
            }
            used += 1;
            launched += tasks.len();
            let mut op = v1::offer::Operation {
                launch: Some(v1::offer::operation::Launch { task_infos: tasks }),
                ..Default::default()
            };
            op.set_type(v1::offer::operation::Type::Launch);
            let mut c = self.call(call::Type::Accept);
            c.accept = Some(call::Accept {
                offer_ids: vec![id],
                operations: vec![op],
                filters: Some(v1::Filters {
                    refuse_seconds: Some(
                        self.locality.refuse(now).unwrap_or(self.cfg.refuse_seconds),
                    ),
                }),
            });
            calls.push(c);
        }
        if let Some(refuse) = self.locality.end_batch(now).filter(|_| !passed.is_empty()) {
            calls.push(self.decline_call(passed, refuse));
        }
        // say why builds still wait when no offer could ever hold them
        if !settling && let Some((big, host)) = &largest {
            let (ec, em) = (self.cfg.executor_cpus, self.cfg.executor_mem_mib);
            for p in self.pending.iter_mut() {
                let (c, m) = (p.spec.cpus + ec, p.spec.mem_mib + em);
                let msg = if let Some(why) = self.locality.waiting(&p.spec.task_id) {
                    why
                } else if big.fits(c, m) {
                    "waiting for a Mesos offer".to_string()
                } else {
                    format!(
                        "no Mesos offer fits: the build needs {c} CPUs and {m} MiB (executor included); \
                         the largest offer had {} CPUs and {} MiB (on {host})",
                        big.cpus(),
                        big.mem()
                    )
                };
                tell(p, msg);
            }
        }
        self.cfg.metrics.offers(used, declined.len());
        self.cfg.metrics.tasks_launched(launched);
        if !declined.is_empty() {
            let refuse = if self.pending.is_empty() {
                // nothing waits: keep these away longer (suppress follows)
                self.cfg.refuse_seconds.max(60.0)
            } else {
                self.cfg.refuse_seconds
            };
            debug!(offers = declined.len(), "declining");
            self.declined = true;
            calls.push(self.decline_call(declined, refuse));
        }
        if self.pending.is_empty() && !self.suppressed {
            calls.push(self.offers_wanted_call());
        }
        calls
    }
}
