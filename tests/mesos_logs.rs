//! Build logs on Mesos, against a real master and agent: the executor writes the
//! build's log into its sandbox and slipway copies it back through the agent's own
//! `/files/read`, so `slipway logs` shows it after the task ended and after the
//! sandbox is gone; a crashed executor's stderr is kept with it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::mesos::{MesosCluster, watch_on_mesos};
use common::watcher::*;
use common::*;

/// `slipway logs NAME -n tests --dir DIR`: exit code, stdout, stderr.
fn logs(dir: &Path, name: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["logs", name, "-n", "tests", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kept_log(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".slipway/logs/tests/{name}/1.log"))
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `--builder buildkitd` flags for the test buildkitd (build secrets need it).
fn buildkitd_flags() -> Option<Vec<String>> {
    let addr = std::env::var("SLIPWAY_TEST_BUILDKIT_ADDR").ok()?;
    let certs = std::env::var("SLIPWAY_TEST_BUILDKIT_DIR").unwrap_or_else(|_| "/tmp/devbk".into());
    Some(vec![
        "--builder=buildkitd".to_string(),
        format!("--buildkit-addr={addr}"),
        format!("--buildkit-ca={certs}/ca.pem"),
        format!("--buildkit-cert={certs}/cert.pem"),
        format!("--buildkit-key={certs}/key.pem"),
    ])
}

#[tokio::test]
async fn a_build_run_by_the_executor_keeps_its_log_copied_from_the_sandbox() {
    let Some(flags) = buildkitd_flags() else {
        eprintln!("SLIPWAY_TEST_BUILDKIT_ADDR unset: not tried");
        return;
    };
    let cluster = MesosCluster::start(1);
    let base = ensure_base().await;
    let reg = registry();
    let password = "pw-mesos-l0gs-77341";
    let secret = "tok-mesos-l0gs-5ecret";
    let auth = base64_of(&format!("builder:{password}"));
    let fx = Fixture::new()
        .file(
            "docker-config.json",
            &format!(r#"{{"auths":{{"{reg}":{{"auth":"{auth}"}}}}}}"#),
        )
        .file("tok.txt", secret)
        // the build prints the registry password it finds in its context, and the
        // secret it is given
        .file("ctx/pw", &format!("pw={password}\n"))
        .file(
            "ctx/Dockerfile",
            &format!(
                "FROM {base}\nCOPY pw /pw\nRUN --mount=type=secret,id=tok echo hello-from-the-sandbox && cat /pw && echo tok=$(cat /run/secrets/tok)\n"
            ),
        )
        .file(
            "logged.yaml",
            &doc(
                "logged",
                &indent(&format!(
                    "source: {{path: ctx}}\nnoCache: true\nsecrets: [{{id: tok, file: tok.txt}}]\n\
output: {{registry: '{reg}', repository: slipway-test/mesos-logs, pushSecretRef: {{path: docker-config.json}}}}"
                )),
            ),
        );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut w = watch_on_mesos(fx.dir.path(), &cluster.master(), &flags, &[]);
    let s = phase_of(&fx.path("logged.yaml"), "logged", "Succeeded").await;
    let digest = s["imageDigest"].as_str().unwrap().to_string();

    // status.mesos names the sandbox the executor wrote the log in
    let sandbox = PathBuf::from(
        s["mesos"]["sandbox"]
            .as_str()
            .expect("status.mesos.sandbox"),
    );
    let in_sandbox = std::fs::read_to_string(sandbox.join("slipway-build.log")).unwrap();
    assert!(
        in_sandbox.contains("hello-from-the-sandbox"),
        "{in_sandbox}"
    );
    // the agent garbage-collects the sandbox: the kept copy stays
    std::fs::remove_dir_all(&sandbox).unwrap();

    let (code, out, err) = logs(fx.dir.path(), "logged");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        std::fs::read_to_string(kept_log(fx.dir.path(), "logged")).unwrap()
    );
    // the RUN step's output only reaches slipway through the sandbox's log
    assert!(out.contains("    hello-from-the-sandbox"), "{out}");
    assert!(out.contains("pw=***") && out.contains("tok=***"), "{out}");
    assert!(out.contains("copied from "), "{out}");
    let last = out.lines().last().unwrap();
    assert!(
        last.contains("--- end of build 1: succeeded") && last.contains(&digest),
        "{out}"
    );
    assert_eq!(out.matches("--- end of build").count(), 1, "{out}");
    // every line stamped: copied lines keep the executor's timestamps
    for line in out.lines() {
        let ts = line.split(' ').next().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{line}");
    }
    for text in [&out, &in_sandbox, &s.to_string(), &w.log()] {
        assert!(!text.contains(password), "the password leaked: {text}");
        assert!(!text.contains(secret), "the secret leaked: {text}");
    }
    w.stop();
}

/// The executor processes running in `sandbox` (their working directory).
fn executors_in(sandbox: &Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cwd.is_ok_and(|c| c == sandbox) && String::from_utf8_lossy(&cmd).contains("executor")
        })
        .collect()
}

#[tokio::test]
async fn a_crashed_executors_stderr_is_kept_after_its_log() {
    let cluster = MesosCluster::start(1);
    let base = ensure_base().await;
    let reg = registry();
    let fx = Fixture::new().file(
        "crash.yaml",
        &doc(
            "crash",
            &indent(&format!(
                "source:\n  inline:\n    dockerfile: |\n      FROM {base}\n      RUN echo started-the-slow-step && sleep 60\n\
noCache: true\noutput: {{registry: '{reg}', repository: slipway-test/mesos-crash}}"
            )),
        ),
    );
    let file = fx.path("crash.yaml");
    let mut w = watch_on_mesos(fx.dir.path(), &cluster.master(), &[], &[]);
    let sandbox = wait_for("the executor to say where its sandbox is", LONG, || {
        status_in(&file, "crash")?["mesos"]["sandbox"]
            .as_str()
            .map(PathBuf::from)
    })
    .await;
    let kept = kept_log(fx.dir.path(), "crash");
    wait_for("the slow step's output to be copied", LONG, || {
        std::fs::read_to_string(&kept)
            .ok()
            .filter(|t| t.contains("started-the-slow-step"))
    })
    .await;
    // what the executor said before it crashed: a real agent sends an executor's
    // stderr to the sandbox's `stderr`; the test cluster's in-process agent passes its
    // own on instead, so the test writes it there
    let last_words = "thread 'main' panicked at src/executor/mod.rs: the test crashed it";
    std::fs::write(
        sandbox.join("stderr"),
        format!("INFO launching the build\n{last_words}\n"),
    )
    .unwrap();
    // the executor dies mid-build, as a crash would end it
    let pids = executors_in(&sandbox);
    assert_eq!(pids.len(), 1, "one executor in {}", sandbox.display());
    let killed = Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // the task failed: its log ends with the executor's stderr (a second attempt
    // follows, the failure being the infrastructure's)
    let out = wait_for("the executor's stderr in the kept log", LONG, || {
        let (code, out, _) = logs(fx.dir.path(), "crash");
        Some(out).filter(|o| code == 0 && o.contains("attempt 1 failed"))
    })
    .await;
    let (log, stderr) = out
        .split_once("--- the executor's stderr")
        .unwrap_or_else(|| panic!("no stderr header in the kept log: {out}"));
    assert!(log.contains("    started-the-slow-step"), "{out}");
    // the executor's last words, from the sandbox's stderr file, indented as output
    let said = stderr
        .lines()
        .find(|l| l.contains(last_words))
        .unwrap_or_else(|| panic!("the sandbox's stderr is not kept: {out}"));
    assert!(
        said.split_once(' ').unwrap().1.starts_with("    "),
        "{said}"
    );
    assert!(stderr.contains("attempt 1 failed"), "{out}");
    w.stop();
}
