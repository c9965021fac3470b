//! One build's log file: every event as a timestamped line, secrets masked, cut at a
//! size cap, and the last lines kept in memory for a failed build's `status.logTail`.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::runner::{BuildEvent, BuildOutcome, BuildRequest};
use crate::{Error, Result};

/// Lines of a failed build's log shown in `status.logTail`.
pub const TAIL_LINES: usize = 20;
/// Starts (after the timestamp) the last line of every build's log: a follower stops
/// there. Output lines are indented, so no build can print it.
pub const END_MARK: &str = "--- end of build ";
/// Shorter secrets are not masked: masking every `abc` would garble the log.
const MIN_SECRET_LEN: usize = 4;

/// Masks secret values (registry passwords, build secrets) wherever they appear.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is masked whole.
    values: Vec<String>,
}

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .collect();
        values.sort_unstable_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Self { values }
    }

    /// What masks a build's registry passwords and build secrets.
    pub fn for_request(req: &BuildRequest) -> Self {
        Self::new(
            req.auth.secret_values().into_iter().chain(
                req.secrets
                    .0
                    .values()
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
            ),
        )
    }

    /// The event with its text masked: what a build prints goes to statuses and
    /// slipway's own log too.
    pub fn event(&self, ev: BuildEvent) -> BuildEvent {
        if self.values.is_empty() {
            return ev;
        }
        let mask = |s: String| self.redact(&s).into_owned();
        match ev {
            BuildEvent::Step(s) => BuildEvent::Step(mask(s)),
            BuildEvent::Log(s) => BuildEvent::Log(mask(s)),
            BuildEvent::Waiting(s) => BuildEvent::Waiting(mask(s)),
            BuildEvent::Copied(lines) => BuildEvent::Copied(lines.into_iter().map(mask).collect()),
            other => other,
        }
    }

    /// The error with its text masked: a failure quotes the build's last lines.
    pub fn error(&self, e: Error) -> Error {
        let detail = e.detail();
        match self.redact(&detail) {
            Cow::Borrowed(_) => e,
            Cow::Owned(masked) => Error::from_label(e.metric_label(), masked),
        }
    }

    pub fn redact<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(line);
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), "***"));
            }
        }
        out
    }
}

/// The text of the lines one event means (no timestamps). Push progress is summed
/// up: a line when a tag's push status changes, not one per chunk.
pub(crate) fn render(ev: &BuildEvent, pushes: &mut HashMap<String, String>) -> Vec<String> {
    match ev {
        BuildEvent::Building {
            context_bytes,
            files,
        } => vec![format!(
            "--- sent a context of {files} files, {:.1} MiB",
            *context_bytes as f64 / (1024.0 * 1024.0)
        )],
        BuildEvent::Step(s) => vec![format!("==> {s}")],
        BuildEvent::Log(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("    {l}"))
            .collect(),
        BuildEvent::Pushing { tags } => vec![format!("--- pushing {}", tags.join(", "))],
        BuildEvent::PushProgress { tag, status, .. } => {
            if pushes.get(tag) == Some(status) {
                return Vec::new();
            }
            pushes.insert(tag.clone(), status.clone());
            vec![format!("--- push {tag}: {status}")]
        }
        BuildEvent::Pushed { tag, digest } => vec![format!("--- pushed {tag} {digest}")],
        BuildEvent::Waiting(why) => vec![format!("--- waiting: {why}")],
        BuildEvent::Placed { host, task } => match &task.placement {
            Some(why) => vec![format!("--- {why}; Mesos task {}", task.task_id)],
            None => vec![format!(
                "--- placed on {host} as Mesos task {}",
                task.task_id
            )],
        },
        BuildEvent::Running {
            host,
            sandbox: None,
        } => vec![format!("--- running on {host}")],
        BuildEvent::Running {
            host,
            sandbox: Some(s),
        } => vec![format!(
            // the framework's own RUNNING said "running on" already
            "--- the build's log on {host} follows, copied from {} on {}",
            s.path(crate::mesos::task::SandboxLog::FILE),
            s.agent
        )],
        // written as they are, with their own timestamps (see BuildLog::event)
        BuildEvent::Copied(_) => Vec::new(),
        BuildEvent::Stages(steps) => {
            let cached = steps.iter().filter(|s| s.cached).count();
            vec![format!(
                "--- {} steps, {cached} from the cache",
                steps.len()
            )]
        }
    }
}

/// How a build ended, as its log's last line says it.
pub(crate) fn end_line(number: u64, outcome: &Result<BuildOutcome>) -> String {
    match outcome {
        Ok(o) => format!("{END_MARK}{number}: succeeded, {}@{}", o.image, o.digest),
        Err(Error::Cancelled(why)) => format!("{END_MARK}{number}: cancelled ({why})"),
        // the error's first line: the output it quotes is in the log already
        Err(e) => {
            let e = e.to_string();
            format!(
                "{END_MARK}{number}: failed: {}",
                e.lines().next().unwrap_or("")
            )
        }
    }
}

/// One build's log file, open for appending.
pub struct BuildLog {
    /// None once writing failed: the build goes on without its log.
    file: Option<File>,
    path: PathBuf,
    number: u64,
    written: u64,
    max: u64,
    cut: bool,
    redactor: Redactor,
    tail: VecDeque<String>,
    pushes: HashMap<String, String>,
    /// The runner keeps the build's log remotely and it is copied in: the events
    /// that log has are not written a second time.
    copied: bool,
}

impl BuildLog {
    pub(crate) fn open(path: &Path, number: u64, max: u64, redactor: Redactor) -> Result<Self> {
        let failed = |e: std::io::Error| Error::Source {
            path: path.display().to_string(),
            message: format!("cannot open the build log: {e}"),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(failed)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            file: Some(file),
            path: path.to_path_buf(),
            number,
            written,
            max,
            cut: written >= max,
            redactor,
            tail: VecDeque::new(),
            pushes: HashMap::new(),
            copied: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes what `ev` means.
    pub fn event(&mut self, ev: &BuildEvent) {
        match ev {
            BuildEvent::Copied(lines) => {
                for raw in lines {
                    self.copied_line(raw);
                }
                return;
            }
            BuildEvent::Running {
                sandbox: Some(_), ..
            } => self.copied = true,
            _ if self.copied && runner_logs(ev) => return,
            _ => {}
        }
        for line in render(ev, &mut self.pushes) {
            self.line(&line);
        }
    }

    /// A line of slipway's own (`--- ` and the text).
    pub fn note(&mut self, text: &str) {
        self.line(&format!("--- {text}"));
    }

    /// The last line, and the file closed. The end line is written past the cap too:
    /// followers wait for it.
    pub fn finish(mut self, outcome: &Result<BuildOutcome>) {
        let end = end_line(self.number, outcome);
        let end = self.redactor.redact(&end).into_owned();
        self.write(&end);
    }

    /// The last lines written, oldest first, for `status.logTail`.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    fn line(&mut self, text: &str) {
        self.keep(text, None);
    }

    /// A line of a log the remote runner kept: its timestamp stays, when it has one.
    fn copied_line(&mut self, raw: &str) {
        match raw.split_once(' ') {
            Some((ts, text)) if chrono::DateTime::parse_from_rfc3339(ts).is_ok() => {
                self.keep(text, Some(ts))
            }
            _ => self.keep(raw, None),
        }
    }

    fn keep(&mut self, text: &str, ts: Option<&str>) {
        let text = self.redactor.redact(text).into_owned();
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text.clone());
        if self.cut {
            return;
        }
        if self.written + text.len() as u64 + 32 > self.max {
            self.cut = true;
            let note = format!(
                "--- log cut at {} bytes (--max-log-bytes): the rest of this build's output is not kept",
                self.written
            );
            self.write(&note);
            return;
        }
        self.write_at(&text, ts);
    }

    fn write(&mut self, text: &str) {
        self.write_at(text, None);
    }

    fn write_at(&mut self, text: &str, ts: Option<&str>) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let now;
        let ts = match ts {
            Some(ts) => ts,
            None => {
                now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                &now
            }
        };
        let line = format!("{ts} {text}\n");
        // one write per line: a follower never sees half a line for long
        match file.write_all(line.as_bytes()) {
            Ok(()) => self.written += line.len() as u64,
            Err(e) => {
                warn!(log = %self.path.display(), "cannot write the build log, dropping it: {e}");
                self.file = None;
            }
        }
    }
}

/// Events the runner writes into its own log (a Mesos executor's, in its sandbox).
fn runner_logs(ev: &BuildEvent) -> bool {
    matches!(
        ev,
        BuildEvent::Building { .. }
            | BuildEvent::Step(_)
            | BuildEvent::Log(_)
            | BuildEvent::Pushing { .. }
            | BuildEvent::PushProgress { .. }
            | BuildEvent::Pushed { .. }
            | BuildEvent::Stages(_)
    )
}
