//! What a failed build, push or upload means: the user's to fix (not retried) or the
//! infrastructure's (retried).

use crate::Error;
use crate::registry::error_chain;

/// "step 3/5 `RUN make` failed: <daemon error>", with the last lines of output.
/// `step` is the classic builder's `Step 3/5 : RUN make` or BuildKit's
/// `[build 3/5] RUN make`.
pub(super) fn failure_message(step: &str, error: &str, tail: &[String]) -> String {
    let mut msg = String::new();
    match split_step(step) {
        Some((n, instr)) => msg.push_str(&format!("step {n} `{instr}` failed: ")),
        None if !step.is_empty() => msg.push_str(&format!("step `{step}` failed: ")),
        None => {}
    }
    msg.push_str(error.trim());
    if error.contains("requires BuildKit") {
        msg.push_str(" (build with --builder auto or buildkit-daemon)");
    }
    if !tail.is_empty() {
        msg.push_str("\noutput:\n");
        msg.push_str(&tail.join("\n"));
    }
    msg
}

/// (number, instruction) of a step as either builder names it.
fn split_step(step: &str) -> Option<(&str, &str)> {
    if let Some(s) = step.strip_prefix("Step ") {
        return Some(s.split_once(" : ").unwrap_or((s, "")));
    }
    step.strip_prefix('[')?.split_once("] ")
}

/// A base image that cannot be fetched because its registry is down is an
/// infrastructure failure (retried); every other failing step is the Dockerfile's.
pub(super) fn build_error(step: &str, error: &str, tail: &[String]) -> Error {
    let msg = failure_message(step, error, tail);
    let pulling = split_step(step).is_some_and(|(_, i)| i.to_uppercase().starts_with("FROM "));
    let lower = error.to_lowercase();
    let unreachable = [
        "connection refused",
        "i/o timeout",
        "no such host",
        "connection reset",
        "503 service unavailable",
    ]
    .iter()
    .any(|s| lower.contains(s));
    if pulling && unreachable {
        Error::Registry(msg.into())
    } else {
        Error::BuildFailed(msg)
    }
}

/// Registry down → retryable; refused credentials → the user's to fix.
pub(super) fn push_error(reference: &str, error: &str) -> Error {
    let lower = error.to_lowercase();
    if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("no basic auth credentials")
        || lower.contains("denied")
    {
        Error::InvalidSpec(format!(
            "pushing {reference}: the registry refused the credentials: {error}"
        ))
    } else {
        Error::Registry(format!("pushing {reference}: {error}").into())
    }
}

/// A build that broke while the context was being read is the context's fault (an
/// unreadable or changing file, named in `failure`), not the daemon's: not retried.
pub(super) fn blame_context(e: Error, failure: Option<String>) -> Error {
    match (e, failure) {
        (Error::Docker(_), Some(f)) => Error::Context(f.into()),
        (e, _) => e,
    }
}

pub(super) fn classify_docker_error(e: bollard::errors::Error) -> Error {
    Error::docker(error_chain(&e), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_the_step_and_its_output() {
        let msg = failure_message(
            "Step 2/3 : RUN exit 3",
            "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
            &["compiling".into()],
        );
        assert_eq!(
            msg,
            "step 2/3 `RUN exit 3` failed: The command '/bin/sh -c exit 3' returned a non-zero code: 3\noutput:\ncompiling"
        );
    }

    #[test]
    fn buildkit_steps_are_named_like_classic_ones() {
        let msg = failure_message(
            "[stage-1 2/2] RUN exit 3",
            "executor failed running [/bin/sh -c exit 3]: exit code: 3",
            &["compiling".into()],
        );
        assert!(
            msg.starts_with("step stage-1 2/2 `RUN exit 3` failed: executor failed"),
            "{msg}"
        );
        assert!(msg.ends_with("output:\ncompiling"), "{msg}");
        assert!(
            failure_message("exporting to image", "disk full", &[])
                .starts_with("step `exporting to image` failed: disk full")
        );
        let from = build_error(
            "[1/2] FROM 127.0.0.1:5000/base:latest",
            "dial tcp 127.0.0.1:5000: connect: connection refused",
            &[],
        );
        assert!(from.is_retryable(), "{from:?}");
    }

    #[test]
    fn mount_on_the_classic_builder_says_which_builder_to_use() {
        let msg = failure_message(
            "",
            "the --mount option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/",
            &[],
        );
        assert!(msg.contains("--builder auto or buildkit-daemon"), "{msg}");
    }

    #[test]
    fn base_image_registry_down_is_retried_but_a_missing_base_is_not() {
        let step = "Step 1/2 : FROM 127.0.0.1:5000/base:latest";
        let down = build_error(
            step,
            "Get \"http://127.0.0.1:5000/v2/\": dial tcp 127.0.0.1:5000: connect: connection refused",
            &[],
        );
        assert!(down.is_retryable(), "{down:?}");
        let missing = build_error(
            step,
            "manifest for 127.0.0.1:5000/base:latest not found",
            &[],
        );
        assert!(!missing.is_retryable(), "{missing:?}");
        let run = build_error("Step 2/2 : RUN curl x", "connection refused", &[]);
        assert!(!run.is_retryable(), "{run:?}");
    }

    #[test]
    fn a_broken_context_upload_is_the_contexts_fault() {
        let daemon = || Error::Docker("error in body stream: hyper body error".into());
        let e = blame_context(
            daemon(),
            Some("build context file 'secret.key': Permission denied (os error 13)".into()),
        );
        assert!(
            matches!(&e, Error::Context(m) if m.message().contains("'secret.key'")),
            "{e:?}"
        );
        assert!(!e.is_retryable());
        // Without a context failure the daemon is to blame, and it is retried.
        assert!(blame_context(daemon(), None).is_retryable());
        // A failing step stays the Dockerfile's.
        let step = blame_context(Error::BuildFailed("x".into()), Some("y".into()));
        assert!(matches!(step, Error::BuildFailed(_)));
    }

    #[test]
    fn refused_push_is_not_retried() {
        assert!(!push_error("r/a:1", "unauthorized: authentication required").is_retryable());
        assert!(!push_error("r/a:1", "no basic auth credentials").is_retryable());
        assert!(
            push_error(
                "r/a:1",
                "dial tcp 127.0.0.1:5999: connect: connection refused"
            )
            .is_retryable()
        );
    }
}
