//! An in-memory [`Source`] for the event loop's unit tests and the benchmarks: it
//! reports the resources it was given, then `Synced`, then whatever the test sends,
//! and keeps every status written (with when), so the one implementation serves
//! both.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use super::{Resource, Source, SourceEvent};
use crate::Result;
use crate::api::{DockerBuildStatus, Phase};
use crate::registry::DockerConfig;
use crate::runner::BuildSecrets;

/// Lines of what happened, in order, shared with whatever else the test records.
pub type Log = Arc<Mutex<Vec<String>>>;

/// Resources from memory; no credentials, no secrets.
pub struct Memory {
    initial: Mutex<Vec<Resource>>,
    later: Mutex<Option<mpsc::UnboundedReceiver<SourceEvent>>>,
    /// Every status written, with its key, in order.
    written: Mutex<Vec<(String, DockerBuildStatus)>>,
    /// Per key, when each phase was first written: what a bench polls, kept apart so
    /// that polling holds the lock only briefly.
    firsts: Mutex<HashMap<String, Vec<(Phase, Instant)>>>,
    log: Option<Log>,
    slow: Option<(String, watch::Receiver<bool>)>,
}

impl Memory {
    /// A source of `initial`, then of what is sent on the returned sender; its run
    /// ends when the sender is dropped.
    pub fn new(initial: Vec<Resource>) -> (Self, mpsc::UnboundedSender<SourceEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let source = Self {
            initial: Mutex::new(initial),
            later: Mutex::new(Some(rx)),
            written: Mutex::default(),
            firsts: Mutex::default(),
            log: None,
            slow: None,
        };
        (source, tx)
    }

    /// Records `write KEY PHASE`, `blocked KEY` (a slow write waiting) and
    /// `release KEY` in `log`.
    pub fn logging(mut self, log: Log) -> Self {
        self.log = Some(log);
        self
    }

    /// Status writes for `key` wait until `gate` is open (true): a slow API server.
    pub fn slow(mut self, key: &str, gate: watch::Receiver<bool>) -> Self {
        self.slow = Some((key.to_string(), gate));
        self
    }

    /// The last status written for `key`.
    pub fn last_status(&self, key: &str) -> Option<DockerBuildStatus> {
        let written = self.written.lock().unwrap();
        let last = written.iter().rev().find(|(k, _)| k == key);
        last.map(|(_, s)| s.clone())
    }

    /// When each key was first written with one of `phases`.
    pub fn first(&self, phases: &[Phase]) -> HashMap<String, Instant> {
        let firsts = self.firsts.lock().unwrap();
        let at = |(k, ps): (&String, &Vec<(Phase, Instant)>)| {
            let (_, at) = ps.iter().find(|(p, _)| phases.contains(p))?;
            Some((k.clone(), *at))
        };
        firsts.iter().filter_map(at).collect()
    }

    /// How many keys starting with `prefix` have been written with one of `phases`.
    pub fn reached(&self, prefix: &str, phases: &[Phase]) -> usize {
        let firsts = self.firsts.lock().unwrap();
        let has = |(k, ps): &(&String, &Vec<(Phase, Instant)>)| {
            k.starts_with(prefix) && ps.iter().any(|(p, _)| phases.contains(p))
        };
        firsts.iter().filter(has).count()
    }

    fn note(&self, line: String) {
        if let Some(log) = &self.log {
            log.lock().unwrap().push(line);
        }
    }
}

#[async_trait]
impl Source for Memory {
    async fn run(&self, events: mpsc::Sender<SourceEvent>) -> Result<()> {
        let initial = std::mem::take(&mut *self.initial.lock().unwrap());
        for r in initial {
            let _ = events.send(SourceEvent::Applied(Box::new(r))).await;
        }
        let _ = events.send(SourceEvent::Synced).await;
        let mut later = self.later.lock().unwrap().take().expect("run once");
        while let Some(ev) = later.recv().await {
            let _ = events.send(ev).await;
        }
        Ok(())
    }

    async fn write_status(&self, key: &str, _: &str, s: &DockerBuildStatus) -> Result<()> {
        if let Some((slow, gate)) = &self.slow
            && slow == key
        {
            self.note(format!("blocked {key}"));
            let _ = gate.clone().wait_for(|open| *open).await;
        }
        let phase = s.phase.map(|p| p.to_string()).unwrap_or_default();
        self.note(format!("write {key} {phase}"));
        let at = Instant::now();
        if let Some(phase) = s.phase {
            let mut firsts = self.firsts.lock().unwrap();
            let phases = firsts.entry(key.to_string()).or_default();
            if !phases.iter().any(|(p, _)| *p == phase) {
                phases.push((phase, at));
            }
        }
        let written = (key.to_string(), s.clone());
        self.written.lock().unwrap().push(written);
        Ok(())
    }

    async fn auth(&self, _: &Resource) -> Result<DockerConfig> {
        Ok(DockerConfig::default())
    }

    async fn secrets(&self, _: &Resource) -> Result<BuildSecrets> {
        Ok(BuildSecrets::default())
    }

    async fn released(&self, key: &str, _: &str) -> Result<()> {
        self.note(format!("release {key}"));
        Ok(())
    }
}
