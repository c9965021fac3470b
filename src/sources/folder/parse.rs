//! Reading a resource file: every document of it as a DockerBuild, something else,
//! or a broken document keyed by the name it claims.

use serde::Serialize;

use super::yaml_doc::split_documents;
use crate::api::{API_VERSION, DockerBuild, DockerBuildStatus, KIND};
use crate::{Error, Result};

/// One document of a file, read.
#[derive(Debug)]
pub enum Doc {
    Build(Box<DockerBuild>),
    Other { kind: String },
    Invalid { key: String, message: String },
}

/// Parses every document of a file. A document that cannot be read but looks like a
/// DockerBuild is reported as invalid (keyed by its name if that can be found).
pub fn read_docs(text: &str, origin: &str) -> Vec<Doc> {
    split_documents(text)
        .into_iter()
        .map(|span| read_doc(&text[span.range.clone()], span.first_line, origin))
        .collect()
}

pub(super) fn read_doc(doc: &str, first_line: usize, origin: &str) -> Doc {
    let value: serde_json::Value = match serde_yaml_ng::from_str(doc) {
        Ok(v) => v,
        Err(e) => {
            let line = e.location().map(|l| l.line() + first_line - 1);
            let at = line.map(|l| format!(" at line {l}")).unwrap_or_default();
            let msg = e.to_string();
            // serde_yaml_ng appends its own "at line N column M" relative to the document
            let msg = msg.split(" at line ").next().unwrap_or(&msg);
            return Doc::Invalid {
                key: guess_key(doc).unwrap_or_else(|| format!("{origin}#{first_line}")),
                message: format!("{origin}: YAML syntax error{at}: {msg}"),
            };
        }
    };
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != KIND {
        return Doc::Other {
            kind: if kind.is_empty() {
                "(no kind)".into()
            } else {
                kind.into()
            },
        };
    }
    let api = value
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .unwrap_or("");
    let key = key_of(&value).unwrap_or_else(|| format!("{origin}#{first_line}"));
    if api != API_VERSION {
        return Doc::Invalid {
            key,
            message: format!("{origin}: apiVersion is '{api}'; this slipway reads {API_VERSION}"),
        };
    }
    if value
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .is_none()
    {
        return Doc::Invalid {
            key,
            message: format!("{origin}: metadata.name is missing"),
        };
    }
    match serde_json::from_value::<DockerBuild>(value) {
        Ok(mut b) => {
            b.metadata.namespace.get_or_insert_with(|| "default".into());
            Doc::Build(Box::new(b))
        }
        Err(e) => Doc::Invalid {
            key,
            message: format!("{origin}: not a valid DockerBuild: {e}"),
        },
    }
}

fn key_of(v: &serde_json::Value) -> Option<String> {
    let name = v.pointer("/metadata/name")?.as_str()?;
    let ns = v
        .pointer("/metadata/namespace")
        .and_then(|n| n.as_str())
        .unwrap_or("default");
    Some(format!("{ns}/{name}"))
}

/// The `name:` (and `namespace:`) of a broken document's metadata, read as text.
fn guess_key(doc: &str) -> Option<String> {
    if !doc.lines().any(|l| l.trim_end() == format!("kind: {KIND}")) {
        return None;
    }
    let field = |f: &str| {
        doc.lines()
            .find_map(|l| l.strip_prefix(&format!("  {f}:")))
            .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
            .filter(|v| !v.is_empty())
    };
    let name = field("name")?;
    Some(format!(
        "{}/{name}",
        field("namespace").unwrap_or_else(|| "default".into())
    ))
}

/// The status block as YAML, two-space indented under `status:`.
pub fn status_yaml(status: &DockerBuildStatus) -> Result<String> {
    #[derive(Serialize)]
    struct Wrap<'a> {
        status: &'a DockerBuildStatus,
    }
    serde_yaml_ng::to_string(&Wrap { status }).map_err(|e| Error::Source {
        path: String::new(),
        message: format!("cannot serialise status: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_builds_others_and_broken_documents() {
        let text = "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata: {name: a}\n\
spec: {source: {inline: {dockerfile: FROM scratch}}}\n---\n\
apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n\
apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata:\n  name: broken\nspec: [unclosed\n";
        let docs = read_docs(text, "f.yaml");
        assert_eq!(docs.len(), 3);
        assert!(matches!(&docs[0], Doc::Build(b) if b.key() == "default/a"));
        assert!(matches!(&docs[1], Doc::Other { kind } if kind == "ConfigMap"));
        match &docs[2] {
            Doc::Invalid { key, message } => {
                assert_eq!(key, "default/broken");
                assert!(
                    message.contains("f.yaml: YAML syntax error at line 1"),
                    "{message}"
                );
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn wrong_field_types_and_versions_are_invalid() {
        let docs = read_docs(
            "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata: {name: a}\nspec: {source: {path: [1]}}\n---\n\
apiVersion: slipway.dev/v9\nkind: DockerBuild\nmetadata: {name: b}\nspec: {}\n",
            "f.yaml",
        );
        assert!(
            matches!(&docs[0], Doc::Invalid { message, .. } if message.contains("not a valid DockerBuild"))
        );
        assert!(
            matches!(&docs[1], Doc::Invalid { key, message } if key == "default/b" && message.contains("apiVersion"))
        );
    }

    #[test]
    fn status_yaml_is_a_block() {
        let s = DockerBuildStatus {
            phase: Some(crate::api::Phase::Failed),
            message: Some("step 1/1 failed:\nline two".into()),
            ..Default::default()
        };
        let y = status_yaml(&s).unwrap();
        assert!(y.starts_with("status:\n  phase: Failed\n"), "{y}");
        let back: serde_json::Value = serde_yaml_ng::from_str(&y).unwrap();
        assert_eq!(back["status"]["message"], "step 1/1 failed:\nline two");
    }
}
