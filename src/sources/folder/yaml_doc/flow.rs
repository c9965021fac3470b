//! Flow-style documents (`{apiVersion: ..., kind: ...}`, or JSON): the status goes
//! inside the mapping, written as JSON (valid YAML flow too), every other byte kept.

use std::ops::Range;

use serde::Serialize;

/// The top-level flow mapping of a document, as byte positions.
#[derive(Debug)]
struct Mapping {
    open: usize,
    close: usize,
    /// Each `key: value` entry, without surrounding blanks, comments and commas.
    entries: Vec<Range<usize>>,
    /// A `,` after the last entry (allowed in YAML flow, not in JSON).
    trailing_comma: Option<usize>,
}

/// `doc` with its status set to `status`, or None when `doc` is not a flow mapping
/// (then it is a block document, or broken).
pub fn replace_status(doc: &str, status: &impl Serialize) -> Option<String> {
    let m = scan(doc)?;
    let b = doc.as_bytes();
    let nl = if doc.contains("\r\n") { "\r\n" } else { "\n" };
    // a mapping whose first key sits on its own line is pretty-printed: follow suit
    let indent = m.entries.first().and_then(|e| line_indent(doc, e.start));
    let json = |indent: Option<&str>| to_json(status, indent, nl);

    if let Some(e) = m.entries.iter().find(|e| is_status_key(&doc[(*e).clone()])) {
        let colon = e.start + doc[e.clone()].find(':')?;
        let vstart = skip_blank(b, colon + 1).min(e.end);
        let own = line_indent(doc, e.start).or(indent);
        let value = json(own.as_deref());
        // `status:` with nothing after it
        let value = if vstart == e.end {
            format!(" {value}")
        } else {
            value
        };
        return Some(format!("{}{}{}", &doc[..vstart], value, &doc[e.end..]));
    }
    let entry = format!("\"status\": {}", json(indent.as_deref()));
    let sep = match &indent {
        Some(i) => format!("{nl}{i}"),
        None => " ".into(),
    };
    let (at, text) = match (m.entries.last(), m.trailing_comma) {
        (None, _) => (m.open + 1, entry),
        (Some(_), Some(comma)) => (comma + 1, format!("{sep}{entry}")),
        (Some(last), None) => (last.end, format!(",{sep}{entry}")),
    };
    debug_assert!(at <= m.close);
    Some(format!("{}{}{}", &doc[..at], text, &doc[at..]))
}

fn is_status_key(entry: &str) -> bool {
    ["status", "\"status\"", "'status'"].iter().any(|k| {
        entry
            .strip_prefix(k)
            .is_some_and(|r| r.trim_start_matches([' ', '\t']).starts_with(':'))
    })
}

/// The status as JSON: one line, or pretty with `indent` as both the unit and the
/// indentation of the line it starts on.
fn to_json(status: &impl Serialize, indent: Option<&str>, nl: &str) -> String {
    let Some(indent) = indent else {
        return serde_json::to_string(status).unwrap_or_else(|_| "{}".into());
    };
    let unit = if indent.is_empty() { "  " } else { indent };
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(unit.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if status.serialize(&mut ser).is_err() {
        return "{}".into();
    }
    String::from_utf8_lossy(&out).replace('\n', &format!("{nl}{indent}"))
}

/// The blanks before `pos` on its line, when only blanks precede it there and the
/// line is not the document's first.
fn line_indent(doc: &str, pos: usize) -> Option<String> {
    let start = doc[..pos].rfind('\n')? + 1;
    let lead = &doc[start..pos];
    lead.bytes()
        .all(|c| c == b' ' || c == b'\t')
        .then(|| lead.to_string())
}

/// Finds the document's top-level flow mapping; None unless the document is exactly
/// one (with blanks, comments, a `---` marker or a tag around it).
fn scan(doc: &str) -> Option<Mapping> {
    let b = doc.as_bytes();
    let mut i = skip_blank(b, 0);
    if doc[i..].starts_with("---") && b.get(i + 3).is_none_or(|c| c.is_ascii_whitespace()) {
        i = skip_blank(b, i + 3);
    }
    // a tag or anchor before the mapping (`--- !!map {...}`)
    while matches!(b.get(i), Some(b'!' | b'&')) {
        while b.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
            i += 1;
        }
        i = skip_blank(b, i);
    }
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let open = i;
    let mut entries = Vec::new();
    let mut trailing_comma = None;
    i += 1;
    let close = loop {
        i = skip_blank(b, i);
        match b.get(i)? {
            b'}' => break i,
            b',' => {
                // an empty entry: only valid as a trailing comma, `{a: 1,}`
                trailing_comma = Some(i);
                i += 1;
                continue;
            }
            _ => {}
        }
        let (end, content_end) = skip_node(b, i)?;
        entries.push(i..content_end);
        trailing_comma = None;
        if b[end] == b'}' {
            break end;
        }
        trailing_comma = Some(end);
        i = end + 1;
    };
    if skip_blank(b, close + 1) != b.len() && !doc[skip_blank(b, close + 1)..].starts_with("...") {
        return None;
    }
    Some(Mapping {
        open,
        close,
        entries,
        trailing_comma,
    })
}

/// Skips whitespace and `#` comments from `i`.
fn skip_blank(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'#' && (i == 0 || b[i - 1].is_ascii_whitespace()) {
            while b.get(i).is_some_and(|&c| c != b'\n') {
                i += 1;
            }
        } else {
            break;
        }
    }
    i
}

/// From the start of an entry, finds the `,` or `}` that ends it: (its index, the
/// end of the entry's last content byte). None if the mapping never closes.
fn skip_node(b: &[u8], mut i: usize) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut content_end = i;
    loop {
        let c = *b.get(i)?;
        match c {
            // a quote opens a string only where a scalar starts (`it's` is plain)
            b'"' | b'\''
                if matches!(b[i - 1], b'{' | b'[' | b',' | b':')
                    || b[i - 1].is_ascii_whitespace() =>
            {
                i = skip_string(b, i)?;
                content_end = i;
                continue;
            }
            b'#' if b[i - 1].is_ascii_whitespace() => {
                i = skip_blank(b, i);
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth == 0 => return Some((i, content_end)),
            b'}' | b']' => depth -= 1,
            b',' if depth == 0 => return Some((i, content_end)),
            _ => {}
        }
        i += 1;
        if !c.is_ascii_whitespace() {
            content_end = i;
        }
    }
}

/// Past the closing quote of the string starting at `i`.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let q = b[i];
    let mut j = i + 1;
    loop {
        match *b.get(j)? {
            b'\\' if q == b'"' => j += 2,
            // '' is an escaped quote inside a single-quoted string
            c if c == q && q == b'\'' && b.get(j + 1) == Some(&b'\'') => j += 2,
            c if c == q => return Some(j + 1),
            _ => j += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn st() -> serde_json::Value {
        json!({"phase": "Succeeded", "specHash": "ab"})
    }

    #[test]
    fn adds_status_inside_a_one_line_mapping() {
        let doc = "{apiVersion: slipway.dev/v1alpha1, kind: DockerBuild, metadata: {name: a}}\n";
        let out = replace_status(doc, &st()).unwrap();
        assert_eq!(
            out,
            "{apiVersion: slipway.dev/v1alpha1, kind: DockerBuild, metadata: {name: a}, \"status\": {\"phase\":\"Succeeded\",\"specHash\":\"ab\"}}\n"
        );
        let v: serde_json::Value = crate::yaml::from_str(&out).unwrap();
        assert_eq!(v["status"], st());
        assert_eq!(v["metadata"]["name"], "a");
    }

    #[test]
    fn adds_and_replaces_status_in_pretty_json_as_json() {
        let doc = "{\n  \"kind\": \"DockerBuild\",\n  \"spec\": {\"x\": \"a,}{b\"}\n}\n";
        let out = replace_status(doc, &st()).unwrap();
        assert_eq!(
            out,
            "{\n  \"kind\": \"DockerBuild\",\n  \"spec\": {\"x\": \"a,}{b\"},\n  \"status\": {\n    \"phase\": \"Succeeded\",\n    \"specHash\": \"ab\"\n  }\n}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], st());
        // written again: replaced in place, nothing else moves
        let again = replace_status(&out, &json!({"phase": "Failed"})).unwrap();
        assert_eq!(
            again,
            "{\n  \"kind\": \"DockerBuild\",\n  \"spec\": {\"x\": \"a,}{b\"},\n  \"status\": {\n    \"phase\": \"Failed\"\n  }\n}\n"
        );
        assert_eq!(replace_status(&again, &st()).unwrap(), out);
    }

    #[test]
    fn replaces_a_status_in_the_middle_keeping_comments_and_commas() {
        let doc = "--- # the wiki\n{kind: DockerBuild,   # ours\n status: {phase: Failed, message: 'it''s, broken'},\n spec: {a: [1, 2]},\n}\n";
        let out = replace_status(doc, &json!({"phase": "Queued"})).unwrap();
        assert_eq!(
            out,
            "--- # the wiki\n{kind: DockerBuild,   # ours\n status: {\n  \"phase\": \"Queued\"\n },\n spec: {a: [1, 2]},\n}\n"
        );
        let v: serde_json::Value = crate::yaml::from_str(&out).unwrap();
        assert_eq!(v["status"]["phase"], "Queued");
        assert_eq!(v["spec"]["a"][1], 2);
    }

    #[test]
    fn empty_mappings_trailing_commas_and_crlf() {
        assert_eq!(
            replace_status("{}", &json!({})).unwrap(),
            "{\"status\": {}}"
        );
        assert_eq!(
            replace_status("{a: 1,}", &json!({})).unwrap(),
            "{a: 1, \"status\": {}}"
        );
        let out = replace_status("{\r\n  \"a\": 1\r\n}\r\n", &json!({"p": 1})).unwrap();
        assert_eq!(
            out,
            "{\r\n  \"a\": 1,\r\n  \"status\": {\r\n    \"p\": 1\r\n  }\r\n}\r\n"
        );
        assert!(
            replace_status("{\"status\":{\"p\":2}}", &json!({"p": 1})).unwrap()
                == "{\"status\":{\"p\":1}}"
        );
    }

    #[test]
    fn quotes_inside_plain_scalars_are_text() {
        let doc = "{kind: DockerBuild, note: it's fine, \"q\":\"x\"}";
        let out = replace_status(doc, &json!({})).unwrap();
        assert_eq!(
            out,
            "{kind: DockerBuild, note: it's fine, \"q\":\"x\", \"status\": {}}"
        );
        let v: serde_json::Value = crate::yaml::from_str(&out).unwrap();
        assert_eq!(v["note"], "it's fine");
    }

    #[test]
    fn block_and_broken_documents_are_not_flow() {
        assert!(replace_status("kind: DockerBuild\nspec: {a: 1}\n", &st()).is_none());
        assert!(replace_status("{kind: DockerBuild\n", &st()).is_none());
        assert!(replace_status("{a: 1}\nb: 2\n", &st()).is_none());
        assert!(replace_status("# c\n--- !!map {a: 1}\n", &st()).is_some());
    }
}
