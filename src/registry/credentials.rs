//! Registry credentials from a docker `config.json`: its `auths` entries, else the
//! credential helper it names (`credHelpers` per registry, `credsStore` for all). The values
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

    /// A helper's identity (refresh) token rather than a password.
    pub fn is_identity_token(&self) -> bool {
        self.username == super::cred_helper::TOKEN_USERNAME
    }

    pub fn to_docker(&self) -> bollard::auth::DockerCredentials {
        if self.is_identity_token() {
            return bollard::auth::DockerCredentials {
                identitytoken: Some(self.password.clone()),
                ..Default::default()
            };
        }
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
    /// `credsStore` and `credHelpers` (by registry): run for a registry with no auths entry.
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
        if let Some(helper) = self.helper_for(registry) {
            msg.push_str(&format!(
                ", and its credential helper docker-credential-{helper} holds none for {registry}"
            ));
        }
        msg.push_str(
            ": put the credentials in the config's auths (user and password, or auth) or its credential helper",
        );
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
        // the helpers run where the build runs, so they must be installed there
        let mut json = serde_json::json!({ "auths": auths });
        if let Some(store) = &self.creds_store {
            json["credsStore"] = store.clone().into();
        }
        if !self.cred_helpers.is_empty() {
            json["credHelpers"] = serde_json::json!(self.cred_helpers);
        }
        json.to_string()
    }

    pub fn is_empty(&self) -> bool {
        self.auths.is_empty() && self.creds_store.is_none() && self.cred_helpers.is_empty()
    }

    /// Every password, and its Basic form, for masking in kept build logs.
    pub fn secret_values(&self) -> Vec<String> {
        self.auths
            .values()
            .flat_map(|c| {
                let basic = c.basic_header();
                let encoded = basic.strip_prefix("Basic ").unwrap_or(&basic).to_string();
                [c.password.clone(), encoded]
            })
            .collect()
    }

    /// The credentials for `registry`: its auths entry, else what its credential helper
    /// holds (None when it holds none). A helper that is missing or fails is an error,
    /// so that a push never goes anonymous in its place.
    pub async fn credentials_for(&self, registry: &str) -> Result<Option<Credentials>> {
        let key = normalize(registry);
        if let Some(c) = self.auths.get(&key) {
            return Ok(Some(c.clone()));
        }
        match self.helper_for(registry) {
            Some(helper) => super::cred_helper::get(helper, &server_url(&key), registry).await,
            None => Ok(None),
        }
    }

    /// The helper docker would ask for `registry`: its credHelpers entry, else credsStore.
    fn helper_for(&self, registry: &str) -> Option<&str> {
        let key = normalize(registry);
        self.cred_helpers
            .iter()
            .find(|(k, _)| normalize(k) == key)
            .map(|(_, h)| h.as_str())
            .or(self.creds_store.as_deref())
            .filter(|h| !h.is_empty())
    }
}

fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// What the docker CLI hands a helper: the host, but Docker Hub's historical v1 URL.
fn server_url(key: &str) -> String {
    if key == "docker.io" {
        "https://index.docker.io/v1/".into()
    } else {
        key.to_string()
    }
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

    #[tokio::test]
    async fn reads_auth_and_plain_entries() {
        let cfg = DockerConfig::parse(
            r#"{"auths":{
                "https://r.example.org:5000/v1/":{"auth":"YWxpY2U6czNjcjN0"},
                "other.example.org":{"username":"bob","password":"pw"},
                "empty.example.org":{}
            }}"#,
        )
        .unwrap();
        let c = cfg
            .credentials_for("r.example.org:5000")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cr3t")
        );
        assert_eq!(
            cfg.credentials_for("other.example.org")
                .await
                .unwrap()
                .unwrap()
                .username,
            "bob"
        );
        assert!(
            cfg.credentials_for("empty.example.org")
                .await
                .unwrap()
                .is_none()
        );
        assert!(cfg.credentials_for("nowhere").await.unwrap().is_none());
        // what a remote build receives reads back the same
        let round = DockerConfig::parse(&cfg.to_json()).unwrap();
        assert_eq!(
            round
                .credentials_for("r.example.org:5000")
                .await
                .unwrap()
                .unwrap()
                .password,
            "s3cr3t"
        );
        assert_eq!(
            round
                .credentials_for("other.example.org")
                .await
                .unwrap()
                .unwrap()
                .username,
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
            m.contains("its credential helper docker-credential-desktop holds none"),
            "{m}"
        );
        let m = cfg.missing_credentials("ecr.example.org");
        assert!(m.contains("docker-credential-ecr-login holds none"), "{m}");

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
    fn picks_the_helper_docker_would() {
        let cfg = DockerConfig::parse(
            r#"{"auths":{"a:5000":{"auth":"YTpi"}},"credsStore":"desktop","credHelpers":{"https://ecr.example.org":"ecr-login"}}"#,
        )
        .unwrap();
        assert_eq!(cfg.helper_for("ecr.example.org"), Some("ecr-login"));
        assert_eq!(cfg.helper_for("other:5000"), Some("desktop"));
        assert_eq!(
            server_url(&normalize("index.docker.io")),
            "https://index.docker.io/v1/"
        );
        assert!(!cfg.is_empty(), "helpers count as credentials to hand on");
        // a remote build gets the helpers' names too, to run them there
        let round = DockerConfig::parse(&cfg.to_json()).unwrap();
        assert_eq!(round.helper_for("ecr.example.org"), Some("ecr-login"));
        assert_eq!(round.helper_for("x"), Some("desktop"));
        assert!(
            DockerConfig::parse(r#"{"credsStore":""}"#)
                .unwrap()
                .helper_for("x")
                .is_none()
        );
    }

    #[tokio::test]
    async fn auths_win_and_a_missing_helper_is_an_error() {
        let cfg = DockerConfig::parse(
            r#"{"auths":{"a:5000":{"auth":"YTpi"}},"credsStore":"slipway-test-none"}"#,
        )
        .unwrap();
        let c = cfg.credentials_for("a:5000").await.unwrap().unwrap();
        assert_eq!(c.username, "a");
        let e = cfg.credentials_for("b:5000").await.unwrap_err();
        assert!(matches!(e, Error::Registry(_)), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("docker-credential-slipway-test-none") && e.contains("b:5000"),
            "{e}"
        );
    }

    #[test]
    fn an_identity_token_goes_to_the_daemon_as_one() {
        let c = Credentials {
            username: "<token>".into(),
            password: "refresh".into(),
        };
        let d = c.to_docker();
        assert_eq!(d.identitytoken.as_deref(), Some("refresh"));
        assert_eq!((d.username, d.password), (None, None));
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
