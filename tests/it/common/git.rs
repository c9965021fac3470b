//! A real git server: `git daemon` (Debian's git) serving bare repositories on a free
//! 127.0.0.1 port, stopped when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs git with a fixed identity and none of the user's configuration.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs (install Debian's git)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `git daemon --export-all` over a directory of bare repositories.
pub struct GitServer {
    child: Child,
    port: u16,
    base: PathBuf,
    _dir: tempfile::TempDir,
}

impl GitServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("repos");
        std::fs::create_dir(&base).unwrap();
        // The free port may be taken between our probe and the daemon's bind: retry.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new("git")
                .arg("daemon")
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg("--export-all")
                .arg("--reuseaddr")
                .arg("--informative-errors")
                .arg(format!("--base-path={}", base.display()))
                .arg(&base)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("git daemon starts (Debian's git)");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        child,
                        port,
                        base,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("git daemon did not start");
    }

    /// A new repository `name` with one commit on `main` (file `Dockerfile`).
    pub fn repo(&self, name: &str, dockerfile: &str) -> Repo {
        let bare = self.base.join(format!("{name}.git"));
        git(
            &self.base,
            &["init", "-q", "--bare", bare.to_str().unwrap()],
        );
        let work = self.base.join(format!("{name}.work"));
        git(&self.base, &["init", "-q", work.to_str().unwrap()]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let repo = Repo {
            url: format!("git://127.0.0.1:{}/{name}.git", self.port),
            work,
        };
        repo.commit("Dockerfile", dockerfile);
        repo
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A repository the server serves, with a working copy to make commits in.
pub struct Repo {
    /// `git://127.0.0.1:PORT/NAME.git`
    pub url: String,
    work: PathBuf,
}

impl Repo {
    /// Writes `file` on `main`, commits and pushes; returns the new commit.
    pub fn commit(&self, file: &str, content: &str) -> String {
        self.commit_on("main", file, content)
    }

    /// The same on `branch` (created from the current commit when new).
    pub fn commit_on(&self, branch: &str, file: &str, content: &str) -> String {
        let succeeds = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(&self.work)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let branch_ref = format!("refs/heads/{branch}");
        if succeeds(&["rev-parse", "--verify", "-q", &branch_ref]) {
            git(&self.work, &["checkout", "-q", branch]);
        } else if succeeds(&["rev-parse", "--verify", "-q", "HEAD"]) {
            git(&self.work, &["checkout", "-q", "-b", branch]);
        } else {
            git(&self.work, &["checkout", "-q", "--orphan", branch]);
        }
        let path = self.work.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, content).unwrap();
        git(&self.work, &["add", "--", file]);
        git(
            &self.work,
            &["commit", "-q", "-m", &format!("{file}: {content}")],
        );
        git(
            &self.work,
            &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// An annotated tag on the current commit, pushed; returns the commit it names.
    pub fn tag(&self, name: &str) -> String {
        git(&self.work, &["tag", "-a", name, "-m", name]);
        git(
            &self.work,
            &["push", "-q", "origin", &format!("refs/tags/{name}")],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }
}
