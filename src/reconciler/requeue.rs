//! When to look at a resource again: one delay queue for all resources, keyed by
//! resource, as kube-runtime's scheduler keeps it. Asking again for a key already
//! waiting merges the two; the earlier deadline wins.

use std::collections::HashMap;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::time::Instant;
use tokio_util::time::DelayQueue;
use tokio_util::time::delay_queue::Key;

#[derive(Default)]
pub struct Requeue {
    queue: DelayQueue<String>,
    waiting: HashMap<String, (Key, Instant)>,
}

impl Requeue {
    /// Looks at `key` again after `after`, unless it is due sooner already.
    pub fn schedule(&mut self, key: String, after: Duration) {
        let at = Instant::now() + after;
        match self.waiting.get_mut(&key) {
            Some((_, due)) if *due <= at => {}
            Some((k, due)) => {
                self.queue.reset_at(k, at);
                *due = at;
            }
            None => {
                let k = self.queue.insert_at(key.clone(), at);
                self.waiting.insert(key, (k, at));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }
}

/// Keys as they fall due; ends (for now) when none waits: poll again after scheduling.
impl Stream for Requeue {
    type Item = String;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<String>> {
        match self.queue.poll_expired(cx) {
            Poll::Ready(Some(e)) => {
                let key = e.into_inner();
                self.waiting.remove(&key);
                Poll::Ready(Some(key))
            }
            other => other.map(|_| None),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    /// The next key due, or None if nothing falls due within a generous while.
    async fn next(q: &mut Requeue) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(5), q.next())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn duplicates_merge_and_the_earlier_deadline_wins() {
        let mut q = Requeue::default();
        q.schedule("ns/a".into(), Duration::from_secs(600));
        q.schedule("ns/b".into(), Duration::from_millis(150));
        q.schedule("ns/a".into(), Duration::from_millis(20)); // sooner: wins
        q.schedule("ns/a".into(), Duration::from_secs(900)); // later: ignored
        assert_eq!(q.len(), 2);
        assert_eq!(next(&mut q).await.as_deref(), Some("ns/a"));
        assert_eq!(next(&mut q).await.as_deref(), Some("ns/b"));
        // each key came once, however often it was asked for
        assert_eq!(q.len(), 0);
        assert_eq!(next(&mut q).await, None);
    }

    #[tokio::test]
    async fn a_key_that_fell_due_may_be_scheduled_again() {
        let mut q = Requeue::default();
        q.schedule("ns/a".into(), Duration::from_millis(10));
        assert_eq!(next(&mut q).await.as_deref(), Some("ns/a"));
        q.schedule("ns/a".into(), Duration::from_millis(10));
        assert_eq!(next(&mut q).await.as_deref(), Some("ns/a"));
    }
}
