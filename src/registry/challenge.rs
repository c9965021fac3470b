//! A registry's `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge,
//! read as RFC 7235 writes it: values are tokens or quoted strings (with `\`
//! escapes), so `scope="repository:app:pull,push"` is one value, not two.

use crate::{Error, Result};

/// Where to ask for a token, and what to ask it for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    /// `service`, `scope` and whatever else the registry named, in its order, names
    /// lowercased (they are case-insensitive): the token request's query.
    pub params: Vec<(String, String)>,
}

/// The Bearer challenge of a `WWW-Authenticate` header (which may list several
/// schemes). Basic alone means the credentials were refused.
pub fn parse_bearer_challenge(header: &str) -> Result<BearerChallenge> {
    let challenges = http_auth::parse_challenges(header).map_err(|e| {
        Error::Registry(format!("the registry's auth challenge cannot be read: {e}").into())
    })?;
    let Some(bearer) = challenges
        .into_iter()
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
    else {
        return Err(Error::Registry(
            "registry refused the credentials (401)".into(),
        ));
    };
    let mut realm = None;
    let mut params = Vec::new();
    for (name, value) in bearer.params {
        let (name, value) = (name.to_ascii_lowercase(), value.to_unescaped());
        if name == "realm" {
            realm = Some(value);
        } else {
            params.push((name, value));
        }
    }
    let realm = realm.ok_or_else(|| Error::Registry("auth challenge without realm".into()))?;
    Ok(BearerChallenge { realm, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_comma_inside_a_quoted_scope_is_part_of_it() {
        let c = parse_bearer_challenge(
            r#"Bearer realm="https://auth.example.org/token",service="registry.example.org",scope="repository:app:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.realm, "https://auth.example.org/token");
        assert_eq!(
            c.params,
            pairs(&[
                ("service", "registry.example.org"),
                ("scope", "repository:app:pull,push"),
            ])
        );
    }

    #[test]
    fn escapes_tokens_spaces_and_other_schemes() {
        let c = parse_bearer_challenge(
            r#"Basic realm="basic", bearer Realm = "https://a/t\"x\"" , Service=reg, scope="repository:a:pull repository:b:pull""#,
        )
        .unwrap();
        assert_eq!(c.realm, r#"https://a/t"x""#);
        assert_eq!(
            c.params,
            pairs(&[
                ("service", "reg"),
                ("scope", "repository:a:pull repository:b:pull"),
            ])
        );
    }

    #[test]
    fn what_is_no_bearer_challenge_is_said() {
        for (header, says) in [
            (
                r#"Basic realm="r""#,
                "registry refused the credentials (401)",
            ),
            ("Bearer service=x", "auth challenge without realm"),
            (r#"Bearer realm="unterminated"#, "cannot be read"),
        ] {
            let e = parse_bearer_challenge(header).unwrap_err().to_string();
            assert!(e.contains(says), "{header}: {e}");
        }
    }
}
