//! The runner on a standalone buildkitd (`--builder buildkitd`), against the real
//! buildkitd (`SLIPWAY_TEST_BUILDKIT_ADDR`, mutual TLS with the certificates in
//! `SLIPWAY_TEST_BUILDKIT_DIR`) and the real registry.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::buildkit::*;
use crate::common::process::Process;
use crate::common::*;
use sha2::Digest;
use slipway::Error;
use slipway::registry::DockerConfig;
use slipway::runner::{
    BuildEvent, BuildOutcome, BuildRequest, BuildSecrets, Builder, BuildkitdArgs, Runner,
};

/// The shared test buildkitd, over TCP with mutual TLS.
fn buildkitd() -> BuildkitdArgs {
    let addr = std::env::var("SLIPWAY_TEST_BUILDKIT_ADDR").unwrap_or_else(|_| {
        panic!("SLIPWAY_TEST_BUILDKIT_ADDR is not set: run the tests with scripts/test.sh, which starts buildkitd")
    });
    tls_for(&addr, &PathBuf::from(std::env::var("SLIPWAY_TEST_BUILDKIT_DIR").unwrap_or_else(|_| {
        panic!("SLIPWAY_TEST_BUILDKIT_DIR (ca.pem, cert.pem, key.pem) is not set: run the tests with scripts/test.sh")
    })))
}

/// `addr` with the client certificates scripts/buildkitd.sh left in `dir`.
fn tls_for(addr: &str, dir: &std::path::Path) -> BuildkitdArgs {
    BuildkitdArgs {
        addr: Some(addr.into()),
        ca: Some(dir.join("ca.pem")),
        cert: Some(dir.join("cert.pem")),
        key: Some(dir.join("key.pem")),
        ..Default::default()
    }
}

fn request(
    fx: &Fixture,
    spec: slipway::api::DockerBuildSpec,
    secrets: BuildSecrets,
) -> BuildRequest {
    let base_dir = Some(fx.dir.path().to_path_buf());
    BuildRequest {
        secrets,
        ..crate::common::request("test/buildkitd", spec, base_dir)
    }
}

/// Runs one build on `bk` (and no Docker daemon: its address leads nowhere),
/// returning its result and every event it sent.
async fn run_with(
    bk: &BuildkitdArgs,
    req: BuildRequest,
) -> (slipway::Result<BuildOutcome>, Vec<BuildEvent>) {
    let runner = Runner::connect_with(Some(NO_DOCKER), Builder::Buildkitd, bk)
        .await
        .expect("buildkitd settings accepted");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let collect = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let out = {
        let _daemon = daemon_shared().await;
        runner.run(req, tx, Default::default()).await
    };
    (out, collect.await.unwrap())
}

async fn run_bk(
    fx: &Fixture,
    spec: slipway::api::DockerBuildSpec,
) -> (slipway::Result<BuildOutcome>, Vec<BuildEvent>) {
    run_with(&buildkitd(), request(fx, spec, Default::default())).await
}

/// A Docker daemon address that does not exist.
const NO_DOCKER: &str = "unix:///nonexistent/slipway-test/docker.sock";

/// `output:` for a test repository.
fn output(repo: &str) -> String {
    format!(
        "output: {{registry: '{}', repository: slipway-test/{repo}}}",
        registry()
    )
}

const SLEEP: u64 = 3;

#[tokio::test]
async fn stages_run_in_parallel_and_unused_ones_never_run() {
    let base = ensure_base().await;
    let dockerfile = multi_stage(&base, "bkd-multistage", "bkd", SLEEP);
    let fx = Fixture::new().file("ctx/Dockerfile", &dockerfile);
    let started = Instant::now();
    let (out, events) = run_bk(&fx, spec("source: {path: ctx}\nnoCache: true")).await;
    let took = started.elapsed();
    let out = out.expect("multi-stage build succeeds on buildkitd");
    // the directive lines were stripped and still name the target
    assert_eq!(
        out.pushed_tags,
        vec![format!("{}/slipway-test/bkd-multistage:bkd", registry())]
    );
    assert_in_registry(&out).await;
    assert_stages_overlapped(&events, took, SLEEP);
}

#[tokio::test]
async fn heredocs_and_cache_mounts_work() {
    let base = ensure_base().await;
    let fx = Fixture::new().file(
        "ctx/Dockerfile",
        &format!(
            "FROM {base}\n\
RUN <<EOF\necho line-one > /heredoc\necho line-two >> /heredoc\nEOF\n\
RUN --mount=type=cache,target=/root/.cache touch /root/.cache/x && echo cached > /out\n"
        ),
    );
    let (out, _) = run_bk(
        &fx,
        spec(&format!("source: {{path: ctx}}\n{}", output("bkd-heredoc"))),
    )
    .await;
    let out = out.expect("heredoc and RUN --mount build on buildkitd");
    assert_in_registry(&out).await;
    let text = run_in_image(&out.image, "cat /heredoc /out").await;
    assert_eq!(text, "line-one\nline-two\ncached\n");
}

/// Checks what a user would: every tag serves the digest and the manifest's bytes
/// hash to it (buildkitd pushes OCI manifests, which the Docker daemon never held).
async fn assert_in_registry(out: &BuildOutcome) {
    let reg = registry();
    let (name, digest) = out.image.split_once('@').expect("image is name@digest");
    assert_eq!(digest, out.digest);
    let repo = name
        .strip_prefix(&format!("{reg}/"))
        .expect("test registry");
    for tag_ref in &out.pushed_tags {
        let tag = tag_ref.rsplit_once(':').unwrap().1;
        let served = slipway::registry::manifest_digest(&http(), &reg, repo, tag, None)
            .await
            .expect("registry answers");
        assert_eq!(served, out.digest, "{tag_ref}");
    }
    let manifest = slipway::registry::manifest(&http(), &reg, repo, digest, None)
        .await
        .unwrap();
    assert_eq!(
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&manifest))),
        out.digest
    );
}

/// What `sh -c script` prints in a container of `image` (pulled by the daemon).
async fn run_in_image(image: &str, script: &str) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            image,
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("docker run");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_failing_step_is_named_with_its_output() {
    let base = ensure_base().await;
    let fx = Fixture::new().file(
        "ctx/Dockerfile",
        &format!(
            "FROM {base}\nRUN echo compiling\nRUN echo 'cc: error: no input files' && exit 3\n"
        ),
    );
    let (out, events) = run_bk(
        &fx,
        spec(&format!(
            "source: {{path: ctx}}\nnoCache: true\n{}",
            output("bkd-fails")
        )),
    )
    .await;
    assert_failing_step_named(out, &events);
}

#[tokio::test]
async fn cancelling_stops_the_step_in_buildkitd() {
    let (fx, marker) = sleeping_step().await;
    let req = request(
        &fx,
        spec(&format!("source: {{path: ctx}}\n{}", output("bkd-cancel"))),
        Default::default(),
    );
    let runner = Runner::connect_with(Some(NO_DOCKER), Builder::Buildkitd, &buildkitd())
        .await
        .unwrap();
    let (out, _, step) = cancelled_mid_step(runner, req, &marker, Duration::from_secs(2)).await;
    assert!(matches!(out, Err(Error::Cancelled(_))), "{out:?}");
    // left alone, the step would sleep for 28 s more
    let left = still_running(&step, Duration::from_secs(10)).await;
    assert!(
        left.is_empty(),
        "buildkitd kept building after the cancel: {left:?} still run"
    );
}

#[tokio::test]
async fn no_docker_daemon_is_needed() {
    // nothing here comes from the Docker daemon: the base is busybox from the context
    let fx = Fixture::new().busybox("ctx/busybox").file(
        "ctx/Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo built > /built\"]\n",
    );
    let (out, _) = run_bk(
        &fx,
        spec(&format!(
            "source: {{path: ctx}}\n{}",
            output("bkd-nodocker")
        )),
    )
    .await;
    let out = out.expect("builds without a Docker daemon");
    assert!(out.digest.starts_with("sha256:"), "{out:?}");
    let served = slipway::registry::manifest_digest(
        &http(),
        &registry(),
        "slipway-test/bkd-nodocker",
        "latest",
        None,
    )
    .await
    .unwrap();
    assert_eq!(served, out.digest);
    // and the Docker address really leads nowhere
    let classic = Runner::connect_with(Some(NO_DOCKER), Builder::Classic, &buildkitd()).await;
    assert!(
        matches!(classic, Err(Error::Docker(_))),
        "{:?}",
        classic.err()
    );
}

#[tokio::test]
async fn an_unreachable_buildkitd_is_retried_and_named() {
    let fx = Fixture::new().file("ctx/Dockerfile", "FROM scratch\n");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("tcp://127.0.0.1:{port}");
    let mut bk = buildkitd();
    bk.addr = Some(addr.clone());
    let (out, _) = run_with(
        &bk,
        request(
            &fx,
            spec(&format!("source: {{path: ctx}}\n{}", output("bkd-down"))),
            Default::default(),
        ),
    )
    .await;
    let err = out.unwrap_err();
    assert!(matches!(err, Error::Buildkit(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&addr), "{err}");
}

/// The uncompressed tars of `image`'s layers (`name@digest`, one platform).
async fn layers(image: &str) -> Vec<Vec<u8>> {
    let reg = registry();
    let (name, digest) = image.split_once('@').unwrap();
    let repo = name.strip_prefix(&format!("{reg}/")).unwrap();
    let manifest = slipway::registry::manifest(&http(), &reg, repo, digest, None)
        .await
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut out = Vec::new();
    for l in m["layers"].as_array().expect("an image manifest") {
        let blob = http()
            .get(format!(
                "http://{reg}/v2/{repo}/blobs/{}",
                l["digest"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut tar)
            .expect("gzip layer");
        out.push(tar);
    }
    out
}

/// The content of `path` in the last layer of `tars` that holds it.
fn file_in(tars: &[Vec<u8>], path: &str) -> Option<String> {
    let mut found = None;
    for t in tars {
        let mut a = tar::Archive::new(&t[..]);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy().trim_start_matches("./") == path {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                found = Some(s);
            }
        }
    }
    found
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_secret_is_mounted_for_its_step_and_lands_nowhere() {
    let base = ensure_base().await;
    let value = format!("s3cret-{}", uuid::Uuid::new_v4().simple());
    let fx = Fixture::new().file(
        "ctx/Dockerfile",
        &format!(
            "FROM {base}\nRUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -d' ' -f1 > /tok.sha256\n"
        ),
    );
    let spec = spec(&format!(
        // BuildKit keys a step's cache without its secrets' values: a step cached
        // from an earlier run would hold that run's hash
        "source: {{path: ctx}}\nnoCache: true\nsecrets: [{{id: tok, file: tok.txt}}]\n{}",
        output("bkd-secret")
    ));
    let secrets = BuildSecrets([("tok".to_string(), value.clone().into_bytes())].into());
    let (out, events) = run_with(&buildkitd(), request(&fx, spec.clone(), secrets)).await;
    let out = out.expect("a build with a secret succeeds");
    assert_in_registry(&out).await;
    let tars = layers(&out.image).await;
    assert_eq!(
        file_in(&tars, "tok.sha256").expect("the step wrote the hash"),
        format!("{}\n", hex::encode(sha2::Sha256::digest(value.as_bytes())))
    );
    for (i, t) in tars.iter().enumerate() {
        assert!(!contains(t, value.as_bytes()), "the secret is in layer {i}");
    }
    let outcome = serde_json::to_string(&out).unwrap();
    assert!(!outcome.contains(&value), "{outcome}");
    let log = format!("{events:?}");
    assert!(!log.contains(&value), "the secret is in the events");

    // a secret the Dockerfile mounts but the build was not given is refused by id
    let (out, _) = run_with(&buildkitd(), request(&fx, spec, Default::default())).await;
    let err = out.unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
    assert!(err.to_string().contains("'tok'"), "{err}");
}

/// A buildkitd of the test's own, stopped when dropped.
struct OwnBuildkitd {
    dir: tempfile::TempDir,
    args: BuildkitdArgs,
}

impl OwnBuildkitd {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("slipway-bk-")
            .tempdir_in("/tmp")
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = std::process::Command::new("bash")
            .args(["scripts/buildkitd.sh", "start", "--dir"])
            .arg(dir.path())
            .args(["--port", &port.to_string()])
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("scripts/buildkitd.sh runs");
        assert!(out.status.success(), "buildkitd did not start: {out:?}");
        let addr = String::from_utf8(out.stdout).unwrap();
        let addr = addr.lines().last().unwrap().trim().to_string();
        let args = tls_for(&addr, dir.path());
        Self { dir, args }
    }
}

impl OwnBuildkitd {
    /// Stops it; what scripts/buildkitd.sh said.
    fn stop(&self) -> String {
        let out = std::process::Command::new("bash")
            .args(["scripts/buildkitd.sh", "stop", "--dir"])
            .arg(self.dir.path())
            .output()
            .expect("scripts/buildkitd.sh runs");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for OwnBuildkitd {
    fn drop(&mut self) {
        self.stop();
    }
}

// multi-threaded: stopping the second buildkitd blocks this thread, and the client's
// connections must still answer its goodbye
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_cache_lets_another_buildkitd_skip_every_step() {
    let base = ensure_base().await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let fx = Fixture::new().file(
        "ctx/Dockerfile",
        &format!(
            "FROM {base}\nRUN echo {marker} > /marker && sleep 1\nRUN echo second > /second\n"
        ),
    );
    let spec = spec(&format!(
        "source: {{path: ctx}}\ncache: {{ref: '{}/slipway-test/bkd-cache:buildcache', mode: max}}\n{}",
        registry(),
        output("bkd-cache")
    ));
    let (first, events) = run_bk(&fx, spec.clone()).await;
    let first = first.expect("the first build exports its cache");
    let steps = |events: &[BuildEvent]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                BuildEvent::Step(s) if s.contains(" RUN ") => Some(s.clone()),
                _ => None,
            })
            .collect()
    };
    // the marker makes the first build run its steps
    assert!(
        steps(&events).iter().all(|s| !s.starts_with("CACHED")),
        "{events:#?}"
    );

    let other = OwnBuildkitd::start();
    let (second, events) = run_with(&other.args, request(&fx, spec, Default::default())).await;
    let second = second.expect("the second buildkitd builds with the imported cache");
    let steps = steps(&events);
    assert_eq!(steps.len(), 2, "{events:#?}");
    assert!(
        steps.iter().all(|s| s.starts_with("CACHED")),
        "steps ran on the second buildkitd: {steps:#?}"
    );
    assert_eq!(
        second.digest, first.digest,
        "the same image, from the cache"
    );
    // what status.stages shows: the steps ran on the first buildkitd, cached on the second
    let runs = |o: &BuildOutcome| -> Vec<(bool, bool)> {
        o.stages
            .iter()
            .filter(|s| s.name.contains(" RUN "))
            .map(|s| (s.cached, s.duration_seconds.is_some()))
            .collect()
    };
    assert_eq!(runs(&first), [(false, true); 2], "{:#?}", first.stages);
    assert_eq!(runs(&second), [(true, false); 2], "{:#?}", second.stages);
    // A finished build leaves no call open on buildkitd (its session ended with it):
    // buildkitd stops at once instead of waiting for them and being killed.
    let said = other.stop();
    assert!(
        !said.contains("SIGKILL"),
        "buildkitd had calls left open: {said}"
    );
}

#[tokio::test]
async fn platforms_make_an_index_with_each_platform() {
    let bb386 = std::env::var("SLIPWAY_TEST_BUSYBOX_386").unwrap_or_else(|_| {
        panic!("SLIPWAY_TEST_BUSYBOX_386 is not set: scripts/test.sh sets it (scripts/ensure-busybox-386.sh)")
    });
    let fx = Fixture::new().busybox("ctx/busybox-amd64").file(
        "ctx/Dockerfile",
        "FROM scratch\nARG TARGETARCH\nCOPY busybox-$TARGETARCH /bin/busybox\n\
RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $TARGETARCH > /arch\"]\n",
    );
    std::fs::copy(&bb386, fx.path("ctx/busybox-386")).unwrap();
    let (out, _) = run_bk(
        &fx,
        spec(&format!(
            "source: {{path: ctx}}\nplatforms: [linux/amd64, linux/386]\nattest: {{provenance: max}}\n{}",
            output("bkd-platforms")
        )),
    )
    .await;
    let out = out.expect("a two-platform build with provenance succeeds");
    assert_in_registry(&out).await;
    let platforms: Vec<&str> = out.platforms.iter().map(|p| p.platform.as_str()).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/386"], "{out:?}");
    // each platform's image is in the registry; its step ran its own busybox
    let name = out.image.split_once('@').unwrap().0;
    for (p, arch) in out.platforms.iter().zip(["amd64", "386"]) {
        let tars = layers(&format!("{name}@{}", p.digest)).await;
        assert_eq!(
            file_in(&tars, "arch").as_deref(),
            Some(&*format!("{arch}\n")),
            "{p:?}"
        );
    }
    // one provenance attestation per platform, in the index
    assert_eq!(out.attestations.len(), 2, "{out:?}");
    for a in &out.attestations {
        assert!(a.predicate_type.contains("slsa.dev/provenance"), "{a:?}");
        assert!(a.platform.is_some(), "{a:?}");
    }
    // and Docker runs the 386 image
    let pulled = std::process::Command::new("docker")
        .args(["pull", "--platform", "linux/386", &out.image])
        .output()
        .unwrap();
    assert!(pulled.status.success(), "{pulled:?}");
    let ran = std::process::Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--platform",
            "linux/386",
            &out.image,
            "/bin/busybox",
            "cat",
            "/arch",
        ])
        .output()
        .unwrap();
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "386\n");
}

#[tokio::test]
async fn provenance_is_pushed_with_a_single_platform_image() {
    let base = ensure_base().await;
    let fx = Fixture::new().file(
        "ctx/Dockerfile",
        &format!("FROM {base}\nRUN echo hi > /hi\n"),
    );
    let (out, _) = run_bk(
        &fx,
        spec(&format!(
            "source: {{path: ctx}}\nattest: {{provenance: min}}\n{}",
            output("bkd-provenance")
        )),
    )
    .await;
    let out = out.expect("a build with provenance succeeds");
    assert_in_registry(&out).await;
    assert_eq!(out.platforms.len(), 1, "{out:?}");
    assert_eq!(out.attestations.len(), 1, "{out:?}");
    let a = &out.attestations[0];
    assert!(
        a.predicate_type.starts_with("https://slsa.dev/provenance/"),
        "{a:?}"
    );
    assert_eq!(
        a.platform.as_deref(),
        Some(out.platforms[0].platform.as_str())
    );
}

/// A registry of the test's own that wants a password (htpasswd), stopped when
/// dropped.
struct AuthRegistry {
    _process: Process,
    addr: String,
    _dir: tempfile::TempDir,
}

const REGISTRY_USER: &str = "builder";
const REGISTRY_PASSWORD: &str = "pw-b1e5c0ffee";
/// bcrypt of REGISTRY_PASSWORD, as `htpasswd -B` writes it.
const REGISTRY_HTPASSWD: &str = "$2b$04$zyY6ZheEHAwCeRK8yW1kEu67MjcfT4d1mSKsEhg4Tbn3EPvqoz6Ka";

impl AuthRegistry {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        std::fs::write(
            dir.path().join("htpasswd"),
            format!("{REGISTRY_USER}:{REGISTRY_HTPASSWD}\n"),
        )
        .unwrap();
        let conf = dir.path().join("config.yml");
        std::fs::write(
            &conf,
            format!(
                "version: 0.1\nstorage: {{filesystem: {{rootdirectory: {d}/data}}}}\n\
http: {{addr: '{addr}'}}\n\
auth: {{htpasswd: {{realm: slipway-test, path: {d}/htpasswd}}}}\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        let mut cmd = std::process::Command::new("docker-registry");
        cmd.arg("serve").arg(&conf);
        // (scripts/ensure-docker.sh installs docker-registry)
        let me = Self {
            _process: Process::spawn("docker-registry", cmd),
            addr,
            _dir: dir,
        };
        let url = format!("http://{}/v2/", me.addr);
        let start = Instant::now();
        while http()
            .get(&url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .ok()
            != Some(401)
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "registry did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        me
    }
}

#[tokio::test]
async fn pushes_with_the_builds_registry_credentials() {
    let reg = AuthRegistry::start().await;
    let fx = Fixture::new().busybox("ctx/busybox").file(
        "ctx/Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo hi > /hi\"]\n",
    );
    let auth = base64_of(&format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"));
    let config = DockerConfig::parse(&format!(
        r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
        reg.addr
    ))
    .unwrap();
    let mut req = request(
        &fx,
        spec(&format!(
            "source: {{path: ctx}}\noutput: {{registry: '{}', repository: slipway-test/bkd-auth}}",
            reg.addr
        )),
        Default::default(),
    );
    req.auth = Arc::new(config);
    let (out, events) = run_with(&buildkitd(), req).await;
    let out = out.expect("buildkitd pushes with the credentials the session serves");
    assert!(out.digest.starts_with("sha256:"), "{out:?}");
    let log = format!("{events:?}{}", serde_json::to_string(&out).unwrap());
    assert!(
        !log.contains(REGISTRY_PASSWORD),
        "the password is in the events"
    );
    // the registry really wanted them
    let anonymous = http()
        .get(format!(
            "http://{}/v2/slipway-test/bkd-auth/tags/list",
            reg.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    // a wrong password is the user's to fix: refused at once, not retried
    let wrong = base64_of(&format!("{REGISTRY_USER}:not-the-password"));
    let mut req = request(
        &fx,
        spec(&format!(
            "source: {{path: ctx}}\noutput: {{registry: '{}', repository: slipway-test/bkd-auth}}",
            reg.addr
        )),
        Default::default(),
    );
    req.auth = Arc::new(
        DockerConfig::parse(&format!(
            r#"{{"auths":{{"{}":{{"auth":"{wrong}"}}}}}}"#,
            reg.addr
        ))
        .unwrap(),
    );
    let (out, _) = run_with(&buildkitd(), req).await;
    let err = out.unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
    assert!(err.to_string().contains("refused the credentials"), "{err}");
}

#[tokio::test]
async fn a_default_cache_ref_exports_each_builds_cache_beside_its_image() {
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let fx = Fixture::new()
        .file("ctx/Dockerfile", "FROM scratch\nCOPY marker /marker\n")
        .file("ctx/marker", &marker);
    let bk = BuildkitdArgs {
        default_cache_ref: Some(format!("cache-{marker}")),
        ..buildkitd()
    };
    let spec = spec(&format!(
        "source: {{path: ctx}}\n{}",
        output("bkd-default-cache")
    ));
    let (out, _) = run_with(&bk, request(&fx, spec, Default::default())).await;
    out.expect("the build succeeds");
    // the cache manifest is in the build's own repository, under the flag's tag
    slipway::registry::manifest_digest(
        &reqwest::Client::new(),
        &registry(),
        "slipway-test/bkd-default-cache",
        &format!("cache-{marker}"),
        None,
    )
    .await
    .expect("--default-cache-ref exported the build's cache");
}

/// The context goes by file sync, and buildkitd keeps the last build's copy: what
/// the image holds must still follow the context from one build to the next (a
/// file changed, one removed), keep `.dockerignore`'d files out (also below an
/// excluded directory with a `!` exception), symlinks as links, and the Dockerfile
/// with its directives commented out, as the tar carried it.
#[tokio::test]
async fn the_context_follows_changes_between_builds() {
    let base = ensure_base().await;
    let fx = Fixture::new()
        .file(
            "ctx/Dockerfile",
            &format!("TAG filesync\nFROM {base}\nCOPY . /ctx\n"),
        )
        .file("ctx/.dockerignore", "secret\nsub\n!sub/keep\n")
        .file("ctx/a.txt", "one")
        .file("ctx/gone", "x")
        .file("ctx/secret", "s")
        .file("ctx/sub/keep", "k")
        .file("ctx/sub/drop", "d")
        .symlink("a.txt", "ctx/link");
    let spec = spec(&format!(
        "source: {{path: ctx}}\n{}",
        output("bkd-filesync")
    ));
    let script =
        "cd /ctx && find . | sort && cat a.txt && echo && readlink link && head -1 Dockerfile";
    let (out, _) = run_bk(&fx, spec.clone()).await;
    let out = out.expect("first build");
    assert_eq!(
        run_in_image(&out.image, script).await,
        format!(
            ".\n./.dockerignore\n./Dockerfile\n./a.txt\n./gone\n./link\n./sub\n./sub/keep\n\
one\na.txt\n# TAG filesync\n"
        )
    );

    // same size, other bytes: only the stat (mtime) tells it changed
    std::fs::write(fx.path("ctx/a.txt"), "two").unwrap();
    std::fs::remove_file(fx.path("ctx/gone")).unwrap();
    let (out, _) = run_bk(&fx, spec).await;
    let out = out.expect("second build");
    assert_eq!(
        run_in_image(&out.image, script).await,
        format!(
            ".\n./.dockerignore\n./Dockerfile\n./a.txt\n./link\n./sub\n./sub/keep\n\
two\na.txt\n# TAG filesync\n"
        )
    );
}
