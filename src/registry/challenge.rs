//! The bearer challenge of a registry's 401 (`WWW-Authenticate`), read with RFC 9110's
//! grammar by http-auth: a quoted value may hold commas (`scope="repository:x:pull,push"`),
//! `=` and escaped quotes.

/// The parameters of the `Bearer` challenge, in order, names lowercased (they are
/// case-insensitive); None when there is none (another scheme, or unreadable).
pub fn bearer_challenge(header: &str) -> Option<Vec<(String, String)>> {
    http_auth::parser::ChallengeParser::new(header)
        .map_while(Result::ok)
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        .map(|c| {
            c.params
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_unescaped()))
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_commas_stay_in_their_value() {
        let got = bearer_challenge(
            r#"Bearer realm="http://r/token",service="reg",scope="repository:x:pull,push""#,
        )
        .unwrap();
        assert_eq!(got[2], ("scope".into(), "repository:x:pull,push".into()));
        assert_eq!(got.len(), 3);
        assert_eq!(bearer_challenge(r#"Basic realm="x""#), None);
    }
}
