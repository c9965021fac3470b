//! The build's full log, written by the executor into its sandbox with the same
//! writer (timestamps, masking, size cap) the framework uses for the logs it keeps.
//! The framework copies it back through the agent's `/files/read` while the build
//! runs, so the log outlives the sandbox's garbage collection.

use std::path::{Path, PathBuf};

use reqwest::Url;
use tracing::warn;

use crate::logs::{BuildLog, DEFAULT_MAX_BYTES, Redactor};
use crate::mesos::task::SandboxLog;
use crate::runner::BuildRequest;

/// The sandbox as this process sees it (`MESOS_SANDBOX` inside a container, else
/// the working directory the agent started us in) and as the framework reads it
/// through the agent (`MESOS_DIRECTORY`, the agent's own path).
pub fn sandbox(agent: &Url, var: impl Fn(&str) -> Option<String>) -> Option<(PathBuf, SandboxLog)> {
    let here = var("MESOS_SANDBOX")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())?;
    let directory = var("MESOS_DIRECTORY").unwrap_or_else(|| here.display().to_string());
    // the agent's files API sits beside its executor API, at its root
    let agent = agent.origin().ascii_serialization();
    Some((here, SandboxLog { agent, directory }))
}

/// Opens the build's log in `dir`; None (with a warning) when it cannot be written:
/// the build runs anyway.
pub fn open(dir: &Path, req: &BuildRequest) -> Option<BuildLog> {
    let path = dir.join(SandboxLog::FILE);
    // the executor does not know the build number: the framework writes the end line
    match BuildLog::open(&path, 0, DEFAULT_MAX_BYTES, Redactor::for_request(req)) {
        Ok(log) => Some(log),
        Err(e) => {
            warn!("the build's log is not kept in the sandbox: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_sees_the_sandbox_at_its_own_path_and_serves_files_at_its_root() {
        let agent = Url::parse("http://10.0.0.7:5051/slave(1)/api/v1/executor").unwrap();
        let vars = |k: &str| match k {
            "MESOS_SANDBOX" => Some("/mnt/mesos/sandbox".to_string()),
            "MESOS_DIRECTORY" => Some("/var/lib/mesos/slaves/S0/runs/r1".to_string()),
            _ => None,
        };
        let (here, log) = sandbox(&agent, vars).unwrap();
        assert_eq!(here, PathBuf::from("/mnt/mesos/sandbox"));
        assert_eq!(log.agent, "http://10.0.0.7:5051");
        assert_eq!(
            log.path(SandboxLog::FILE),
            "/var/lib/mesos/slaves/S0/runs/r1/slipway-build.log"
        );
        // no variables: the working directory, which is the sandbox on the agent too
        let (here, log) = sandbox(&agent, |_| None).unwrap();
        assert_eq!(log.directory, here.display().to_string());
    }
}
