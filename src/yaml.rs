//! The one place slipway reads and writes YAML, with one configuration.
//!
//! serde-saphyr: a pure-Rust parser (no libyaml underneath, safe or transpiled) that
//! refuses duplicate keys and bounds depth, nodes and alias expansion itself, so a
//! nested or "billion laughs" file is an error, not a hang or an out-of-memory.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A YAML error: one line of text, and where it is when the parser knows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub message: String,
    /// 1-based line in the text given.
    pub line: Option<usize>,
}

impl YamlError {
    fn read(e: serde_saphyr::Error) -> Self {
        let line = e.location().map(|l| l.line() as usize).filter(|&l| l > 0);
        let text = e.to_string();
        // the parser appends " at line N, column M"; `line` keeps the where
        let text = text.lines().next().unwrap_or_default();
        let message = text.rsplit_once(" at line ").map_or(text, |(m, _)| m);
        // its advice names a library option, not something a user can change
        let message = if let Some(key) = message.strip_prefix("duplicate mapping key: ") {
            let key = key.split(", set ").next().unwrap_or(key);
            format!("duplicate key \"{key}\"")
        } else if message.contains("recursion limit") || message.contains("breached: Depth") {
            "nesting limit exceeded (the document is nested too deeply)".to_string()
        } else if let Some(what) = message.strip_prefix("budget breached: ") {
            format!("size limit exceeded (the document, aliases expanded, is too big: {what})")
        } else {
            message.trim().to_string()
        };
        YamlError { message, line }
    }
}

fn options() -> serde_saphyr::Options {
    // non-exhaustive: set on the default
    let mut o = serde_saphyr::Options::default();
    o.with_snippet = false;
    o
}

/// One document.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(text, options()).map_err(YamlError::read)
}

/// Every document of a `---`-separated stream.
pub fn from_multiple<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, YamlError> {
    serde_saphyr::from_multiple_with_options(text, options()).map_err(YamlError::read)
}

/// Block-style YAML.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|e| YamlError {
        message: e.to_string(),
        line: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn errors_are_one_line_with_the_line_apart() {
        let e = from_str::<Value>("a: 1\nb: 2\nc: [unclosed\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e:?}");
        assert!(
            !e.message.contains('\n') && !e.message.contains("line 3"),
            "{e:?}"
        );
        assert!(e.message.contains('['), "{e:?}");
    }

    #[test]
    fn duplicate_keys_are_refused_at_the_second() {
        let e = from_str::<Value>("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e:?}");
        assert_eq!(e.message, "duplicate key \"a\"");
    }

    #[test]
    fn nesting_and_alias_bombs_are_refused_quickly() {
        for n in [100, 100_000] {
            let deep = "[".repeat(n) + &"]".repeat(n);
            let e = from_str::<Value>(&deep).unwrap_err();
            assert!(e.message.starts_with("nesting limit exceeded"), "{e:?}");
        }
        let mut laughs = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        let mut prev = 'a';
        for n in 'b'..='i' {
            laughs += &format!(
                "{n}: &{n} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            );
            prev = n;
        }
        let e = from_str::<Value>(&laughs).unwrap_err();
        assert!(e.message.starts_with("size limit exceeded"), "{e:?}");
    }

    #[test]
    fn strings_that_read_as_other_types_are_quoted_when_written() {
        let v = serde_json::json!({"tags": ["true", "012", "1.0", "null", "no"], "n": null});
        let text = to_string(&v).unwrap();
        assert_eq!(from_str::<Value>(&text).unwrap(), v, "{text}");
    }

    #[test]
    fn a_stream_reads_as_its_documents() {
        let docs: Vec<Value> = from_multiple("a: 1\n---\nb: 2\n").unwrap();
        assert_eq!(
            docs,
            vec![serde_json::json!({"a": 1}), serde_json::json!({"b": 2})]
        );
    }
}
