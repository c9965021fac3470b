//! One backoff for every retry loop: doubling from a first delay, jittered so that
//! many builds (or replicas) failing together do not retry in lockstep, and never
//! past a cap. backon computes it; this only fixes the shape every loop shares.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(first)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self {
            builder,
            delays: builder.build(),
            max,
        }
    }

    /// The next delay: between the doubled delay and twice it, at most the cap.
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max).min(self.max)
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_and_stays_under_the_cap() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        let got: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        for (i, low) in [100, 200, 400, 800].into_iter().enumerate() {
            assert!(
                got[i] >= ms(low) && got[i] <= ms(2 * low).min(ms(1000)),
                "{got:?}"
            );
        }
        assert!(got[4..].iter().all(|d| *d == ms(1000)), "capped: {got:?}");
        b.reset();
        assert!(b.next_delay() < ms(200));
    }

    #[test]
    fn retries_that_start_together_spread_out() {
        let delays: std::collections::HashSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).next_delay())
            .collect();
        assert!(delays.len() > 10, "{delays:?}");
    }
}
