//! The private daemon's life: started in the sandbox, waited for (bounded, with the
//! tail of its log when it does not come up), and stopped with everything it started.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tracing::{info, warn};

use super::{Daemon, ENGINE_DIR, EngineArgs, socket_path};
use crate::{Detail, Error, Result};

/// A stopping daemon gets this long to exit (dockerd stops its containerd first);
/// short, as a killed task's executor has 5 s in all.
const STOP_GRACE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(50);
/// Lines of the daemon's log quoted in a start-up failure.
const LOG_TAIL: usize = 15;

/// A running private daemon. Stop it with [`Ephemeral::stop`]; dropped, it is killed.
pub struct Ephemeral {
    pub daemon: Daemon,
    /// `unix://...` to reach it at.
    pub addr: String,
    /// The socket as the sandbox holds it: `./.engine/NAME.sock`.
    pub socket_in_sandbox: String,
    /// From spawning it to its first answer.
    pub startup: Duration,
    dir: PathBuf,
    child: Child,
    /// Its process group (its PID), until stopped: kept apart from the child, as a
    /// daemon that died still leaves its group's other members to stop.
    group: Option<Pid>,
}

impl Ephemeral {
    /// Starts `daemon` with its state under `sandbox/.engine` and waits until it
    /// answers. `sandbox` is the executor's working directory.
    pub async fn start(daemon: Daemon, args: &EngineArgs, sandbox: &Path) -> Result<Self> {
        let dir = sandbox.join(ENGINE_DIR);
        std::fs::create_dir_all(&dir)?;
        let cwd = std::env::current_dir()?;
        let name = daemon.name();
        let sock = socket_path(&dir, &format!("{name}.sock"), &cwd)?;
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = match &daemon {
            Daemon::Buildkitd(bin) => buildkitd(bin, &dir, &sock, &cwd)?,
            Daemon::Dockerd(bin) => dockerd(bin, &dir, &sock, &cwd)?,
        };
        cmd.current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // its own group, so stopping it reaches containerd and the shims too
            .process_group(0)
            .kill_on_drop(true);
        let begun = Instant::now();
        let child = cmd.spawn().map_err(|e| {
            let message = format!("cannot start {}: {e}", daemon_bin(&daemon));
            category(&daemon, Detail::new(message, e))
        })?;
        let group = child.id().and_then(|p| Pid::from_raw(p as i32));
        let mut me = Self {
            addr: format!("unix://{}", sock.display()),
            socket_in_sandbox: format!("./{ENGINE_DIR}/{name}.sock"),
            startup: Duration::ZERO,
            daemon,
            dir,
            child,
            group,
        };
        let timeout = args.start_timeout();
        loop {
            if let Some(status) = me.child.try_wait()? {
                let e = me.failed(format!("exited during start-up ({status})"));
                me.stop().await;
                return Err(e);
            }
            if answers(&me.daemon, &sock).await {
                break;
            }
            if begun.elapsed() >= timeout {
                let e = me.failed(format!(
                    "did not become ready within {} s",
                    timeout.as_secs()
                ));
                me.stop().await;
                return Err(e);
            }
            tokio::time::sleep(POLL).await;
        }
        me.startup = begun.elapsed();
        info!(daemon = name, startup = ?me.startup, socket = %me.socket_in_sandbox, "ephemeral engine ready");
        Ok(me)
    }

    fn failed(&self, what: String) -> Error {
        let log = self.dir.join(format!("{}.log", self.daemon.name()));
        let tail = log_tail(&log, LOG_TAIL);
        category(
            &self.daemon,
            format!(
                "the ephemeral {} {what}; the end of its log ({}):\n{tail}",
                self.daemon.name(),
                log.display()
            )
            .into(),
        )
    }

    /// SIGTERM, a grace period, then SIGKILL to its whole process group; then
    /// whatever it left mounted under the sandbox is unmounted, so Mesos can remove it.
    pub async fn stop(mut self) {
        let Some(pid) = self.group.take() else {
            return;
        };
        let _ = kill_process(pid, Signal::TERM);
        if tokio::time::timeout(STOP_GRACE, self.child.wait())
            .await
            .is_err()
        {
            warn!(
                daemon = self.daemon.name(),
                "did not stop in time; killing it"
            );
        }
        // containerd, shims, runc: anything of its group that outlived it
        let _ = kill_process_group(pid, Signal::KILL);
        let _ = self.child.wait().await;
        unmount_under(&self.dir);
        info!(daemon = self.daemon.name(), "ephemeral engine stopped");
    }
}

impl Drop for Ephemeral {
    /// A build task aborted mid-way: no grace, but nothing of the group survives.
    fn drop(&mut self) {
        if let Some(pid) = self.group.take() {
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

fn daemon_bin(d: &Daemon) -> String {
    match d {
        Daemon::Buildkitd(p) | Daemon::Dockerd(p) => p.display().to_string(),
    }
}

fn category(d: &Daemon, detail: Detail) -> Error {
    match d {
        Daemon::Buildkitd(_) => Error::Buildkit(detail),
        Daemon::Dockerd(_) => Error::Docker(detail),
    }
}

/// buildkitd with the OCI worker (runc), build steps on the host network (no CNI,
/// no bridge), and every path it would take under /run or /etc in `dir` instead.
fn buildkitd(bin: &Path, dir: &Path, sock: &Path, cwd: &Path) -> Result<Command> {
    let config = dir.join("buildkitd.toml");
    std::fs::write(&config, "")?;
    let otel = socket_path(dir, "otel.sock", cwd)?;
    let mut c = Command::new(bin);
    c.arg("--config")
        .arg(&config)
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--addr")
        .arg(format!("unix://{}", sock.display()))
        .arg("--otel-socket-path")
        .arg(otel)
        .args([
            "--oci-worker=true",
            "--containerd-worker=false",
            "--oci-worker-net=host",
        ]);
    Ok(c)
}

/// dockerd with its data root, exec root (and so its containerd's state), pidfile
/// and socket in `dir`, no bridge and no iptables, and an empty config rather than
/// the agent's /etc/docker/daemon.json (whose `hosts` would clash).
fn dockerd(bin: &Path, dir: &Path, sock: &Path, cwd: &Path) -> Result<Command> {
    let config = dir.join("daemon.json");
    std::fs::write(&config, "{}")?;
    // the exec root holds containerd's socket: keep it short like the API socket
    let exec = socket_path(dir, "exec", cwd)?;
    let mut c = Command::new(bin);
    c.arg("--config-file")
        .arg(&config)
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(exec)
        .arg("--pidfile")
        .arg(dir.join("dockerd.pid"))
        .arg("--host")
        .arg(format!("unix://{}", sock.display()))
        .args([
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--userland-proxy=false",
        ]);
    Ok(c)
}

/// buildkitd listens once its workers are up; dockerd listens early, so it must
/// answer `/_ping`.
async fn answers(d: &Daemon, sock: &Path) -> bool {
    let Ok(Ok(mut s)) = tokio::time::timeout(POLL * 4, UnixStream::connect(sock)).await else {
        return false;
    };
    if matches!(d, Daemon::Buildkitd(_)) {
        return true;
    }
    let ping = async {
        s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    match tokio::time::timeout(Duration::from_secs(1), ping).await {
        Ok(Ok(out)) => out.starts_with(b"HTTP/1.0 200") || out.starts_with(b"HTTP/1.1 200"),
        _ => false,
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Lazily unmounts what is still mounted under `dir` (deepest first).
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        if let Err(e) = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH) {
            warn!(mount = %p.display(), error = %e, "could not unmount what the engine left");
        }
    }
}
