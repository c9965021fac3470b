//! Copies a build's log from its executor's sandbox into the log slipway keeps,
//! through the agent's own `GET /files/read?path=&offset=&length=` (its answer:
//! `{"data": "...", "offset": N}`; `offset=-1` gives the file's size). One task per
//! build, off the framework's event loop: it reads on from where it stopped while
//! the build runs, drains the rest when the task ends, and then keeps the
//! executor's stdout and stderr too if the task ended before the build's log did (a
//! crash). With `--principal`, the reads carry the framework's credentials: an agent
//! run with `--authenticate_http_readonly` refuses anonymous ones.

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::logs::is_end;
use crate::mesos::http::{self, BasicAuth};
use crate::mesos::task::SandboxLog;
use crate::runner::{BuildEvent, Events};
use crate::{Error, Result};

/// How often a running build's log is looked at.
const POLL: Duration = Duration::from_secs(1);
/// Bytes asked for per read.
const CHUNK: usize = 256 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// After the task's end, how long the last of the log may take to arrive.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Reads that may fail after the task's end before the copy gives up.
const FINAL_TRIES: u32 = 5;
/// The end of a crashed executor's stderr that is kept: its last words matter.
const STDERR_BYTES: u64 = 64 * 1024;

/// A running copy; [`SandboxCopy::finish`] it when the task has ended.
pub struct SandboxCopy {
    /// `Some(failed)` once the task has ended.
    ended: watch::Sender<Option<bool>>,
    task: JoinHandle<()>,
}

impl SandboxCopy {
    /// Starts copying; the lines arrive on `events` as [`BuildEvent::Copied`].
    pub fn start(at: SandboxLog, events: Events, auth: Option<BasicAuth>) -> Self {
        let (ended, rx) = watch::channel(None);
        let task = tokio::spawn(copy(at, events, auth, rx));
        Self { ended, task }
    }

    /// The task ended (`failed`: without success): copies the rest and returns once
    /// it is in the log, or after [`FINISH_TIMEOUT`].
    pub async fn finish(mut self, failed: bool) {
        let _ = self.ended.send(Some(failed));
        if tokio::time::timeout(FINISH_TIMEOUT, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

async fn copy(
    at: SandboxLog,
    events: Events,
    auth: Option<BasicAuth>,
    mut ended: watch::Receiver<Option<bool>>,
) {
    let mut log = Reader::new(&at, SandboxLog::FILE, auth.clone());
    let mut seen_end = false;
    let failed = loop {
        let done = *ended.borrow_and_update();
        if let Some(failed) = done {
            let mut tries = 0;
            while let Err(e) = log.drain(&events, &mut seen_end, true).await {
                tries += 1;
                if tries >= FINAL_TRIES {
                    let _ = events.send(BuildEvent::Copied(vec![format!(
                        "--- the rest of the build's log could not be copied from {}: {e}",
                        at.agent
                    )]));
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
            break failed;
        }
        if let Err(e) = log.drain(&events, &mut seen_end, false).await {
            // the agent may be busy or restarting: the next poll (or the end) retries
            debug!(agent = %at.agent, "copying the build's log: {e}");
        }
        tokio::select! {
            _ = ended.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    };
    if failed && !seen_end {
        for file in ["stdout", "stderr"] {
            executor_output(&at, &events, auth.clone(), file).await;
        }
    }
}

/// The executor's `stdout` or `stderr`, after a `---` line: why it ended without
/// finishing. Nothing when the file is missing or empty.
async fn executor_output(at: &SandboxLog, events: &Events, auth: Option<BasicAuth>, file: &str) {
    let mut r = Reader::new(at, file, auth);
    let mut lines = vec![format!(
        "--- the executor's {file} (the task ended before the build's log did):"
    )];
    let size = match r.size().await {
        Ok(Some(size)) if size > 0 => size,
        Ok(_) => return,
        Err(e) => {
            lines.push(format!("--- it could not be read from {}: {e}", at.agent));
            let _ = events.send(BuildEvent::Copied(lines));
            return;
        }
    };
    if size > STDERR_BYTES {
        r.offset = size - STDERR_BYTES;
        lines.push(format!("--- (its first {} bytes left out)", r.offset));
    }
    let _ = events.send(BuildEvent::Copied(lines));
    let mut text = Vec::new();
    let mut seen_end = false;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    if let Err(e) = r.drain(&tx, &mut seen_end, true).await {
        text.push(format!("--- it could not be read from {}: {e}", at.agent));
    }
    drop(tx);
    while let Ok(BuildEvent::Copied(l)) = rx.try_recv() {
        // indented like build output: it is the executor's text, not slipway's
        text.extend(l.into_iter().map(|l| format!("    {l}")));
    }
    let _ = events.send(BuildEvent::Copied(text));
}

/// One file in the sandbox, read on from `offset`.
struct Reader {
    client: reqwest::Client,
    url: String,
    path: String,
    offset: u64,
    auth: Option<BasicAuth>,
}

/// The agent's answer to `/files/read`.
#[derive(Debug, Deserialize)]
struct ReadAnswer {
    data: String,
    offset: u64,
}

impl Reader {
    fn new(at: &SandboxLog, file: &str, auth: Option<BasicAuth>) -> Self {
        Self {
            client: http::client(),
            url: format!("{}/files/read", at.agent.trim_end_matches('/')),
            path: at.path(file),
            offset: 0,
            auth,
        }
    }

    /// The `/files/read` request for `length` bytes at `offset`.
    fn request(&self, offset: i64, length: usize) -> reqwest::RequestBuilder {
        let req = self
            .client
            .get(&self.url)
            .query(&[
                ("path", self.path.as_str()),
                ("offset", &offset.to_string()),
                ("length", &length.to_string()),
            ])
            .timeout(REQUEST_TIMEOUT);
        http::authorized(req, self.auth.as_ref())
    }

    /// `/files/read` at `offset`; None when the file is not there (yet).
    async fn read(&self, offset: i64, length: usize) -> Result<Option<ReadAnswer>> {
        let failed = |e: String| Error::Mesos(format!("GET {}?path={}: {e}", self.url, self.path));
        let resp = self
            .request(offset, length)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Err(failed(
                "not authenticated (401); the agent reads files for --principal and --secret-file only".into(),
            ));
        }
        if !resp.status().is_success() {
            return Err(failed(format!("HTTP {}", resp.status())));
        }
        let body = resp.bytes().await.map_err(|e| failed(e.to_string()))?;
        parse(&body).map(Some).map_err(failed)
    }

    async fn size(&self) -> Result<Option<u64>> {
        Ok(self.read(-1, 0).await?.map(|a| a.offset))
    }

    /// Sends every whole line from `offset` on (and, with `last`, a last line
    /// without its newline); the end line of the executor's log is noted, not sent:
    /// slipway writes the build's end itself.
    async fn drain(&mut self, events: &Events, seen_end: &mut bool, last: bool) -> Result<()> {
        loop {
            let Some(answer) = self.read(self.offset as i64, CHUNK).await? else {
                return Ok(());
            };
            let full = answer.data.len() >= CHUNK;
            let (lines, used) = whole_lines(&answer.data, last || full);
            self.offset += used as u64;
            let mut kept = Vec::with_capacity(lines.len());
            for line in lines {
                if is_end(line.as_bytes()) {
                    *seen_end = true;
                } else {
                    kept.push(line);
                }
            }
            if !kept.is_empty() {
                let _ = events.send(BuildEvent::Copied(kept));
            }
            if !full || used == 0 {
                return Ok(());
            }
        }
    }
}

/// The agent's JSON; bytes that are not UTF-8 (a read may cut a character in
/// two) are replaced, which only the cut line's tail can hold.
fn parse(body: &[u8]) -> std::result::Result<ReadAnswer, String> {
    let text = String::from_utf8_lossy(body);
    serde_json::from_str(&text).map_err(|e| format!("unreadable answer: {e}"))
}

/// The whole lines in `data` and the bytes they take; with `all`, the text after
/// the last newline counts as a line too.
fn whole_lines(data: &str, all: bool) -> (Vec<String>, usize) {
    let used = match data.rfind('\n') {
        _ if all => data.len(),
        Some(i) => i + 1,
        None => 0,
    };
    let lines = data[..used]
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    (lines, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_lines_are_taken_until_the_end() {
        let data = "2026-01-01T00:00:00.000Z ==> RUN make\n2026-01-01T00:00:01.000Z     buil";
        let (lines, used) = whole_lines(data, false);
        assert_eq!(lines, ["2026-01-01T00:00:00.000Z ==> RUN make"]);
        assert_eq!(&data[used..], "2026-01-01T00:00:01.000Z     buil");
        // nothing whole yet: nothing taken, the next read starts at the same place
        assert_eq!(whole_lines("half a li", false), (Vec::new(), 0));
        let (lines, used) = whole_lines(data, true);
        assert_eq!((lines.len(), used), (2, data.len()));
    }

    #[test]
    fn reads_carry_the_frameworks_credentials_and_never_show_them() {
        let at = SandboxLog {
            agent: "http://10.0.0.7:5051".into(),
            directory: "/var/lib/mesos/slaves/S0/runs/r1".into(),
        };
        let auth = BasicAuth {
            principal: "slipway".into(),
            secret: "hunter2-files".into(),
        };
        let req = Reader::new(&at, SandboxLog::FILE, Some(auth))
            .request(-1, 0)
            .build()
            .unwrap();
        assert_eq!(req.url().path(), "/files/read");
        let query: Vec<_> = req.url().query_pairs().into_owned().collect();
        assert!(query.contains(&(
            "path".into(),
            "/var/lib/mesos/slaves/S0/runs/r1/slipway-build.log".into()
        )));
        // base64("slipway:hunter2-files")
        let encoded = "c2xpcHdheTpodW50ZXIyLWZpbGVz";
        let h = &req.headers()[reqwest::header::AUTHORIZATION];
        assert_eq!(h, &format!("Basic {encoded}"));
        assert!(h.is_sensitive());
        let shown = format!("{req:?}");
        assert!(!shown.contains(encoded) && !shown.contains("hunter2-files"));
        // no credentials configured: anonymous, as before
        let anon = Reader::new(&at, "stderr", None)
            .request(0, 10)
            .build()
            .unwrap();
        assert!(anon.headers().get(reqwest::header::AUTHORIZATION).is_none());
    }

    #[test]
    fn the_agents_answer_is_read_even_with_a_character_cut_in_two() {
        let a = parse(br#"{"data":"hello\n","offset":7}"#).unwrap();
        assert_eq!((a.data.as_str(), a.offset), ("hello\n", 7));
        // "é" is two bytes; a read of 7 bytes from "line 1\né" ends mid-character
        let mut cut = br#"{"data":"line 1\n"#.to_vec();
        cut.push(0xc3);
        cut.extend_from_slice(br#"","offset":0}"#);
        let a = parse(&cut).unwrap();
        let (lines, used) = whole_lines(&a.data, false);
        assert_eq!((lines, used), (vec!["line 1".to_string()], 7));
        assert!(parse(b"<html>").unwrap_err().contains("unreadable"));
    }
}
