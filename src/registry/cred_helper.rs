//! Docker's credential-helper protocol: `docker-credential-<name> get` reads the
//! registry on stdin and answers `{"ServerURL","Username","Secret"}` on stdout.
//! The answer is a secret: no error here quotes the helper's output.

use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::Credentials;
use crate::{Error, Result};

/// A helper that prompts (a locked keychain) must not hold a build forever.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What helpers print when they hold nothing for the registry (docker treats it as
/// "no credentials", not as a failure).
const NOT_FOUND: &str = "credentials not found in native keychain";

/// The `Username` that marks `Secret` as an identity (refresh) token.
pub const TOKEN_USERNAME: &str = "<token>";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    username: String,
    secret: String,
}

/// What the helper holds for `server` (the host, or docker hub's v1 URL, as the
/// docker CLI sends it). None when it holds nothing.
pub async fn get(helper: &str, server: &str, registry: &str) -> Result<Option<Credentials>> {
    run(&format!("docker-credential-{helper}"), server, registry).await
}

async fn run(program: &str, server: &str, registry: &str) -> Result<Option<Credentials>> {
    let says = |what: &str| format!("credential helper {program} (for {registry}): {what}");
    let fail = |what: String| Error::Registry(says(&what).into());
    let cannot_run = |e: std::io::Error| Error::registry(says(&format!("cannot run it: {e}")), e);
    let mut child = tokio::process::Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => fail("not found on PATH".into()),
            _ => cannot_run(e),
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let run = async {
        // a helper that exits without reading its stdin is judged by its exit code
        let _ = stdin.write_all(server.as_bytes()).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(TIMEOUT, run)
        .await
        .map_err(|_| fail(format!("no answer within {}s", TIMEOUT.as_secs())))?
        .map_err(cannot_run)?;
    answer(&out.status, &out.stdout).map_err(fail)
}

/// The decision on a helper's exit and output, apart from running it.
fn answer(
    status: &std::process::ExitStatus,
    stdout: &[u8],
) -> std::result::Result<Option<Credentials>, String> {
    let text = String::from_utf8_lossy(stdout);
    if !status.success() {
        if text.trim() == NOT_FOUND {
            return Ok(None);
        }
        // its message may be anything, even the secret: tell only the exit
        return Err(format!("`get` failed ({status})"));
    }
    let a: Answer = serde_json::from_str(text.trim())
        .map_err(|_| "`get` did not answer the credential helper JSON".to_string())?;
    if a.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: a.username,
        password: a.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn exit(code: i32) -> std::process::ExitStatus {
        std::process::ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn reads_the_protocol_answer() {
        let c = answer(
            &exit(0),
            br#"{"ServerURL":"r:5000","Username":"alice","Secret":"s3cr3t"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cr3t")
        );
        // "not found" is no credentials, as docker takes it
        assert_eq!(
            answer(&exit(1), format!("{NOT_FOUND}\n").as_bytes()),
            Ok(None)
        );
    }

    #[test]
    fn failures_never_quote_the_output() {
        let e = answer(&exit(0), b"{\"Secret\":\"hunter2\"").unwrap_err();
        assert!(e.contains("did not answer"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = answer(&exit(3), b"oops hunter2").unwrap_err();
        assert!(e.contains("failed") && !e.contains("hunter2"), "{e}");
    }

    /// A stand-in helper: records its argument and stdin, answers like a real one.
    fn script(dir: &std::path::Path, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("docker-credential-standin");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[tokio::test]
    async fn runs_get_with_the_server_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        let helper = script(
            dir.path(),
            &format!(
                r#"echo "$1 $(cat)" > {}; echo '{{"ServerURL":"r:5000","Username":"alice","Secret":"s3cr3t"}}'"#,
                seen.display()
            ),
        );
        let c = run(&helper, "r:5000", "r:5000").await.unwrap().unwrap();
        assert_eq!(c.password, "s3cr3t");
        assert_eq!(std::fs::read_to_string(&seen).unwrap().trim(), "get r:5000");

        let helper = script(
            dir.path(),
            "echo 'credentials not found in native keychain'; exit 1",
        );
        assert_eq!(run(&helper, "r:5000", "r:5000").await.unwrap(), None);

        let helper = script(dir.path(), "echo hunter2 >&2; exit 2");
        let e = run(&helper, "r:5000", "r:5000")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("docker-credential-standin") && e.contains("r:5000"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");

        let e = get("slipway-test-none", "r:5000", "r:5000")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Registry(_)), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("docker-credential-slipway-test-none") && e.contains("not found"),
            "{e}"
        );
    }
}
