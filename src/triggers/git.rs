//! Git triggers, polling side: what commit a remote's branch or tag points to now
//! ([`ls_remote`]), asked again every interval for each [`GitTarget`]
//! ([`spawn_poller`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::{GitTarget, Observation, Targets, TriggerSettings, WebhookSecret};
use crate::runner::fetch::{checked_git_args, looks_like_sha, redact_credentials, remote_refs};
use crate::tls::GitTls;
use crate::{Error, Result};

/// Lookups running at once, whatever the number of targets: a poll must not flood a
/// git server (or this machine) when many resources come due together.
pub const MAX_LOOKUPS: usize = 4;

/// An unreachable host can keep `git ls-remote` waiting for minutes.
const LS_REMOTE_TIMEOUT: Duration = Duration::from_secs(60);

/// The commit that `revision` of the repository at `url` points to now: a branch, a
/// tag (peeled: an annotated tag gives its commit) or, with `None`, the remote's
/// default branch (its HEAD). A full commit sha is its own answer (it never moves).
/// Errors name the URL with any credentials removed, and git's reason. https trusts
/// `tls` (`--ca-file`).
pub async fn ls_remote(url: &str, revision: Option<&str>, tls: &GitTls) -> Result<String> {
    let shown = redact_credentials(url);
    let rev = checked_git_args(url, revision)?;
    let patterns = patterns(rev);
    let output = tokio::time::timeout(LS_REMOTE_TIMEOUT, remote_refs(url, patterns, tls))
        .await
        .map_err(|_| {
            Error::Context(
                format!(
                    "git ls-remote {shown} timed out after {} s",
                    LS_REMOTE_TIMEOUT.as_secs()
                )
                .into(),
            )
        })??;
    match resolve(&output, rev) {
        Some(commit) => Ok(commit),
        None if rev.is_some_and(|r| looks_like_sha(r) && matches!(r.len(), 40 | 64)) => {
            Ok(rev.unwrap_or_default().to_ascii_lowercase())
        }
        None => Err(Error::Context(
            format!(
                "git revision '{}' not found in {shown}",
                rev.unwrap_or("HEAD")
            )
            .into(),
        )),
    }
}

/// The refs `revision` may name, in the order `git fetch` tries them (a tag before a
/// branch of the same name), so the poll sees what a build would check out.
/// Full names only: ls-remote matches a pattern against the end of every ref.
fn patterns(revision: Option<&str>) -> Vec<String> {
    match revision {
        None | Some("HEAD") => vec!["HEAD".into()],
        Some(r) if r.starts_with("refs/") => vec![r.into()],
        Some(r) => vec![
            format!("refs/{r}"),
            format!("refs/tags/{r}"),
            format!("refs/heads/{r}"),
        ],
    }
}

/// Picks the commit out of ls-remote's `<sha>\t<ref>` lines: the first pattern that
/// matched, peeled (`<ref>^{}`) when the remote gave the peeled value.
fn resolve(output: &str, revision: Option<&str>) -> Option<String> {
    let refs: HashMap<&str, &str> = output
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(sha, name)| (name.trim(), sha.trim()))
        .collect();
    patterns(revision).iter().find_map(|p| {
        refs.get(format!("{p}^{{}}").as_str())
            .or_else(|| refs.get(p.as_str()))
            .map(|sha| sha.to_string())
    })
}

/// Looks up every git target once per its interval and reports each commit it has
/// not reported before (the first one included) as `Observation::Git{webhook: false}`.
/// One lookup per distinct target, at most [`MAX_LOOKUPS`] at once; an interval of
/// zero means never. A failed lookup is logged and tried again next interval. Ends
/// when the reconciler drops either end.
pub fn spawn_poller(
    mut targets: watch::Receiver<Targets>,
    out: mpsc::Sender<Observation>,
    tls: GitTls,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut state = PollState::default();
        state.set_targets(&targets.borrow_and_update().git, Instant::now());
        let mut running = JoinSet::new();
        let mut running_targets = HashMap::new();
        loop {
            let now = Instant::now();
            for target in state.take_due(now, MAX_LOOKUPS.saturating_sub(running.len())) {
                let (t, tls) = (target.clone(), tls.clone());
                let handle = running.spawn(async move {
                    let result = ls_remote(&t.url, t.revision.as_deref(), &tls).await;
                    (t, result)
                });
                running_targets.insert(handle.id(), target);
            }
            let wake = state
                .next_due()
                .unwrap_or_else(|| now + Duration::from_secs(3600));
            tokio::select! {
                changed = targets.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    state.set_targets(&targets.borrow_and_update().git, Instant::now());
                }
                Some(joined) = running.join_next_with_id() => {
                    let (target, commit) = match joined {
                        Ok((id, (target, result))) => {
                            running_targets.remove(&id);
                            match result {
                                Ok(commit) => (target, Some(commit)),
                                Err(e) => {
                                    warn!(
                                        url = %redact_credentials(&target.url),
                                        revision = target.revision.as_deref().unwrap_or("HEAD"),
                                        error = %e,
                                        "git poll failed; trying again next interval"
                                    );
                                    (target, None)
                                }
                            }
                        }
                        // A lookup that panicked: free its slot all the same.
                        Err(e) => match running_targets.remove(&e.id()) {
                            Some(target) => (target, None),
                            None => continue,
                        },
                    };
                    if let Some(obs) = state.finished(&target, commit, Instant::now()) {
                        debug!(?obs, "git poll saw a new commit");
                        if out.send(obs).await.is_err() {
                            return;
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
                _ = out.closed() => return,
            }
        }
    })
}

/// The git triggers [`super::start`] runs: the poller (each target at its own
/// interval; zero, never) and, with `--webhook-listen`, the webhook endpoint.
pub async fn start(
    settings: &TriggerSettings,
    targets: &watch::Sender<Targets>,
    out: mpsc::Sender<Observation>,
) -> Result<Vec<JoinHandle<()>>> {
    // what may fail first, so a failure leaves nothing running
    let webhook = match &settings.webhook {
        Some(w) => {
            let secret = WebhookSecret::from_file(&w.secret_file)?;
            let listener = tokio::net::TcpListener::bind(w.listen)
                .await
                .map_err(|e| Error::InvalidSpec(format!("--webhook-listen {}: {e}", w.listen)))?;
            Some((secret, listener))
        }
        None => None,
    };
    let tls = settings.tls.git();
    let mut tasks = vec![spawn_poller(targets.subscribe(), out.clone(), tls.clone())];
    if let Some((secret, listener)) = webhook {
        let targets = targets.subscribe();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = super::webhook::serve(listener, secret, targets, out, tls).await {
                error!(error = %e, "the webhook endpoint stopped");
            }
        }));
    }
    Ok(tasks)
}

/// The poller's decisions, free of I/O: what is due, what to report.
#[derive(Debug, Default)]
struct PollState {
    entries: BTreeMap<GitTarget, Entry>,
}

#[derive(Debug)]
struct Entry {
    interval: Duration,
    due: Instant,
    /// A lookup is running: never two for one target.
    busy: bool,
    last_sent: Option<String>,
}

impl PollState {
    /// New targets are due now; a shortened interval takes effect at once; targets
    /// gone (or turned off: zero) are forgotten, with what was last reported.
    fn set_targets(&mut self, targets: &BTreeMap<GitTarget, Duration>, now: Instant) {
        self.entries
            .retain(|t, _| targets.get(t).is_some_and(|i| !i.is_zero()));
        for (target, &interval) in targets.iter().filter(|(_, i)| !i.is_zero()) {
            let entry = self.entries.entry(target.clone()).or_insert(Entry {
                interval,
                due: now,
                busy: false,
                last_sent: None,
            });
            if entry.interval != interval {
                entry.due = entry.due.min(now + interval);
                entry.interval = interval;
            }
        }
    }

    /// Up to `slots` targets whose time has come, longest waiting first, marked busy.
    fn take_due(&mut self, now: Instant, slots: usize) -> Vec<GitTarget> {
        let mut due: Vec<(&GitTarget, &mut Entry)> = self
            .entries
            .iter_mut()
            .filter(|(_, e)| !e.busy && e.due <= now)
            .collect();
        due.sort_by_key(|(_, e)| e.due);
        due.into_iter()
            .take(slots)
            .map(|(t, e)| {
                e.busy = true;
                t.clone()
            })
            .collect()
    }

    /// When the next idle target comes due.
    fn next_due(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| !e.busy)
            .map(|e| e.due)
            .min()
    }

    /// A lookup ended (`None`: it failed). Schedules the next one and returns what to
    /// report: the commit, unless it is the one reported last.
    fn finished(
        &mut self,
        target: &GitTarget,
        commit: Option<String>,
        now: Instant,
    ) -> Option<Observation> {
        let entry = self.entries.get_mut(target)?;
        entry.busy = false;
        entry.due = now + entry.interval;
        let commit = commit?;
        if entry.last_sent.as_ref() == Some(&commit) {
            return None;
        }
        entry.last_sent = Some(commit.clone());
        Some(Observation::Git {
            url: target.url.clone(),
            revision: target.revision.clone(),
            commit,
            webhook: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn target(url: &str, rev: Option<&str>) -> GitTarget {
        GitTarget {
            url: url.into(),
            revision: rev.map(Into::into),
        }
    }

    #[test]
    fn resolve_peels_tags_and_prefers_them_like_fetch() {
        let out = format!(
            "{A}\tHEAD\n{A}\trefs/heads/main\n{B}\trefs/heads/v1\n\
             3333333333333333333333333333333333333333\trefs/tags/v1\n{A}\trefs/tags/v1^{{}}\n"
        );
        assert_eq!(resolve(&out, None).as_deref(), Some(A));
        assert_eq!(resolve(&out, Some("main")).as_deref(), Some(A));
        // the annotated tag's commit, not the tag object, and the tag before the branch
        assert_eq!(resolve(&out, Some("v1")).as_deref(), Some(A));
        assert_eq!(resolve(&out, Some("refs/heads/v1")).as_deref(), Some(B));
        assert_eq!(resolve(&out, Some("nope")), None);
    }

    #[test]
    fn patterns_are_full_ref_names() {
        assert_eq!(patterns(None), ["HEAD"]);
        assert_eq!(patterns(Some("refs/tags/v1")), ["refs/tags/v1"]);
        assert_eq!(
            patterns(Some("main")),
            ["refs/main", "refs/tags/main", "refs/heads/main"]
        );
    }

    #[tokio::test]
    async fn ls_remote_refuses_option_injection_and_hides_credentials() {
        let e = ls_remote("--upload-pack=touch /tmp/x", None, &GitTls::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidSpec(_)), "{e}");
        let e = ls_remote(
            "file:///nonexistent",
            Some("--output=x"),
            &GitTls::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::InvalidSpec(_)), "{e}");
        let e = ls_remote(
            "http://user:s3cret@127.0.0.1:9/repo.git",
            Some("main"),
            &GitTls::default(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("http://127.0.0.1:9/repo.git"), "{e}");
    }

    #[test]
    fn poll_state_reports_first_and_changed_commits_only() {
        let t0 = Instant::now();
        let t = target("git://h/r.git", Some("main"));
        let mut s = PollState::default();
        s.set_targets(&[(t.clone(), Duration::from_secs(10))].into(), t0);
        assert_eq!(s.take_due(t0, 4), std::slice::from_ref(&t));
        // busy: not handed out twice
        assert!(s.take_due(t0, 4).is_empty());
        assert!(s.finished(&t, Some(A.into()), t0).is_some());
        assert_eq!(s.next_due(), Some(t0 + Duration::from_secs(10)));
        assert!(s.take_due(t0 + Duration::from_secs(9), 4).is_empty());
        let t10 = t0 + Duration::from_secs(10);
        assert_eq!(s.take_due(t10, 4), std::slice::from_ref(&t));
        assert_eq!(s.finished(&t, Some(A.into()), t10), None);
        let t20 = t10 + Duration::from_secs(10);
        s.take_due(t20, 4);
        // a failure reports nothing and keeps the schedule
        assert_eq!(s.finished(&t, None, t20), None);
        assert_eq!(s.next_due(), Some(t20 + Duration::from_secs(10)));
        let t30 = t20 + Duration::from_secs(10);
        s.take_due(t30, 4);
        assert_eq!(
            s.finished(&t, Some(B.into()), t30),
            Some(Observation::Git {
                url: t.url.clone(),
                revision: t.revision.clone(),
                commit: B.into(),
                webhook: false
            })
        );
    }

    #[test]
    fn poll_state_limits_lookups_and_honours_zero_and_new_intervals() {
        let t0 = Instant::now();
        let targets: BTreeMap<_, _> = (0..6)
            .map(|i| {
                (
                    target(&format!("git://h/{i}.git"), None),
                    Duration::from_secs(60),
                )
            })
            .chain([(target("git://h/off.git", None), Duration::ZERO)])
            .collect();
        let mut s = PollState::default();
        s.set_targets(&targets, t0);
        assert_eq!(s.take_due(t0, MAX_LOOKUPS).len(), MAX_LOOKUPS);
        assert_eq!(s.take_due(t0, 2).len(), 2);
        // the zero-interval target is never looked up
        assert!(s.take_due(t0 + Duration::from_secs(3600), 10).is_empty());
        for t in targets.keys().take(6) {
            s.finished(t, Some(A.into()), t0);
        }
        // a resource asking for a shorter interval makes the next look come sooner
        let mut shorter = targets.clone();
        let first = targets.keys().next().unwrap().clone();
        shorter.insert(first.clone(), Duration::from_secs(5));
        shorter.remove(targets.keys().nth(1).unwrap());
        s.set_targets(&shorter, t0);
        assert_eq!(s.take_due(t0 + Duration::from_secs(5), 10), [first]);
        assert_eq!(s.entries.len(), 5);
    }
}
