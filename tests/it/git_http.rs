//! `git` sources over smart HTTP with basic auth (`git http-backend` behind a test
//! server): fetched by gitoxide inside slipway, so no git binary is needed.

use std::path::Path;
use std::process::Command;

use crate::common::git::git;
use crate::common::git_http::{GitHttpServer, PASSWORD, USER};
use crate::common::*;
use slipway::runner::fetch;
use slipway::tls::GitTls;

/// A working copy in `server`'s directory pushing to `NAME.git`.
struct Work {
    dir: std::path::PathBuf,
}

impl Work {
    fn new(server: &GitHttpServer, name: &str) -> Self {
        let bare = server.bare(name);
        let dir = server.base().join(format!("{name}.work"));
        git(server.base(), &["init", "-q", dir.to_str().unwrap()]);
        git(&dir, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Self { dir }
    }

    fn write(&self, file: &str, content: &str) -> &Self {
        let p = self.dir.join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    /// Commits everything on the current branch and pushes it; returns the commit.
    fn commit(&self, msg: &str) -> String {
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "-q", "-m", msg]);
        git(&self.dir, &["push", "-q", "origin", "HEAD"]);
        git(&self.dir, &["rev-parse", "HEAD"])
    }

    fn run(&self, args: &[&str]) -> String {
        git(&self.dir, args)
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

async fn fetch_ok(url: &str, rev: Option<&str>, submodules: bool) -> (String, tempfile::TempDir) {
    let dest = tempfile::tempdir().unwrap();
    let out = fetch::git(
        url,
        rev,
        submodules,
        &dest.path().join("src"),
        &GitTls::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("fetch {rev:?}: {e}"));
    assert!(!dest.path().join("src/.git").exists(), ".git is removed");
    (out.commit.unwrap(), dest)
}

async fn fetch_err(url: &str, rev: Option<&str>) -> String {
    let dest = tempfile::tempdir().unwrap();
    let e = fetch::git(
        url,
        rev,
        false,
        &dest.path().join("src"),
        &GitTls::default(),
    )
    .await
    .expect_err("the fetch fails");
    eprintln!("{rev:?}: {e}");
    assert!(
        !dest.path().join("src").exists(),
        "a failed fetch leaves nothing behind"
    );
    e.to_string()
}

#[tokio::test]
async fn branch_tag_and_commit_over_http_with_basic_auth() {
    let server = GitHttpServer::start().await;
    let w = Work::new(&server, "app");
    w.write("file", "v1");
    let first = w.commit("one");
    w.run(&["tag", "-a", "v1", "-m", "release 1"]);
    w.run(&["push", "-q", "origin", "v1"]);
    w.write("file", "v2");
    let second = w.commit("two");
    w.run(&["checkout", "-q", "-b", "feature"]);
    w.write("file", "feature");
    let feature = w.commit("three");
    let url = server.url_with("app", PASSWORD);

    let (c, d) = fetch_ok(&url, None, false).await;
    assert_eq!(
        (c.as_str(), read(d.path(), "src/file").as_str()),
        (second.as_str(), "v2")
    );
    let (c, d) = fetch_ok(&url, Some("feature"), false).await;
    assert_eq!(
        (c.as_str(), read(d.path(), "src/file").as_str()),
        (feature.as_str(), "feature")
    );
    let (c, d) = fetch_ok(&url, Some("v1"), false).await;
    assert_eq!(
        (c.as_str(), read(d.path(), "src/file").as_str()),
        (first.as_str(), "v1")
    );
    // a commit that is no branch tip, in full and abbreviated
    let (c, d) = fetch_ok(&url, Some(&first), false).await;
    assert_eq!(
        (c.as_str(), read(d.path(), "src/file").as_str()),
        (first.as_str(), "v1")
    );
    let (c, _d) = fetch_ok(&url, Some(&first[..10]), false).await;
    assert_eq!(c, first);

    // the git trigger's lookup goes through the same server and credentials
    assert_eq!(
        slipway::triggers::ls_remote(&url, Some("v1"), &GitTls::default())
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        slipway::triggers::ls_remote(&url, None, &GitTls::default())
            .await
            .unwrap(),
        second
    );
}

#[tokio::test]
async fn wrong_password_and_missing_revision_are_named() {
    let server = GitHttpServer::start().await;
    let w = Work::new(&server, "app");
    w.write("file", "v1");
    w.commit("one");
    let shown = server.url("app");

    let m = fetch_err(&server.url_with("app", "wrong-pw"), Some("main")).await;
    assert!(m.contains("authentication failed"), "{m}");
    assert!(m.contains(&shown), "{m}");
    assert!(!m.contains("wrong-pw") && !m.contains(USER), "{m}");
    let m = fetch_err(&shown, Some("main")).await;
    assert!(
        m.contains("authentication failed"),
        "no credentials at all: {m}"
    );

    let m = fetch_err(&server.url_with("app", PASSWORD), Some("no-such-branch")).await;
    assert!(
        m.contains("no such revision") && m.contains("'no-such-branch'"),
        "{m}"
    );
    assert!(m.contains(&shown) && !m.contains(PASSWORD), "{m}");
    let m = fetch_err(&server.url_with("app", PASSWORD), Some("deadbeef")).await;
    assert!(
        m.contains("'deadbeef' not found") && m.contains(&shown),
        "{m}"
    );

    let m = fetch_err("http://127.0.0.1:1/app.git", Some("main")).await;
    assert!(m.contains("network"), "{m}");
}

#[tokio::test]
async fn submodules_are_fetched_at_their_recorded_commit() {
    let server = GitHttpServer::start().await;
    let lib = Work::new(&server, "lib");
    lib.write("lib.txt", "lib one");
    lib.commit("one");
    let app = Work::new(&server, "app");
    app.write("Dockerfile", "FROM scratch\n");
    // relative URL, resolved against the superproject's (as git does)
    app.run(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        server.base().join("lib.git").to_str().unwrap(),
        "vendor/lib",
    ]);
    app.run(&[
        "config",
        "-f",
        ".gitmodules",
        "submodule.vendor/lib.url",
        "../lib.git",
    ]);
    app.commit("with lib");
    // a later commit in the submodule's repository must not be picked up
    lib.write("lib.txt", "lib two");
    lib.commit("two");
    let url = server.url_with("app", PASSWORD);

    let (_, d) = fetch_ok(&url, Some("main"), true).await;
    assert_eq!(read(d.path(), "src/vendor/lib/lib.txt"), "lib one");
    assert!(!d.path().join("src/vendor/lib/.git").exists());

    let (_, d) = fetch_ok(&url, Some("main"), false).await;
    assert!(
        !d.path().join("src/vendor/lib/lib.txt").exists(),
        "submodules only when asked for"
    );
}

/// `slipway build` with a PATH that holds no git: the fetch and the build work
/// without the binary, credentials come from `--git-credentials`, and a wrong
/// password fails clearly without showing it.
#[tokio::test]
async fn build_from_http_with_no_git_on_path() {
    let base = ensure_base().await;
    let reg = registry();
    let server = GitHttpServer::start().await;
    let w = Work::new(&server, "app");
    w.write(
        "docker/app/Dockerfile",
        &format!("FROM {base}\nCOPY v.txt /v.txt\n"),
    );
    w.write("docker/app/v.txt", "one\n");
    let commit = w.commit("one");

    let fx = Fixture::new()
        .file(
            "build.yaml",
            &Build::new("viahttp")
                .git(&server.url("app"), Some("main"), Some("docker/app"))
                .push_to_registry(&reg, "slipway-test/git-http")
                .yaml(),
        )
        .file(
            "good-creds",
            &format!(
                "https://other:x@example.org\nhttp://{USER}:{PASSWORD}@127.0.0.1:{}\n",
                server.port
            ),
        )
        .file(
            "bad-creds",
            &format!("http://{USER}:wrong-pw@127.0.0.1:{}\n", server.port),
        );
    let empty_path = tempfile::tempdir().unwrap();
    // async: the git server runs on this test's runtime
    let run = |creds: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
            .arg("build")
            .arg(fx.path("build.yaml"))
            .arg("--git-credentials")
            .arg(fx.path(creds))
            .env("PATH", empty_path.path())
            // no system CA bundle either, as in the controller image
            .env("SSL_CERT_FILE", empty_path.path().join("none.pem"))
            .env("SSL_CERT_DIR", empty_path.path())
            .output()
    };
    assert!(
        Command::new("git")
            .env("PATH", empty_path.path())
            // no system CA bundle either, as in the controller image
            .env("SSL_CERT_FILE", empty_path.path().join("none.pem"))
            .env("SSL_CERT_DIR", empty_path.path())
            .output()
            .is_err(),
        "no git on this PATH"
    );

    let out = run("good-creds").await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let image = stdout.lines().next().unwrap().split_once(": ").unwrap().1;
    let labels = docker()
        .await
        .inspect_image(image)
        .await
        .unwrap()
        .config
        .and_then(|c| c.labels)
        .unwrap_or_default();
    assert_eq!(
        labels.get("org.opencontainers.image.revision"),
        Some(&commit)
    );

    let out = run("bad-creds").await.unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("authentication failed"), "{all}");
    assert!(all.contains(&server.url("app")), "{all}");
    assert!(!all.contains("wrong-pw"), "{all}");
}

/// The same inside the controller image (`SLIPWAY_TEST_IMAGE`, scripts/image.sh: a
/// static binary on scratch, no git): `slipway build` of a git source over http.
#[tokio::test]
async fn git_source_builds_inside_the_controller_image() {
    let image = std::env::var("SLIPWAY_TEST_IMAGE").unwrap_or_else(|_| {
        panic!("SLIPWAY_TEST_IMAGE is not set: run the tests with scripts/test.sh, which builds the image with scripts/image.sh")
    });
    let base = ensure_base().await;
    let reg = registry();
    let server = GitHttpServer::start().await;
    let w = Work::new(&server, "app");
    w.write("Dockerfile", &format!("FROM {base}\nCOPY v.txt /v.txt\n"));
    w.write("v.txt", "one\n");
    w.commit("one");
    let fx = Fixture::new()
        .file(
            "build.yaml",
            &Build::new("inimage")
                .git(&server.url("app"), Some("main"), None)
                .push_to_registry(&reg, "slipway-test/git-image")
                .yaml(),
        )
        .file(
            "creds",
            &format!("http://{USER}:{PASSWORD}@127.0.0.1:{}\n", server.port),
        );
    let mount = format!("{}:/work:ro", fx.dir.path().display());
    let out = tokio::process::Command::new("docker")
        .args(["run", "--rm", "--network", "host", "-v"])
        .arg("/var/run/docker.sock:/var/run/docker.sock")
        .args(["-v", &mount, &image])
        .args([
            "build",
            "/work/build.yaml",
            "--git-credentials",
            "/work/creds",
        ])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{reg}/slipway-test/git-image@sha256:")),
        "{stdout}"
    );
}
