//! `--staging registry|s3`: a `path` build on a real Mesos agent with no context
//! server of slipway's to reach. The context goes through the build's own registry
//! (a registry of the test's own, with deletes on) or a real S3 server (SeaweedFS's
//! `weed`, built by scripts/ensure-seaweedfs.sh), and is gone once the build ended.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::mesos::{MesosCluster, free_port, watch_on_mesos};
use crate::common::process::Process;
use crate::common::watcher::*;
use crate::common::*;

const SECRET: &str = "s3cr3t-staging-only-in-task-data";

fn start(dir: &Path, master: &str, extra: &[&str], envs: &[(&str, &str)]) -> Watcher {
    watch_on_mesos(dir, master, extra, envs)
}

/// A folder with one `path` build pushing to `reg`, with a docker config holding SECRET.
fn path_build(reg: &str, repository: &str) -> Fixture {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("builder:{SECRET}"));
    Fixture::new()
        .file(
            "docker-config.json",
            &format!(r#"{{"auths":{{"{reg}":{{"auth":"{auth}"}}}}}}"#),
        )
        .file(
            "local.yaml",
            &doc(
                "local",
                &indent(&format!(
                    "source: {{path: ctx}}\noutput:\n  registry: '{reg}'\n  repository: {repository}\n  pushSecretRef: {{path: docker-config.json}}"
                )),
            ),
        )
        .file("ctx/Dockerfile", "FROM scratch\nCOPY hello.txt /hello.txt\n")
        .file("ctx/hello.txt", "context staged away from slipway\n")
}

/// The context server never started, the secret is in no task state or log.
async fn assert_no_server_and_no_secret(w: &Watcher, cluster: &MesosCluster, secret: &str) {
    let log = w.log();
    assert!(
        !log.contains("serving path-source contexts"),
        "the context server started:\n{log}"
    );
    let (state, _) = cluster.state().await;
    assert!(
        !state.contains(secret),
        "the master's /state shows the secret"
    );
    assert!(!log.contains(secret), "the log shows the secret");
    // the agent's (in-process, so on the master's port): executors with their
    // command and environment, the task that ran
    let agent = get_text(&format!("http://{}/slave(1)/state", cluster.master())).await;
    assert!(agent.contains("build tests/local"), "{agent}");
    assert!(
        !agent.contains(secret),
        "the agent's /state shows the secret"
    );
}

/// `digest=sha256:…` of the log line with `marker`.
fn logged_digest(log: &str, marker: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no '{marker}' in the log:\n{log}"));
    let at = line.find("digest=").expect("a digest field") + "digest=".len();
    line[at..]
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// A registry of this test's own (scripts/registry.sh, deletes enabled), stopped on drop.
struct OwnRegistry {
    dir: tempfile::TempDir,
    addr: String,
}

impl OwnRegistry {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .args(["scripts/registry.sh", "start", "--dir"])
            .arg(dir.path())
            .args(["--port", &free_port().to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let addr = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_string();
        Self { dir, addr }
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args(["scripts/registry.sh", "stop", "--dir"])
            .arg(self.dir.path())
            .output();
    }
}

#[tokio::test]
async fn a_path_build_stages_its_context_in_the_registry_and_deletes_it() {
    let reg = OwnRegistry::start();
    let cluster = MesosCluster::start(1);
    let repo = "slipway-test/staged-registry";
    let fx = path_build(&reg.addr, repo);
    let w = start(
        fx.dir.path(),
        &cluster.master(),
        &["--staging", "registry"],
        &[],
    );

    let status = phase_of(&fx.path("local.yaml"), "local", "Succeeded").await;
    let out = outcome(&status);
    assert!(out.image.starts_with(&reg.addr), "{}", out.image);
    let log = w.log();
    let manifest = logged_digest(&log, "context staged in the registry");
    assert_ne!(
        out.image.split('@').nth(1),
        Some(manifest.as_str()),
        "the staged artifact is not the image"
    );

    // the artifact is deleted once the build ended (the status is written after)
    let url = format!("http://{}/v2/{repo}/manifests/{manifest}", reg.addr);
    let accept = "application/vnd.oci.image.manifest.v1+json";
    let code = http()
        .get(&url)
        .header("Accept", accept)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(code, 404, "the staged manifest is still there");
    assert_no_server_and_no_secret(&w, &cluster, SECRET).await;
}

/// SeaweedFS's S3 gateway on free loopback ports, with one identity (so requests must
/// be signed) and one bucket; stopped on drop.
struct Weed {
    process: Process,
    _dir: tempfile::TempDir,
    s3: u16,
    filer: u16,
}

const WEED_KEY: &str = "slipway-test-key";
const WEED_SECRET: &str = "weed-s3cr3t-never-in-task-data";
const BUCKET: &str = "staging";

fn weed_bin() -> PathBuf {
    PathBuf::from(std::env::var("SLIPWAY_TEST_WEED").unwrap_or_else(|_| {
        panic!("SLIPWAY_TEST_WEED is not set: scripts/ensure-seaweedfs.sh prints the weed to use")
    }))
}

impl Weed {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            serde_json::json!({"identities": [{
                "name": "slipway",
                "credentials": [{"accessKey": WEED_KEY, "secretKey": WEED_SECRET}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]
            }]})
            .to_string(),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let (s3, filer) = (free_port(), free_port());
        let port = |name: &str, p: u16| format!("-{name}={p}");
        let mut cmd = Command::new(weed_bin());
        cmd.arg("server")
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-filer", "-s3"])
            .arg(format!("-dir={}", dir.path().join("data").display()))
            .arg(format!("-s3.config={}", config.display()))
            .args([
                port("master.port", free_port()),
                port("master.port.grpc", free_port()),
                port("volume.port", free_port()),
                port("volume.port.grpc", free_port()),
                port("filer.port", filer),
                port("filer.port.grpc", free_port()),
                port("s3.port", s3),
                port("s3.port.grpc", free_port()),
            ])
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.volumeSizeLimitMB=64",
                "-volume.max=4",
            ]);
        let w = Self {
            process: Process::spawn("weed", cmd),
            _dir: dir,
            s3,
            filer,
        };
        // a bucket is a directory under /buckets of the filer
        let mkdir = format!("http://127.0.0.1:{filer}/buckets/{BUCKET}/");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut bucket = false;
        loop {
            if !bucket && let Ok(r) = http().post(&mkdir).send().await {
                bucket = r.status().is_success();
            }
            if bucket && reqwest::get(w.s3_url()).await.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "weed did not start: {}",
                last_lines(&w.process.log())
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        w
    }

    fn s3_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3)
    }

    /// Names of the objects under `prefix` in the bucket, read through the filer.
    async fn objects(&self, prefix: &str) -> Vec<String> {
        let url = format!("http://127.0.0.1:{}/buckets/{BUCKET}/{prefix}/", self.filer);
        let resp = http()
            .get(&url)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        if resp.status() == 404 {
            return vec![];
        }
        let v: serde_json::Value = resp.json().await.unwrap();
        v["Entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["FullPath"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

#[tokio::test]
async fn a_path_build_stages_its_context_in_s3_and_removes_it() {
    let weed = Weed::start().await;
    // the S3 server wants signed requests: an anonymous read is refused
    let anon = reqwest::get(format!("{}/{BUCKET}/", weed.s3_url()))
        .await
        .unwrap();
    assert_eq!(anon.status(), 403);

    // the listing sees what is there (else an empty answer would prove nothing)
    let probe = format!(
        "http://127.0.0.1:{}/buckets/{BUCKET}/ctx/probe.txt",
        weed.filer
    );
    let put = http().put(&probe).body("probe").send().await.unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    assert_eq!(
        weed.objects("ctx").await,
        vec![format!("/buckets/{BUCKET}/ctx/probe.txt")]
    );
    http().delete(&probe).send().await.unwrap();

    let cluster = MesosCluster::start(1);
    let fx = path_build(&registry(), "slipway-test/staged-s3");
    let endpoint = weed.s3_url();
    let w = start(
        fx.dir.path(),
        &cluster.master(),
        &[
            "--staging",
            "s3",
            "--staging-uri",
            &format!("s3://{BUCKET}/ctx"),
        ],
        &[
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", WEED_KEY),
            ("AWS_SECRET_ACCESS_KEY", WEED_SECRET),
        ],
    );

    let status = phase_of(&fx.path("local.yaml"), "local", "Succeeded").await;
    assert_pushed(&outcome(&status)).await;
    let log = w.log();
    assert!(log.contains("context staged in S3"), "{log}");
    // removed before the status was written
    assert_eq!(weed.objects("ctx").await, Vec::<String>::new());
    assert_no_server_and_no_secret(&w, &cluster, WEED_SECRET).await;
}
