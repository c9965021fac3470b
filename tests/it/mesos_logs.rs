//! Build logs on Mesos, against a real master and agent: the executor writes the
//! build's log into its sandbox and slipway copies it back through the agent's own
//! `/files/read`, so `slipway logs` shows it after the task ended and after the
//! sandbox is gone; a crashed executor's stderr is kept with it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::mesos::{MesosCluster, watch_on_mesos};
use crate::common::watcher::*;
use crate::common::*;

fn kept_log(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".slipway/logs/tests/{name}/1.log"))
}

/// `--builder buildkitd` flags for the test buildkitd (build secrets need it).
/// A build `name` pushing to `slipway-test/REPO` with `password` as its registry
/// credential, whose step `run` can print that password (the context's `/pw`)
/// and the build secret `tok` (holding `secret`).
fn secrets_fixture(
    base: &str,
    reg: &str,
    (password, secret): (&str, &str),
    run: &str,
    (name, repo): (&str, &str),
) -> Fixture {
    let auth = base64_of(&format!("builder:{password}"));
    Fixture::new()
        .file(
            "docker-config.json",
            &format!(r#"{{"auths":{{"{reg}":{{"auth":"{auth}"}}}}}}"#),
        )
        .file("tok.txt", secret)
        .file("ctx/pw", &format!("pw={password}\n"))
        .file(
            "ctx/Dockerfile",
            &format!("FROM {base}\nCOPY pw /pw\nRUN --mount=type=secret,id=tok {run}\n"),
        )
        .file(
            &format!("{name}.yaml"),
            &doc(
                name,
                &indent(&format!(
                    "source: {{path: ctx}}\nnoCache: true\nsecrets: [{{id: tok, file: tok.txt}}]\n\
output: {{registry: '{reg}', repository: slipway-test/{repo}, pushSecretRef: {{path: docker-config.json}}}}"
                )),
            ),
        )
}

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
    // the build prints the registry password it finds in its context, and the
    // secret it is given
    let fx = secrets_fixture(
        &base,
        &reg,
        (password, secret),
        "echo hello-from-the-sandbox && cat /pw && echo tok=$(cat /run/secrets/tok)",
        ("logged", "mesos-logs"),
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

    let (code, out, err) = logs(fx.dir.path(), &["logged"]);
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
noCache: true\noutput: {{registry: '{reg}', repository: slipway-test/mesos-logs-crash}}"
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
            // the output line, not the step's own line that names it too
            .filter(|t| t.contains("    started-the-slow-step"))
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
        let (code, out, _) = logs(fx.dir.path(), &["crash"]);
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

/// Dies before its first TASK_RUNNING the way a broken agent setup kills it: the
/// real `slipway executor`, missing a variable the agent should have set. A real
/// agent sends an executor's output to the sandbox's `stdout` and `stderr`; the test
/// cluster's in-process agent passes its own on instead, so the wrapper does it.
fn broken_executor(fx: Fixture) -> Fixture {
    let fx = fx.file(
        "broken-executor.sh",
        &format!(
            "#!/bin/sh\nexec >>stdout 2>>stderr\necho \"wrapper: starting the executor\"\nunset MESOS_FRAMEWORK_ID\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_slipway")
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        fx.path("broken-executor.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fx
}

/// Runs a build whose executor dies before it starts the build, on `cluster`, and
/// returns the kept log once the first attempt has failed (and the watcher and its
/// folder, to keep until the test ends).
async fn log_of_a_build_whose_executor_never_started(
    cluster: &MesosCluster,
    flags: &[&str],
) -> (String, Watcher, Fixture) {
    let base = ensure_base().await;
    let reg = registry();
    let fx = broken_executor(Fixture::new()).file(
        "early.yaml",
        &doc(
            "early",
            &indent(&format!(
                "source:\n  inline:\n    dockerfile: |\n      FROM {base}\n      RUN echo never-runs\n\
output: {{registry: '{reg}', repository: slipway-test/mesos-logs-early}}"
            )),
        ),
    );
    let executor = fx.path("broken-executor.sh").display().to_string();
    let mut args = vec!["--executor-path", executor.as_str()];
    args.extend_from_slice(flags);
    let w = watch_on_mesos(fx.dir.path(), &cluster.master(), &args, &[]);
    let out = wait_for("the first attempt's failure in the kept log", LONG, || {
        let (code, out, _) = logs(fx.dir.path(), &["early"]);
        Some(out).filter(|o| code == 0 && o.contains("attempt 1 failed"))
    })
    .await;
    (out, w, fx)
}

#[tokio::test]
async fn an_executor_that_dies_before_its_first_update_leaves_its_output_in_the_log() {
    let cluster = MesosCluster::start(1);
    let (out, mut w, _fx) = log_of_a_build_whose_executor_never_started(&cluster, &[]).await;
    // found through the agent named in the offer: its /state lists the sandbox
    assert!(
        out.contains(
            "--- the executor ended before it said where its sandbox is; the agent has it at "
        ),
        "{out}"
    );
    let (_, stderr) = out
        .split_once("--- the executor's stderr")
        .unwrap_or_else(|| panic!("no stderr in the kept log: {out}"));
    assert!(
        stderr.contains("    error: mesos: MESOS_FRAMEWORK_ID is not set"),
        "{out}"
    );
    assert!(out.contains("--- the executor's stdout"), "{out}");
    assert!(out.contains("    wrapper: starting the executor"), "{out}");
    w.stop();
}

#[tokio::test]
async fn with_http_authentication_on_the_agent_the_framework_reads_it_with_its_credentials() {
    // the agent (and master) want credentials for their read-only endpoints; the
    // shim's agent serves /files/read without asking, but its /state asks
    let dir = tempfile::tempdir().unwrap();
    let secret = "fw-secret-9d1e5a";
    let creds = dir.path().join("credentials.json");
    std::fs::write(
        &creds,
        format!(r#"{{"credentials":[{{"principal":"slipway-fw","secret":"{secret}"}}]}}"#),
    )
    .unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, secret).unwrap();
    let creds = creds.display().to_string();
    let cluster = MesosCluster::start_with_env(
        1,
        &[
            ("MESOS_AUTHENTICATE_HTTP_READONLY", "true"),
            // the master's flag, and the agent's
            ("MESOS_CREDENTIALS", &creds),
            ("MESOS_HTTP_CREDENTIALS", &creds),
        ],
    );
    let agent_state = reqwest::get(format!("http://{}/slave(1)/state", cluster.master()))
        .await
        .unwrap();
    assert_eq!(agent_state.status(), 401, "the agent asks for credentials");
    let secret_path = secret_file.display().to_string();
    let (out, mut w, _fx) = log_of_a_build_whose_executor_never_started(
        &cluster,
        &["--principal", "slipway-fw", "--secret-file", &secret_path],
    )
    .await;
    assert!(
        out.contains("    error: mesos: MESOS_FRAMEWORK_ID is not set"),
        "the executor's stderr was not read with the credentials: {out}"
    );
    let base64_secret = base64_of(&format!("slipway-fw:{secret}"));
    for text in [&out, &w.log()] {
        assert!(!text.contains(secret), "the secret leaked: {text}");
        assert!(!text.contains(&base64_secret), "the secret leaked: {text}");
    }
    w.stop();
}

/// The master's `/api/v1` GET_TASKS (it shows each status's message, which `/state`
/// and `/tasks` leave out), with every status's `data` decoded beside it.
async fn master_tasks(cluster: &MesosCluster) -> String {
    use base64::Engine;
    let v: serde_json::Value = http()
        .post(format!("http://{}/api/v1", cluster.master()))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(r#"{"type":"GET_TASKS"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut text = v.to_string();
    let mut data = Vec::new();
    fn walk(v: &serde_json::Value, data: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(d) = m.get("data").and_then(|d| d.as_str()) {
                    data.push(d.to_string());
                }
                m.values().for_each(|v| walk(v, data));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, data)),
            _ => {}
        }
    }
    walk(&v, &mut data);
    for d in data {
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&d) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text
}

#[tokio::test]
async fn a_failed_builds_secrets_do_not_reach_the_mesos_master() {
    let Some(flags) = buildkitd_flags() else {
        eprintln!("SLIPWAY_TEST_BUILDKIT_ADDR unset: not tried");
        return;
    };
    let cluster = MesosCluster::start(1);
    let base = ensure_base().await;
    let reg = registry();
    let password = "pw-mesos-m4ster-20417";
    let secret = "tok-mesos-m4ster-5ecret";
    // the failing step prints both: the failure quotes its last lines
    let fx = secrets_fixture(
        &base,
        &reg,
        (password, secret),
        "cat /pw && echo tok=$(cat /run/secrets/tok) && exit 3",
        ("leaky", "mesos-leaky"),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut w = watch_on_mesos(fx.dir.path(), &cluster.master(), &flags, &[]);
    let s = phase_of(&fx.path("leaky.yaml"), "leaky", "Failed").await;
    let tasks = master_tasks(&cluster).await;
    let (state, _) = cluster.state().await;
    let listed = get_text(&format!("http://{}/tasks", cluster.master())).await;
    let kept = std::fs::read_to_string(kept_log(fx.dir.path(), "leaky")).unwrap();
    assert!(kept.contains("pw=***"), "{kept}");
    for text in [&tasks, &state, &listed, &kept, &s.to_string(), &w.log()] {
        assert!(!text.contains(password), "the password leaked: {text}");
        assert!(!text.contains(secret), "the secret leaked: {text}");
    }
    // the executor's failure did reach the master, masked
    assert!(
        tasks.contains("pw=***") && tasks.contains("tok=***"),
        "the failure is not in the master's task state: {tasks}"
    );
    w.stop();
}
