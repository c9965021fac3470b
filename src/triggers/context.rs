//! The `path`-context trigger: digests each context named in [`Targets::contexts`]
//! at once and again after its files change, and reports a digest that differs from
//! the last one it reported for that resource. A context that cannot be used (gone,
//! no Dockerfile, a symlink leading out) is reported as an `unusable:` marker instead,
//! so its build runs and puts the error in the status rather than waiting for ever.
//!
//! One `notify` watcher serves every context: a recursive watch per distinct root
//! (only the outermost of nested roots: inotify keeps one watch per directory, and two
//! overlapping recursive watches would tear each other's down on removal). Events are
//! debounced per root, so a `git checkout` of many files gives one recompute, and the
//! digests run on blocking threads, [`MAX_RUNNING`] at a time.

mod digest;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Config, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

pub use digest::digest;

use super::{ContextTarget, Observation, Targets};
use crate::sources::folder::watch::identity;

/// Quiet time after the last event under a root before its contexts are recomputed.
const QUIET: Duration = Duration::from_millis(300);
/// A root that never goes quiet (a log written inside it) is still recomputed this often.
const MAX_WAIT: Duration = Duration::from_secs(3);
/// Digests computed at once: each reads a whole context, and the builds need the disk.
const MAX_RUNNING: usize = 2;
/// How often roots are checked for being replaced (`rm -rf D; mkdir D`) or created:
/// a watch lives on the inode, and a missing root cannot be watched at all.
const ROOT_CHECK: Duration = Duration::from_secs(1);

/// Starts the trigger. It stops when the targets' sender or the observations'
/// receiver is dropped.
pub fn spawn(
    targets: watch::Receiver<Targets>,
    out: mpsc::Sender<Observation>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(targets, out))
}

/// A digest is computed per (root, Dockerfile): resources that share both share it.
type UnitKey = (PathBuf, String);

struct Unit {
    /// Tells a result from a unit that was removed and added again while it ran.
    id: u64,
    keys: BTreeSet<String>,
    dirty: bool,
    running: bool,
    /// The last error logged, so a broken context warns once, not on every change.
    last_error: Option<String>,
}

#[derive(Default)]
struct Root {
    /// (device, inode) when last looked at; None when it did not exist.
    identity: Option<(u64, u64)>,
    /// No other root contains it: it gets the watch.
    top: bool,
    watched: bool,
    /// When to recompute, and when the current burst of events began.
    due: Option<(Instant, Instant)>,
}

struct Computed {
    unit: UnitKey,
    id: u64,
    result: Result<String, digest::Failure>,
}

struct State {
    units: BTreeMap<UnitKey, Unit>,
    roots: BTreeMap<PathBuf, Root>,
    /// The last digest sent per resource key.
    sent: HashMap<String, String>,
    watcher: Option<RecommendedWatcher>,
    running: usize,
    next_id: u64,
    done: mpsc::UnboundedSender<Computed>,
}

async fn run(mut targets: watch::Receiver<Targets>, out: mpsc::Sender<Observation>) {
    let (fs_tx, mut fs_rx) = mpsc::unbounded_channel();
    let (done, mut done_rx) = mpsc::unbounded_channel();
    let mut state = State {
        units: BTreeMap::new(),
        roots: BTreeMap::new(),
        sent: HashMap::new(),
        watcher: start_watcher(fs_tx),
        running: 0,
        next_id: 0,
        done,
    };
    let first = targets.borrow_and_update().contexts.clone();
    state.set_targets(&first);
    let mut check = tokio::time::interval(ROOT_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        state.start_dirty();
        let due = state
            .roots
            .values()
            .filter_map(|r| r.due)
            .map(|d| d.0)
            .min();
        tokio::select! {
            changed = targets.changed() => {
                if changed.is_err() {
                    return;
                }
                let contexts = targets.borrow_and_update().contexts.clone();
                state.set_targets(&contexts);
            }
            Some((path, gone)) = fs_rx.recv() => state.on_path(&path, gone),
            Some(computed) = done_rx.recv() => {
                for obs in state.on_computed(computed) {
                    if out.send(obs).await.is_err() {
                        return;
                    }
                }
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                state.fire_due();
            }
            _ = check.tick() => state.check_roots(),
        }
    }
}

/// A recursive watcher whose events go to `tx`: the path, and whether it was removed
/// or moved away; None, with a warning, when
/// the system has no watcher to give: contexts are then digested at start only.
fn start_watcher(tx: mpsc::UnboundedSender<(PathBuf, bool)>) -> Option<RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| match res {
        // Opening and reading are events too, and the digest reads every file: only
        // a close after writing is a change.
        Ok(ev) if matches!(ev.kind, EventKind::Access(k) if k != AccessKind::Close(AccessMode::Write)) =>
            {}
        Ok(ev) => {
            let gone = matches!(
                ev.kind,
                EventKind::Remove(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
            );
            // slipway's own state (build logs) is never in a context: see runner::context
            let state = std::ffi::OsStr::new(crate::sources::folder::STATE_DIR);
            for p in ev.paths {
                if !p.components().any(|c| c.as_os_str() == state) {
                    let _ = tx.send((p, gone));
                }
            }
        }
        Err(e) => warn!("context watch error: {e}"),
    };
    // Links are not followed: one could lead out of the context.
    let config = Config::default().with_follow_symlinks(false);
    match RecommendedWatcher::new(handler, config) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!("cannot watch build contexts, they are digested at start only: {e}");
            None
        }
    }
}

impl State {
    /// Follows the reconciler's list: new contexts are digested and watched, removed
    /// ones forgotten and unwatched when no other resource uses their root.
    fn set_targets(&mut self, contexts: &BTreeMap<String, ContextTarget>) {
        let mut wanted: BTreeMap<UnitKey, BTreeSet<String>> = BTreeMap::new();
        for (key, t) in contexts {
            let unit = (t.root.clone(), t.dockerfile.clone());
            wanted.entry(unit).or_default().insert(key.clone());
        }
        // A key gone, or moved to another context, starts afresh.
        let kept: BTreeSet<&String> = wanted
            .iter()
            .flat_map(|(u, keys)| {
                let old = self.units.get(u).map(|x| &x.keys);
                keys.iter()
                    .filter(move |k| old.is_some_and(|o| o.contains(*k)))
            })
            .collect();
        self.sent.retain(|k, _| kept.contains(k));
        self.units.retain(|u, _| wanted.contains_key(u));
        for (u, keys) in wanted {
            match self.units.get_mut(&u) {
                Some(unit) if unit.keys == keys => {}
                Some(unit) => {
                    // Newcomers need their first observation: digest again (the
                    // others see the same digest and get nothing).
                    if !keys.is_subset(&unit.keys) {
                        unit.dirty = true;
                    }
                    unit.keys = keys;
                }
                None => {
                    self.next_id += 1;
                    let unit = Unit {
                        id: self.next_id,
                        keys,
                        dirty: true,
                        running: false,
                        last_error: None,
                    };
                    self.units.insert(u, unit);
                }
            }
        }
        self.update_watches();
    }

    /// Makes the watches match the roots in use: one per outermost root.
    fn update_watches(&mut self) {
        let used: BTreeSet<PathBuf> = self.units.keys().map(|u| u.0.clone()).collect();
        let gone: Vec<PathBuf> = (self.roots.keys())
            .filter(|r| !used.contains(*r))
            .cloned()
            .collect();
        for r in gone {
            if self.roots.remove(&r).is_some_and(|s| s.watched) {
                self.unwatch(&r);
            }
        }
        // Paths order component-wise, so a root's descendants follow it directly.
        let mut outer: Option<PathBuf> = None;
        for r in &used {
            let top = !outer.as_ref().is_some_and(|o| r.starts_with(o));
            if top {
                outer = Some(r.clone());
            }
            let state = self.roots.entry(r.clone()).or_insert_with(|| Root {
                identity: identity(r),
                ..Root::default()
            });
            state.top = top;
        }
        // Unwatch first: watching a root and then unwatching a root inside it would
        // remove part of the new watch.
        let drop: Vec<PathBuf> = (self.roots.iter())
            .filter(|(_, s)| s.watched && !s.top)
            .map(|(r, _)| r.clone())
            .collect();
        for r in drop {
            self.unwatch(&r);
            self.roots.get_mut(&r).expect("listed above").watched = false;
        }
        let add: Vec<PathBuf> = (self.roots.iter())
            .filter(|(_, s)| s.top && !s.watched && s.identity.is_some())
            .map(|(r, _)| r.clone())
            .collect();
        for r in add {
            let watched = self.watch(&r);
            self.roots.get_mut(&r).expect("listed above").watched = watched;
        }
    }

    fn watch(&mut self, root: &Path) -> bool {
        let Some(w) = self.watcher.as_mut() else {
            return false;
        };
        match w.watch(root, RecursiveMode::Recursive) {
            Ok(()) => true,
            Err(e) => {
                warn!(root = %root.display(), "cannot watch build context: {e}");
                false
            }
        }
    }

    fn unwatch(&mut self, root: &Path) {
        if let Some(w) = self.watcher.as_mut() {
            // Fails when the directory went away and took its watch along: fine.
            let _ = w.unwatch(root);
        }
    }

    /// Something changed at `path`: every root containing it waits for quiet. A root
    /// itself removed or moved away took its watch along: the next check re-watches
    /// it once it exists, even when the new directory reuses the old inode number.
    fn on_path(&mut self, path: &Path, gone: bool) {
        if gone && let Some(root) = self.roots.get_mut(path) {
            root.identity = None;
        }
        let now = Instant::now();
        for dir in path.ancestors() {
            if let Some(root) = self.roots.get_mut(dir) {
                let began = root.due.map_or(now, |d| d.1);
                root.due = Some(((now + QUIET).min(began + MAX_WAIT), began));
            }
        }
    }

    fn fire_due(&mut self) {
        let now = Instant::now();
        let ready: Vec<PathBuf> = (self.roots.iter_mut())
            .filter(|(_, s)| s.due.is_some_and(|d| d.0 <= now))
            .map(|(r, s)| {
                s.due = None;
                r.clone()
            })
            .collect();
        for r in ready {
            self.mark_dirty(&r);
        }
    }

    fn mark_dirty(&mut self, root: &Path) {
        for ((r, _), unit) in self.units.iter_mut() {
            if r == root {
                unit.dirty = true;
            }
        }
    }

    /// Notices roots created, removed or replaced since last time: re-watches them
    /// and digests their contexts again.
    fn check_roots(&mut self) {
        let changed: Vec<PathBuf> = (self.roots.iter_mut())
            .filter_map(|(r, s)| {
                let now = identity(r);
                (now != s.identity).then(|| {
                    s.identity = now;
                    r.clone()
                })
            })
            .collect();
        for r in changed {
            debug!(root = %r.display(), "build context root appeared, vanished or was replaced");
            let (top, watched, exists) = {
                let s = &self.roots[&r];
                (s.top, s.watched, s.identity.is_some())
            };
            if top {
                if watched {
                    self.unwatch(&r);
                }
                let watched = exists && self.watch(&r);
                self.roots.get_mut(&r).expect("listed above").watched = watched;
            }
            self.mark_dirty(&r);
        }
    }

    /// Starts digests of changed contexts, [`MAX_RUNNING`] at a time, each on a
    /// blocking thread.
    fn start_dirty(&mut self) {
        for (key, unit) in self.units.iter_mut() {
            if self.running >= MAX_RUNNING {
                return;
            }
            if !unit.dirty || unit.running {
                continue;
            }
            unit.dirty = false;
            unit.running = true;
            self.running += 1;
            let (key, id, done) = (key.clone(), unit.id, self.done.clone());
            tokio::task::spawn_blocking(move || {
                let result = digest::compute(&key.0, &key.1);
                let _ = done.send(Computed {
                    unit: key,
                    id,
                    result,
                });
            });
        }
    }

    /// What to send for a finished digest: the resources whose last sent digest differs.
    fn on_computed(&mut self, c: Computed) -> Vec<Observation> {
        self.running -= 1;
        let Some(unit) = self.units.get_mut(&c.unit).filter(|u| u.id == c.id) else {
            return Vec::new();
        };
        unit.running = false;
        if unit.dirty {
            // Changed again while it ran: the newer digest comes next.
            return Vec::new();
        }
        let digest = match c.result {
            Ok(digest) => {
                unit.last_error = None;
                digest
            }
            Err(f) => {
                let msg = f.error.to_string();
                let marker = unusable_marker(&msg);
                if unit.last_error.as_ref() != Some(&msg) {
                    warn!(context = %c.unit.0.display(), "cannot digest build context: {msg}");
                    unit.last_error = Some(msg);
                }
                // An unusable context is reported too: the reconciler builds once a
                // context is observed, and that build puts the error in the status.
                if !f.unusable {
                    return Vec::new();
                }
                marker
            }
        };
        let mut obs = Vec::new();
        for key in &unit.keys {
            if self.sent.get(key) != Some(&digest) {
                self.sent.insert(key.clone(), digest.clone());
                obs.push(Observation::Context {
                    key: key.clone(),
                    digest: digest.clone(),
                });
            }
        }
        obs
    }
}

/// Stands for the digest of a context that cannot be used: never a `sha256:` digest,
/// the same for the same error (a restart rebuilds nothing), another for another.
fn unusable_marker(msg: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(msg.as_bytes()));
    format!("unusable:{}", &h[..16])
}

#[cfg(test)]
mod tests;
