//! Shared fixtures for the integration tests: the real Docker daemon and the real
//! registry that `scripts/test.sh` starts (`SLIPWAY_TEST_REGISTRY`).

pub mod buildkit;
pub mod controller;
pub mod daemon;
pub mod git;
pub mod git_http;
pub mod helm;
pub mod kube;
pub mod mesos;
pub mod mesos_agent;
pub mod mesos_double;
pub mod process;
pub mod resource;
pub mod watcher;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use slipway::api::DockerBuildSpec;
use slipway::registry::DockerConfig;
use slipway::runner::{BuildOutcome, BuildRequest, Builder, Runner};
use tokio::sync::OnceCell;

pub use daemon::{daemon_alone, daemon_shared};
pub use resource::Build;

/// The test registry, `127.0.0.1:PORT`.
pub fn registry() -> String {
    std::env::var("SLIPWAY_TEST_REGISTRY").unwrap_or_else(|_| {
        panic!("SLIPWAY_TEST_REGISTRY is not set: run the tests with scripts/test.sh, which starts dockerd and a registry")
    })
}

/// A static busybox binary for base images.
pub fn busybox() -> PathBuf {
    PathBuf::from(std::env::var("SLIPWAY_TEST_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".into()))
}

/// `REGISTRY/slipway-test/base:latest`: busybox on scratch, with `sh` and friends.
pub fn base_image() -> String {
    format!("{}/slipway-test/base:latest", registry())
}

static BASE: OnceCell<String> = OnceCell::const_new();

/// Builds and pushes the base image once per test run (the first test that asks).
pub async fn ensure_base() -> String {
    BASE.get_or_init(|| async {
        let fx = Fixture::new()
            .busybox("busybox")
            .file("Dockerfile", "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n");
        let spec = spec(&format!(
            "source: {{path: .}}\noutput: {{registry: '{}', repository: slipway-test/base}}",
            registry()
        ));
        let out = run(&fx, spec).await.expect("base image builds");
        out.image
    })
    .await;
    base_image()
}

/// A temporary directory with files in it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn file(self, rel: &str, content: &str) -> Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    pub fn busybox(self, rel: &str) -> Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(busybox(), p).expect("copy busybox");
        self
    }

    pub fn symlink(self, target: &str, rel: &str) -> Self {
        std::os::unix::fs::symlink(target, self.path(rel)).unwrap();
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }
}

/// A spec from YAML, as a user would write it.
pub fn spec(yaml: &str) -> DockerBuildSpec {
    slipway::yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad test spec: {e}\n{yaml}"))
}

/// The builder tests use: `SLIPWAY_BUILDER` (as the binary reads it), else auto.
pub fn builder() -> Builder {
    std::env::var("SLIPWAY_BUILDER")
        .map(|b| {
            b.parse()
                .expect("SLIPWAY_BUILDER is auto, buildkit-daemon or classic")
        })
        .unwrap_or_default()
}

pub async fn runner() -> Runner {
    Runner::connect(None, builder())
        .await
        .expect("docker daemon reachable")
}

/// Runs one build of `spec` with `fx` as the base directory.
pub async fn run(fx: &Fixture, spec: DockerBuildSpec) -> slipway::Result<BuildOutcome> {
    let base = Some(fx.dir.path().to_path_buf());
    run_on(&runner().await, "test/build", spec, base).await
}

/// Runs one build of an inline `dockerfile` into `repo` of the test registry;
/// `extra` is more spec YAML (`buildArgs: {...}`, `pull: Always`).
pub async fn run_inline(
    runner: &Runner,
    repo: &str,
    dockerfile: &str,
    extra: &str,
) -> slipway::Result<BuildOutcome> {
    let yaml = format!(
        "source: {{inline: {{dockerfile: {dockerfile:?}}}}}\noutput: {{registry: '{}', repository: {repo}}}\n{extra}",
        registry()
    );
    run_on(runner, &format!("test/{repo}"), spec(&yaml), None).await
}

/// A request for `spec` (its context under `base_dir`) as a source would make it:
/// no credentials, no previous build, no secrets.
pub fn request(key: &str, spec: DockerBuildSpec, base_dir: Option<PathBuf>) -> BuildRequest {
    BuildRequest {
        key: key.into(),
        spec,
        base_dir,
        auth: Arc::new(DockerConfig::default()),
        previous: None,
        secrets: Default::default(),
    }
}

/// Runs one build on `runner`, its events dropped.
pub async fn run_on(
    runner: &Runner,
    key: &str,
    spec: DockerBuildSpec,
    base_dir: Option<PathBuf>,
) -> slipway::Result<BuildOutcome> {
    let req = request(key, spec, base_dir);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let _daemon = daemon_shared().await;
    runner.run(req, tx, Default::default()).await
}

/// The test daemon, as bollard sees it.
pub async fn docker() -> Docker {
    Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// `s` in standard base64, as Basic auth and docker config.json want it.
pub fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The body of a GET of `url`, which must answer.
pub async fn get_text(url: &str) -> String {
    http().get(url).send().await.unwrap().text().await.unwrap()
}

/// The manifest `repo@digest` from the test registry, once each of `tags` serves
/// `digest` and the manifest's bytes hash to it.
pub async fn served_manifest(repo: &str, tags: &[&str], digest: &str) -> serde_json::Value {
    let reg = registry();
    let client = http();
    for tag in tags {
        let served = slipway::registry::manifest_digest(&client, &reg, repo, tag, None)
            .await
            .expect("registry answers");
        assert_eq!(served, digest, "{repo}:{tag}");
    }
    let manifest = client
        .get(format!("http://{reg}/v2/{repo}/manifests/{digest}"))
        // Docker 20.10 pushes Docker v2 manifests; a daemon on the containerd image
        // store (Docker 29's default) pushes OCI ones
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, \
             application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&manifest))),
        digest
    );
    serde_json::from_slice(&manifest).unwrap()
}

/// Checks what a user would: every tag serves the digest, the manifest's bytes hash
/// to it, its config is the image the daemon built, and it pulls back by digest.
pub async fn assert_pushed(out: &BuildOutcome) {
    let reg = registry();
    let (name, digest) = out.image.split_once('@').expect("image is name@digest");
    assert_eq!(digest, out.digest);
    let repo = name
        .strip_prefix(&format!("{reg}/"))
        .expect("image in the test registry");
    let tags: Vec<&str> = out
        .pushed_tags
        .iter()
        .map(|t| t.rsplit_once(':').unwrap().1)
        .collect();
    let m = served_manifest(repo, &tags, digest).await;
    let config_digest = m["config"]["digest"].as_str().unwrap().to_string();

    let docker = docker().await;
    let local = docker.inspect_image(&out.pushed_tags[0]).await.unwrap();
    assert_is_image(
        &local,
        out,
        &config_digest,
        "registry holds the built image",
    );

    let mut pull = docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(out.image.clone()),
            ..Default::default()
        }),
        None,
        None,
    );
    while let Some(item) = pull.next().await {
        item.expect("pull by digest");
    }
    let pulled = docker
        .inspect_image(&out.image)
        .await
        .expect("pulled image present");
    assert_is_image(&pulled, out, &config_digest, "pulled by digest");
}

/// `local` is the image `out` pushed. A daemon on the graph-driver store knows an
/// image by its config digest; one on the containerd store (Docker 29's default)
/// by its manifest, which it reports as the image's `Descriptor`.
fn assert_is_image(
    local: &bollard::models::ImageInspect,
    out: &BuildOutcome,
    config_digest: &str,
    what: &str,
) {
    match &local.descriptor {
        Some(d) => assert_eq!(d.digest.as_deref(), Some(out.digest.as_str()), "{what}"),
        None => assert_eq!(local.id.as_deref(), Some(config_digest), "{what}"),
    }
}

/// The build a DockerBuild's status reports (`status` as JSON, from a file or the API).
pub fn outcome(status: &serde_json::Value) -> BuildOutcome {
    BuildOutcome {
        digest: status["imageDigest"].as_str().unwrap().into(),
        image: status["image"].as_str().unwrap().into(),
        pushed_tags: status["pushedTags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().into())
            .collect(),
        revision: None,
        ..Default::default()
    }
}

/// Waits until `check` returns Some, or panics after `timeout` with `what`.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `status` of document `name` in a YAML file, as JSON. Read as text, so the
/// status of a document with broken YAML can be read too.
pub fn status_in(file: &Path, name: &str) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(file).ok()?;
    let doc = text.split("\n---\n").find(|d| {
        d.lines()
            .any(|l| l == format!("  name: {name}") || l.contains(&format!("{{name: {name}}}")))
    })?;
    let mut block = String::new();
    let mut inside = false;
    for line in doc.lines() {
        if line.starts_with("status:") {
            inside = true;
        } else if inside && !line.starts_with(' ') {
            break;
        }
        if inside {
            block.push_str(line);
            block.push('\n');
        }
    }
    let v: serde_json::Value = slipway::yaml::from_str(&block).ok()?;
    v.get("status").cloned()
}

/// The file's text without its `status:` blocks, to compare what the user wrote.
pub fn without_status(text: &str) -> String {
    let mut out = String::new();
    let mut in_status = false;
    for line in text.split_inclusive('\n') {
        if line.starts_with("status:") {
            in_status = true;
            continue;
        }
        if in_status && (line.starts_with(' ') || line.trim().is_empty()) {
            continue;
        }
        in_status = false;
        out.push_str(line);
    }
    out
}

/// The processes whose command line contains `marker`, with their descendants, as
/// (PID, command line): build steps run under dockerd on this machine, so they show in
/// its /proc.
pub fn processes_with(marker: &str) -> Vec<(u32, String)> {
    let cmdline = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
    };
    let mut found: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id())
        .filter(|&pid| cmdline(pid).is_some_and(|c| c.contains(marker)))
        .collect();
    let mut i = 0;
    while i < found.len() {
        let pid = found[i];
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
        found.extend(
            children
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
        i += 1;
    }
    found
        .into_iter()
        .filter_map(|pid| Some((pid, cmdline(pid)?)))
        .collect()
}

/// Which of `procs` (from [`processes_with`]) still run after waiting up to `within`
/// for them to end (a PID counts only while it runs the same command line).
pub async fn still_running(procs: &[(u32, String)], within: Duration) -> Vec<(u32, String)> {
    let alive = || -> Vec<(u32, String)> {
        procs
            .iter()
            .filter(|(pid, c)| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|now| String::from_utf8_lossy(&now).replace('\0', " ") == *c)
            })
            .cloned()
            .collect()
    };
    let deadline = Instant::now() + within;
    while !alive().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    alive()
}

/// What a user sees of `RUN echo 'cc: error: no input files' && exit 3` failing as
/// step 3/3, on any engine: the step, its exit code and output in the error, and the
/// step named in the progress while it ran.
pub fn assert_failing_step_named(
    out: slipway::Result<BuildOutcome>,
    events: &[slipway::runner::BuildEvent],
) {
    let err = out.unwrap_err();
    assert!(matches!(err, slipway::Error::BuildFailed(_)), "{err:?}");
    assert!(!err.is_retryable());
    let msg = err.to_string();
    assert!(
        msg.contains("step 3/3 `RUN echo 'cc: error: no input files' && exit 3` failed"),
        "{msg}"
    );
    assert!(msg.contains("exit code: 3"), "{msg}");
    assert!(msg.contains("output:\ncc: error: no input files"), "{msg}");
    assert!(
        events.iter().any(|e| matches!(
            e,
            slipway::runner::BuildEvent::Step(s) if s.starts_with("[3/3] RUN echo")
        )),
        "{events:#?}"
    );
}
