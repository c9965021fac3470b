//! Registry credentials from a docker `config.json` (`auths` entries). The values
//! never reach logs: `Credentials` has a redacting `Debug` and no `Display`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::{Error, Result};

#[derive(Clone, PartialEq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", STANDARD.encode(raw))
    }

    pub fn to_docker(&self) -> bollard::auth::DockerCredentials {
        bollard::auth::DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.clone()),
            ..Default::default()
        }
    }
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthEntry(<redacted>)")
    }
}

/// The `auths` of a docker config file, keyed by registry host.
#[derive(Debug, Default)]
pub struct DockerConfig {
    auths: HashMap<String, Credentials>,
    /// Where the credentials were looked for, for telling a user who has none.
    origin: Option<String>,
    /// `credsStore` and `credHelpers` (by registry): named, but not run yet.
    creds_store: Option<String>,
    cred_helpers: HashMap<String, String>,
    /// A config was read (as opposed to none found).
    read: bool,
}

impl DockerConfig {
    /// The file at `path`, or the usual default (`$DOCKER_CONFIG/config.json`,
    /// `~/.docker/config.json`) when none is given. A missing default is empty; a
    /// missing named file is an error the user must fix.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => match default_path() {
                Some(p) => (p, false),
                None => {
                    return Ok(Self::with_origin(
                        "no docker config (neither DOCKER_CONFIG nor HOME is set)".into(),
                    ));
                }
            },
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::with_origin(format!(
                    "no docker config: {} does not exist",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(Error::InvalidSpec(format!(
                    "cannot read docker config {}: {e}",
                    path.display()
                )));
            }
        };
        let mut config = Self::parse(&text)
            .map_err(|e| Error::InvalidSpec(format!("docker config {}: {e}", path.display())))?;
        config.origin = Some(format!("docker config {}", path.display()));
        Ok(config)
    }

    fn with_origin(origin: String) -> Self {
        Self {
            origin: Some(origin),
            ..Self::default()
        }
    }

    /// Why there are no credentials for `registry`, for a registry that asks for some:
    /// where slipway looked, and the credential helpers it does not run yet.
    pub fn missing_credentials(&self, registry: &str) -> String {
        let looked = self
            .origin
            .as_deref()
            .unwrap_or("no docker config was given (output.pushSecretRef, or --docker-config)");
        let mut msg = format!(
            "{registry} requires credentials and slipway has none for it: looked in {looked}"
        );
        if self.read {
            msg.push_str(&format!(", which has no auths entry for {registry}"));
        }
        let key = normalize(registry);
        if let Some((_, helper)) = self.cred_helpers.iter().find(|(k, _)| normalize(k) == key) {
            msg.push_str(&format!(
                "; its credHelpers name \"{helper}\" for {registry}, but slipway does not read credential helpers yet"
            ));
        } else if let Some(store) = &self.creds_store {
            msg.push_str(&format!(
                "; its credsStore \"{store}\" is not read by slipway yet"
            ));
        }
        msg.push_str(": put the credentials in the config's auths (user and password, or auth)");
        msg
    }

    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        // serde's message would quote the offending value, which may be a secret
        let file: ConfigFile = serde_json::from_str(text)
            .map_err(|e| format!("not valid JSON (line {})", e.line()))?;
        let mut auths = HashMap::new();
        for (key, entry) in file.auths {
            let creds = match (entry.username, entry.password, entry.auth) {
                (Some(u), Some(p), _) => Credentials {
                    username: u,
                    password: p,
                },
                (_, _, Some(auth)) => {
                    let raw = STANDARD
                        .decode(auth.trim())
                        .map_err(|_| format!("auths.{key}.auth is not base64"))?;
                    let raw = String::from_utf8(raw)
                        .map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
                    let (u, p) = raw
                        .split_once(':')
                        .ok_or_else(|| format!("auths.{key}.auth is not user:password"))?;
                    Credentials {
                        username: u.to_string(),
                        password: p.to_string(),
                    }
                }
                _ => continue,
            };
            auths.insert(normalize(&key), creds);
        }
        Ok(Self {
            auths,
            // A Kubernetes secret or a remote build's private data; load() names its file.
            origin: Some("the docker config given to the build".into()),
            read: true,
            creds_store: file.creds_store,
            cred_helpers: file.cred_helpers,
        })
    }

    /// The same credentials as a config.json text, for handing to a remote build
    /// (a Mesos task's private data); never logged.
    pub fn to_json(&self) -> String {
        let auths: serde_json::Map<String, serde_json::Value> = self
            .auths
            .iter()
            .map(|(host, c)| {
                let entry = serde_json::json!({"username": c.username, "password": c.password});
                (host.clone(), entry)
            })
            .collect();
        serde_json::json!({ "auths": auths }).to_string()
    }

    pub fn is_empty(&self) -> bool {
        self.auths.is_empty()
    }

    pub fn credentials_for(&self, registry: &str) -> Option<&Credentials> {
        self.auths.get(&normalize(registry))
    }
}

fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// `https://host:5000/v1/` and `host:5000` name the same registry.
fn normalize(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    if k == "index.docker.io" || k == "registry-1.docker.io" {
        "docker.io".into()
    } else {
        k.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auth_and_plain_entries() {
        let cfg = DockerConfig::parse(
            r#"{"auths":{
                "https://r.example.org:5000/v1/":{"auth":"YWxpY2U6czNjcjN0"},
                "other.example.org":{"username":"bob","password":"pw"},
                "empty.example.org":{}
            }}"#,
        )
        .unwrap();
        let c = cfg.credentials_for("r.example.org:5000").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cr3t")
        );
        assert_eq!(
            cfg.credentials_for("other.example.org").unwrap().username,
            "bob"
        );
        assert!(cfg.credentials_for("empty.example.org").is_none());
        assert!(cfg.credentials_for("nowhere").is_none());
        // what a remote build receives reads back the same
        let round = DockerConfig::parse(&cfg.to_json()).unwrap();
        assert_eq!(
            round
                .credentials_for("r.example.org:5000")
                .unwrap()
                .password,
            "s3cr3t"
        );
        assert_eq!(
            round.credentials_for("other.example.org").unwrap().username,
            "bob"
        );
    }

    #[test]
    fn missing_credentials_say_where_slipway_looked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"other:5000":{"auth":"YTpi"}},"credsStore":"desktop","credHelpers":{"ecr.example.org":"ecr-login"}}"#,
        )
        .unwrap();
        let cfg = DockerConfig::load(Some(&path)).unwrap();
        let m = cfg.missing_credentials("r.example.org:5000");
        assert!(
            m.starts_with("r.example.org:5000 requires credentials"),
            "{m}"
        );
        assert!(
            m.contains(&format!("looked in docker config {}", path.display())),
            "{m}"
        );
        assert!(m.contains("no auths entry for r.example.org:5000"), "{m}");
        assert!(
            m.contains("credsStore \"desktop\" is not read by slipway yet"),
            "{m}"
        );
        let m = cfg.missing_credentials("ecr.example.org");
        assert!(m.contains("credHelpers name \"ecr-login\""), "{m}");

        let m = DockerConfig::default().missing_credentials("r:5000");
        assert!(m.contains("no docker config was given"), "{m}");
        let m = DockerConfig::parse("{}")
            .unwrap()
            .missing_credentials("r:5000");
        assert!(
            m.contains("looked in the docker config given to the build, which has no auths entry"),
            "{m}"
        );
        let m = DockerConfig::load(Some(&dir.path().join("nope.json")));
        assert!(m.is_err(), "a named config that is missing is an error");
    }

    #[test]
    fn debug_hides_password() {
        let c = Credentials {
            username: "alice".into(),
            password: "s3cr3t".into(),
        };
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn bad_file_message_does_not_quote_secret() {
        let err =
            DockerConfig::parse(r#"{"auths":{"r":{"auth":"hunter2-not-base64!"}}}"#).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        let missing = DockerConfig::load(Some(Path::new("/nonexistent/config.json")));
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("cannot read docker config")
        );
    }
}
