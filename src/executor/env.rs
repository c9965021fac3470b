//! What the Mesos agent tells its executor through the environment.

use std::time::Duration;

use reqwest::Url;

use crate::{Error, Result};

/// Used when the agent does not say (Mesos's own defaults are 15 min and 2 s).
const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The executor's environment, read once at start.
#[derive(Clone)]
pub struct AgentEnv {
    pub framework_id: String,
    pub executor_id: String,
    /// `.../api/v1/executor` of the agent that started us.
    pub url: Url,
    /// The framework checkpoints: an agent restart is survivable, so reconnect.
    pub checkpoint: bool,
    /// How long a restarting agent may take before the executor gives up.
    pub recovery_timeout: Duration,
    pub backoff_max: Duration,
    /// Sent as `Authorization: Bearer`; never logged.
    pub token: Option<String>,
}

impl std::fmt::Debug for AgentEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentEnv")
            .field("framework_id", &self.framework_id)
            .field("executor_id", &self.executor_id)
            .field("url", &self.url.as_str())
            .field("checkpoint", &self.checkpoint)
            .field("recovery_timeout", &self.recovery_timeout)
            .field("backoff_max", &self.backoff_max)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AgentEnv {
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the variables through `var`, so tests need not touch the process env.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let required = |k: &str| {
            var(k).ok_or_else(|| {
                Error::Mesos(format!(
                    "{k} is not set: `slipway executor` is started by a Mesos agent, not by hand"
                ))
            })
        };
        let framework_id = required("MESOS_FRAMEWORK_ID")?;
        let executor_id = required("MESOS_EXECUTOR_ID")?;
        // an agent running in-process under a libprocess ID serves its API below that ID
        let url = match var("MESOS_SLAVE_PID") {
            Some(pid) => pid_url(&pid)?,
            None => endpoint_url(&required("MESOS_AGENT_ENDPOINT")?)?,
        };
        let duration = |k: &str, default: Duration| match var(k) {
            Some(v) => parse_mesos_duration(&v).map_err(|e| Error::Mesos(format!("{k}: {e}"))),
            None => Ok(default),
        };
        Ok(Self {
            framework_id,
            executor_id,
            url,
            checkpoint: var("MESOS_CHECKPOINT").as_deref() == Some("1"),
            recovery_timeout: duration("MESOS_RECOVERY_TIMEOUT", DEFAULT_RECOVERY_TIMEOUT)?,
            backoff_max: duration("MESOS_SUBSCRIPTION_BACKOFF_MAX", DEFAULT_BACKOFF_MAX)?,
            token: var("MESOS_EXECUTOR_AUTHENTICATION_TOKEN"),
        })
    }
}

/// `slave(1)@127.0.0.1:5051` → `http://127.0.0.1:5051/slave(1)/api/v1/executor`.
fn pid_url(pid: &str) -> Result<Url> {
    let (id, addr) = pid
        .split_once('@')
        .filter(|(id, addr)| !id.is_empty() && !addr.is_empty())
        .ok_or_else(|| Error::Mesos(format!("MESOS_SLAVE_PID '{pid}' is not ID@HOST:PORT")))?;
    Url::parse(&format!("http://{addr}/{id}/api/v1/executor"))
        .map_err(|e| Error::Mesos(format!("MESOS_SLAVE_PID '{pid}': {e}")))
}

fn endpoint_url(endpoint: &str) -> Result<Url> {
    Url::parse(&format!("http://{endpoint}/api/v1/executor"))
        .map_err(|e| Error::Mesos(format!("MESOS_AGENT_ENDPOINT '{endpoint}': {e}")))
}

/// A duration as Mesos prints one: `15mins`, `2secs`, `100ms`, `1.5hrs`.
pub fn parse_mesos_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration such as 15mins"))?;
    let secs_per = match unit.trim() {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "secs" | "sec" | "s" => 1.0,
        "mins" | "min" => 60.0,
        "hrs" | "hr" => 3600.0,
        "days" | "day" => 86400.0,
        "weeks" | "week" => 604800.0,
        other => return Err(format!("unknown unit '{other}' in '{s}'")),
    };
    Duration::try_from_secs_f64(n * secs_per).map_err(|e| format!("'{s}': {e}"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<AgentEnv> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AgentEnv::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn mesos_durations_parse() {
        assert_eq!(
            parse_mesos_duration("15mins").unwrap(),
            Duration::from_secs(900)
        );
        assert_eq!(
            parse_mesos_duration("2secs").unwrap(),
            Duration::from_secs(2)
        );
        assert_eq!(
            parse_mesos_duration("100ms").unwrap(),
            Duration::from_millis(100)
        );
        assert_eq!(
            parse_mesos_duration("1.5hrs").unwrap(),
            Duration::from_secs(5400)
        );
        assert!(parse_mesos_duration("soon").is_err());
        assert!(parse_mesos_duration("3parsecs").is_err());
    }

    #[test]
    fn the_agent_url_comes_from_the_pid_or_the_endpoint() {
        let base = [("MESOS_FRAMEWORK_ID", "fw"), ("MESOS_EXECUTOR_ID", "ex")];
        let e = env(&[base[0], base[1], ("MESOS_AGENT_ENDPOINT", "10.0.0.2:5051")]).unwrap();
        assert_eq!(e.url.as_str(), "http://10.0.0.2:5051/api/v1/executor");
        assert!(!e.checkpoint);
        assert_eq!(e.recovery_timeout, DEFAULT_RECOVERY_TIMEOUT);

        let e = env(&[
            base[0],
            base[1],
            ("MESOS_AGENT_ENDPOINT", "10.0.0.2:5051"),
            ("MESOS_SLAVE_PID", "slave(1)@127.0.0.1:5050"),
            ("MESOS_CHECKPOINT", "1"),
            ("MESOS_RECOVERY_TIMEOUT", "1mins"),
            ("MESOS_EXECUTOR_AUTHENTICATION_TOKEN", "tok-123"),
        ])
        .unwrap();
        assert_eq!(
            e.url.as_str(),
            "http://127.0.0.1:5050/slave(1)/api/v1/executor"
        );
        assert!(e.checkpoint);
        assert_eq!(e.recovery_timeout, Duration::from_secs(60));
        assert!(!format!("{e:?}").contains("tok-123"));
    }

    #[test]
    fn a_missing_variable_says_which_and_why() {
        let err = env(&[("MESOS_FRAMEWORK_ID", "fw")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("MESOS_EXECUTOR_ID is not set"), "{err}");
        let err = env(&[("MESOS_FRAMEWORK_ID", "fw"), ("MESOS_EXECUTOR_ID", "ex")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("MESOS_AGENT_ENDPOINT"), "{err}");
        let err = env(&[
            ("MESOS_FRAMEWORK_ID", "fw"),
            ("MESOS_EXECUTOR_ID", "ex"),
            ("MESOS_SLAVE_PID", "nonsense"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("ID@HOST:PORT"), "{err}");
    }
}
