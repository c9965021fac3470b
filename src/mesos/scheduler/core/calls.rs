//! The calls the Core makes on the master, built from its state.

use super::Core;
use crate::mesos::proto::v1::scheduler::{Call, call};
use crate::mesos::proto::v1::{self, AgentId, FrameworkId, FrameworkInfo, TaskId};

impl Core {
    pub(super) fn call(&self, t: call::Type) -> Call {
        let mut c = Call {
            framework_id: self.framework_id.clone().map(|value| FrameworkId { value }),
            ..Default::default()
        };
        c.set_type(t);
        c
    }

    /// SUBSCRIBE, re-attaching to the persisted framework ID when there is one.
    pub fn subscribe_call(&self) -> Call {
        use v1::framework_info::{Capability, capability::Type as Cap};
        let capabilities = [Cap::MultiRole, Cap::PartitionAware, Cap::TaskKillingState]
            .into_iter()
            .map(|t| {
                let mut c = Capability::default();
                c.set_type(t);
                c
            })
            .collect();
        let info = FrameworkInfo {
            user: self.cfg.user.clone(),
            name: self.cfg.name.clone(),
            id: self.framework_id.clone().map(|value| FrameworkId { value }),
            failover_timeout: Some(self.cfg.failover_timeout.as_secs_f64()),
            checkpoint: Some(true),
            roles: vec![self.cfg.role.clone()],
            principal: self.cfg.principal.clone(),
            capabilities,
            ..Default::default()
        };
        let mut c = self.call(call::Type::Subscribe);
        c.subscribe = Some(call::Subscribe {
            framework_info: info,
            ..Default::default()
        });
        c
    }

    pub(super) fn reconcile_call(&self, tasks: Vec<(String, Option<String>)>) -> Call {
        let mut c = self.call(call::Type::Reconcile);
        c.reconcile = Some(call::Reconcile {
            tasks: tasks
                .into_iter()
                .map(|(t, a)| call::reconcile::Task {
                    task_id: TaskId { value: t },
                    agent_id: a.map(|value| AgentId { value }),
                })
                .collect(),
        });
        c
    }

    /// SUPPRESS when nothing waits for an offer, REVIVE when something does.
    pub(super) fn offers_wanted_call(&mut self) -> Call {
        let want = !self.pending.is_empty();
        self.suppressed = !want;
        self.declined = false;
        let mut c = if want {
            self.call(call::Type::Revive)
        } else {
            self.call(call::Type::Suppress)
        };
        let roles = vec![self.cfg.role.clone()];
        if want {
            c.revive = Some(call::Revive { roles });
        } else {
            c.suppress = Some(call::Suppress { roles });
        }
        c
    }

    pub(super) fn ack_now(&self, ack: Option<(String, String, Vec<u8>)>) -> Vec<Call> {
        let Some((task_id, agent_id, uuid)) = ack else {
            return Vec::new();
        };
        let mut c = self.call(call::Type::Acknowledge);
        c.acknowledge = Some(call::Acknowledge {
            agent_id: AgentId { value: agent_id },
            task_id: TaskId { value: task_id },
            uuid,
        });
        vec![c]
    }

    pub(super) fn kill_call(&self, task_id: String, agent_id: Option<String>) -> Call {
        let mut c = self.call(call::Type::Kill);
        c.kill = Some(call::Kill {
            task_id: TaskId { value: task_id },
            agent_id: agent_id.map(|value| AgentId { value }),
            kill_policy: None,
        });
        c
    }
}

impl Core {
    /// DECLINE of `offers`, kept away for `refuse_seconds`.
    pub(super) fn decline_call(&self, offers: Vec<v1::OfferId>, refuse_seconds: f64) -> Call {
        let mut c = self.call(call::Type::Decline);
        c.decline = Some(call::Decline {
            offer_ids: offers,
            filters: Some(v1::Filters {
                refuse_seconds: Some(refuse_seconds),
            }),
        });
        c
    }
}
