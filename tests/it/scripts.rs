//! The project's own setup scripts, driven with stand-in daemons so a slow or hung
//! start can be staged on purpose.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn write_exec(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A `dockerd` stand-in that logs `lines` lines (0.3 s apart) before it answers,
/// and a `docker` client that answers once it has. `lines = None`: never answers
/// and stays silent, like a hung daemon.
fn fake_docker(dir: &Path, lines: Option<u32>) {
    let ready = dir.join("ready");
    let startup = match lines {
        Some(n) => format!(
            "for i in $(seq 1 {n}); do echo \"Removing stale sandbox $i\"; sleep 0.3; done\ntouch {}\n",
            ready.display()
        ),
        None => String::new(),
    };
    write_exec(
        &dir.join("dockerd"),
        &format!(
            "#!/bin/bash\nwhile [ $# -gt 0 ]; do [ \"$1\" = --pidfile ] && echo $$ > \"$2\"; shift; done\n{startup}sleep 600 & trap 'kill $!; exit' TERM; wait\n"
        ),
    );
    write_exec(
        &dir.join("docker"),
        &format!(
            "#!/bin/bash\n[ -e {} ] || exit 1\necho overlay2\n",
            ready.display()
        ),
    );
}

fn ensure_docker(dir: &Path, args: &[&str]) -> Output {
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ensure-docker.sh"))
        .args(args)
        .env("PATH", path)
        .env("DOCKER", dir.join("docker"))
        .env("SLIPWAY_STATE", dir.join("state"))
        .env("SLIPWAY_DOCKERD_TIMEOUT", "2")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A dockerd killed with hundreds of build sandboxes spends a minute removing them
/// before it answers; the start must wait for it rather than give up and kill it.
#[test]
fn a_daemon_still_cleaning_up_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    fake_docker(dir.path(), Some(15)); // ~4.5 s of log lines, longer than the 2 s timeout
    let out = ensure_docker(dir.path(), &["start"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("dockerd is up"), "{said}");
    let stop = ensure_docker(dir.path(), &["stop"]);
    assert!(text(&stop).contains("dockerd stopped"), "{}", text(&stop));
}

/// A daemon that neither answers nor writes anything is given up on, with the reason.
#[test]
fn a_silent_daemon_is_given_up_on_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    fake_docker(dir.path(), None);
    let out = ensure_docker(dir.path(), &["start"]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("did not answer: silent for"), "{said}");
    let pid: i32 = std::fs::read_to_string(dir.path().join("state/dockerd/dockerd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Stopped: give the TERM a moment to land.
    let gone = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_or(true, |s| s.contains("State:\tZ"))
    });
    assert!(gone, "the stand-in dockerd {pid} still runs");
}
