//! The registry's bearer challenge (`WWW-Authenticate: Bearer realm="...",...`).

use crate::registry::parse_bearer_challenge;

/// Any header value parses without panicking; and a challenge written from a realm
/// and the input's `key=value` lines, each value a quoted-string (escapes, commas,
/// `=` and spaces inside), parses back to exactly those parameters, in order.
pub fn check_challenge(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_bearer_challenge(text);

    let params: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.bytes().all(is_tchar))
        // the realm is given below, first
        .filter(|(k, _)| !k.eq_ignore_ascii_case("realm"))
        .map(|(k, v)| {
            // a header value is visible ASCII, spaces and tabs
            let v: String = v
                .chars()
                .filter(|c| *c == ' ' || c.is_ascii_graphic())
                .collect();
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    if params.is_empty() {
        return;
    }
    // the separators vary with the input: `,` with or without blanks around it
    let sep = [",", ", ", " ,", " , ", ",\t"][text.len() % 5];
    let header = params
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(sep);
    let parsed = parse_bearer_challenge(&format!("Bearer realm=\"r\"{sep}{header}"))
        .unwrap_or_else(|e| panic!("from {header:?}: {e}"));
    assert_eq!(parsed.realm, "r", "from {header:?}");
    assert_eq!(parsed.params, params, "from {header:?}");
}

/// RFC 9110's token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
