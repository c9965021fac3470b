//! Is the master still there, and did each launch get an answer? The liveness
//! checks Marathon and Aurora make, as pure decisions (the connection loop keeps the
//! clock).

use std::time::{Duration, Instant};

/// Heartbeats missed before the subscription counts as dead, even while TCP says
/// the connection is open (a half-open stream, a stuck proxy).
pub const MISSED_HEARTBEATS: u32 = 5;

/// How long after SUBSCRIBED, or after the latest event, silence means the master
/// is gone and slipway subscribes again.
pub fn heartbeat_deadline(interval: Duration) -> Duration {
    interval * MISSED_HEARTBEATS
}

/// What to do about a launch that has had no status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchCheck {
    Wait,
    /// Ask the master about this task (explicit reconciliation).
    Reconcile,
    /// No answer after reconciliation either: kill it and launch again.
    GiveUp,
}

/// Watches one launch until its first status update (Marathon's task launch
/// timeout): after `timeout` of silence it is reconciled, after another `timeout`
/// given up.
#[derive(Debug, Clone, Copy)]
pub struct LaunchWatch {
    launched: Instant,
    reconciled: Option<Instant>,
}

impl LaunchWatch {
    pub fn new(now: Instant) -> Self {
        Self {
            launched: now,
            reconciled: None,
        }
    }

    pub fn check(&mut self, now: Instant, timeout: Duration) -> LaunchCheck {
        match self.reconciled {
            None if now.saturating_duration_since(self.launched) >= timeout => {
                self.reconciled = Some(now);
                LaunchCheck::Reconcile
            }
            Some(t) if now.saturating_duration_since(t) >= timeout => LaunchCheck::GiveUp,
            _ => LaunchCheck::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_heartbeats_of_silence_end_the_subscription() {
        assert_eq!(
            heartbeat_deadline(Duration::from_secs(15)),
            Duration::from_secs(75)
        );
    }

    #[test]
    fn a_silent_launch_is_reconciled_once_then_given_up() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut w = LaunchWatch::new(t0);
        assert_eq!(
            w.check(t0 + Duration::from_secs(9), timeout),
            LaunchCheck::Wait
        );
        assert_eq!(
            w.check(t0 + Duration::from_secs(10), timeout),
            LaunchCheck::Reconcile
        );
        // the reconciliation gets its own full timeout, and is asked for only once
        assert_eq!(
            w.check(t0 + Duration::from_secs(19), timeout),
            LaunchCheck::Wait
        );
        assert_eq!(
            w.check(t0 + Duration::from_secs(20), timeout),
            LaunchCheck::GiveUp
        );
    }
}
