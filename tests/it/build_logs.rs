//! Every build's log is kept in a watch folder (`.slipway/logs`), a failed build's
//! last lines are in its status, and `slipway logs` prints and follows them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::common::watcher::*;
use crate::common::*;

fn log_file(dir: &Path, name: &str, build: u64) -> PathBuf {
    dir.join(format!(".slipway/logs/tests/{name}/{build}.log"))
}

fn inline(dockerfile: &str, repo: &str) -> String {
    format!(
        "source: {{inline: {{dockerfile: \"{dockerfile}\"}}}}\nnoCache: true\noutput: {{registry: '{}', repository: slipway-test/{repo}}}",
        registry()
    )
}

#[tokio::test]
async fn failing_and_succeeding_builds_each_keep_a_full_log_without_secrets() {
    let base = ensure_base().await;
    let password = "pw-logs-5ecret-9931";
    let auth = base64_basic("logs-user", password);
    let fx = Fixture::new()
        .file(
            "docker/config.json",
            &format!("{{\"auths\": {{\"{}\": {{\"auth\": \"{auth}\"}}}}}}", registry()),
        )
        // a build that prints a credential it was given in its context
        .file("builds/ok/token", &format!("pw={password}\n"))
        .file(
            "builds/ok/Dockerfile",
            &format!("FROM {base}\nCOPY token /token\nRUN echo hello-from-ok && cat /token\n"),
        )
        .file(
            "builds/ok.yaml",
            &doc(
                "ok",
                &indent(&format!(
                    "source: {{path: ok}}\nnoCache: true\noutput: {{registry: '{}', repository: slipway-test/logs-ok}}",
                    registry()
                )),
            ),
        )
        .file("builds/bad/token", &format!("pw={password}\n"))
        .file(
            "builds/bad/Dockerfile",
            &format!("FROM {base}\nCOPY token /token\nRUN echo about-to-fail && cat /token && exit 3\n"),
        )
        .file(
            "builds/bad.yaml",
            &doc(
                "bad",
                &indent(&format!(
                    "source: {{path: bad}}\nnoCache: true\noutput: {{registry: '{}', repository: slipway-test/logs-bad}}",
                    registry()
                )),
            ),
        );
    let dir = fx.path("builds");
    let docker_config = fx.path("docker");
    let mut w = Watcher::start_with_env(
        Path::new("."),
        &dir,
        &[],
        &[("DOCKER_CONFIG", docker_config.to_str().unwrap())],
    );
    let ok = phase_of(&dir.join("ok.yaml"), "ok", "Succeeded").await;
    let bad = phase_of(&dir.join("bad.yaml"), "bad", "Failed").await;

    let ok_log = std::fs::read_to_string(log_file(&dir, "ok", 1)).unwrap();
    assert!(ok_log.contains("hello-from-ok"), "{ok_log}");
    assert!(ok_log.contains("pw=***"), "{ok_log}");
    let digest = ok["imageDigest"].as_str().unwrap();
    let last = ok_log.lines().last().unwrap();
    assert!(
        last.contains("end of build 1: succeeded") && last.contains(digest),
        "{last}"
    );
    assert!(ok_log.contains("--- pushed "), "{ok_log}");

    let bad_log = std::fs::read_to_string(log_file(&dir, "bad", 1)).unwrap();
    assert!(bad_log.contains("about-to-fail"), "{bad_log}");
    assert!(
        bad_log
            .lines()
            .last()
            .unwrap()
            .contains("end of build 1: failed"),
        "{bad_log}"
    );
    // the status shows the end of the log, the message stays short
    let tail: Vec<String> = serde_json::from_value(bad["logTail"].clone()).unwrap();
    assert!(tail.iter().any(|l| l.contains("about-to-fail")), "{tail:?}");
    assert!(tail.len() <= 20);
    assert!(ok.get("logTail").is_none(), "{ok}");

    // the password is nowhere: kept logs, statuses, slipway's own log
    for text in [
        &ok_log,
        &bad_log,
        &ok.to_string(),
        &bad.to_string(),
        &w.log(),
    ] {
        assert!(!text.contains(password), "the password leaked: {text}");
    }

    // slipway logs: the latest build by default, errors a person can act on
    let (code, out, err) = logs(&dir, &["bad"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, bad_log);
    let (code, _, err) = logs(&dir, &["nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no DockerBuild tests/nope"), "{err}");
    let (code, _, err) = logs(&dir, &["ok", "--build", "2"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("latest is 1"), "{err}");
    w.stop();
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[tokio::test]
async fn logs_follow_prints_a_running_build_as_it_goes_and_ends_with_the_digest() {
    let base = ensure_base().await;
    let fx = Fixture::new().file(
        "slow.yaml",
        &doc(
            "slow",
            &indent(&inline(
                &format!("FROM {base}\\nRUN echo first-line && sleep 4 && echo second-line\\n"),
                "logs-slow",
            )),
        ),
    );
    let dir = fx.dir.path().to_path_buf();
    let mut w = Watcher::start(&dir, &[]);
    let log = log_file(&dir, "slow", 1);
    wait_for("the build to print its first line", LONG, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("first-line"))
    })
    .await;

    let mut follower = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["logs", "slow", "-n", "tests", "-f", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send((Instant::now(), line.unwrap()));
        }
    });
    let mut lines = Vec::new();
    let next = |rx: &std::sync::mpsc::Receiver<(Instant, String)>| {
        rx.recv_timeout(LONG).expect("slipway logs -f prints on")
    };
    while !lines.iter().any(|l: &String| l.contains("first-line")) {
        lines.push(next(&rx).1);
    }
    // printed while the build still runs: the second line is not written yet
    let status = status_in(&dir.join("slow.yaml"), "slow").unwrap();
    assert_eq!(status["phase"], "Building", "{status}");
    assert!(
        follower.try_wait().unwrap().is_none(),
        "-f waits for the end"
    );
    while !lines.iter().any(|l| l.contains("--- end of build 1")) {
        lines.push(next(&rx).1);
    }
    let exit = follower.wait().unwrap();
    assert!(exit.success());
    let done = phase_of(&dir.join("slow.yaml"), "slow", "Succeeded").await;
    let text = lines.join("\n");
    assert!(text.contains("second-line"), "{text}");
    assert!(
        lines
            .last()
            .unwrap()
            .contains(done["imageDigest"].as_str().unwrap()),
        "{text}"
    );
    w.stop();
}

#[tokio::test]
async fn retention_removes_the_oldest_logs_and_says_they_expired() {
    let fx = Fixture::new().file(
        "r.yaml",
        &doc(
            "kept",
            &indent(&format!(
                "rebuild: '1'\n{}",
                inline("FROM scratch\\nLABEL logs=kept\\n", "logs-kept")
            )),
        ),
    );
    let file = fx.path("r.yaml");
    let dir = fx.dir.path().to_path_buf();
    let mut w = Watcher::start(&dir, &["--log-retention", "2,1d"]);
    for n in 1..=3u64 {
        if n > 1 {
            let text = fx
                .read("r.yaml")
                .replace(&format!("rebuild: '{}'", n - 1), &format!("rebuild: '{n}'"));
            std::fs::write(&file, text).unwrap();
        }
        wait_for(&format!("build {n}"), LONG, || {
            status_in(&file, "kept").filter(|s| s["phase"] == "Succeeded" && s["buildNumber"] == n)
        })
        .await;
    }
    // the third build's log is closed just before its status is written
    assert!(log_file(&dir, "kept", 3).exists());
    assert!(log_file(&dir, "kept", 2).exists());
    assert!(!log_file(&dir, "kept", 1).exists());
    let (code, _, err) = logs(&dir, &["kept", "--build", "1"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("expired"), "{err}");
    w.stop();
}
