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

/// Parses every document of a file, each with its warnings (unknown fields). A
/// document that cannot be read but looks like a DockerBuild is reported as invalid
/// (keyed by its name if that can be found).
pub fn read_docs(text: &str, origin: &str) -> Vec<(Doc, Vec<String>)> {
    split_documents(text)
        .into_iter()
        .map(|span| read_doc_warned(&text[span.range.clone()], span.first_line, origin))
        .collect()
}

/// One document, without its warnings.
pub(super) fn read_doc(doc: &str, first_line: usize, origin: &str) -> Doc {
    read_doc_warned(doc, first_line, origin).0
}

/// One document, and the fields of it that nothing reads (`unknown field "spec.x"`,
/// as kubectl's field validation words it): warned about, not refused.
pub(super) fn read_doc_warned(doc: &str, first_line: usize, origin: &str) -> (Doc, Vec<String>) {
    let value = match crate::yaml::from_str::<serde_json::Value>(doc) {
        Ok(v) => v,
        Err(e) => {
            let line = e.line.map(|l| l + first_line - 1);
            let at = line.map(|l| format!(" at line {l}")).unwrap_or_default();
            let what = if e.message.contains(DUPLICATE) {
                "YAML error"
            } else {
                "YAML syntax error"
            };
            let doc = Doc::Invalid {
                key: guess_key(doc).unwrap_or_else(|| format!("{origin}#{first_line}")),
                message: format!("{origin}: {what}{at}: {}", e.message),
            };
            return (doc, Vec::new());
        }
    };
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != KIND {
        let kind = if kind.is_empty() { "(no kind)" } else { kind };
        return (Doc::Other { kind: kind.into() }, Vec::new());
    }
    let api = value
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .unwrap_or("");
    let key = key_of(&value).unwrap_or_else(|| format!("{origin}#{first_line}"));
    if api != API_VERSION {
        let message = format!("{origin}: apiVersion is '{api}'; this slipway reads {API_VERSION}");
        return (Doc::Invalid { key, message }, Vec::new());
    }
    if value
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .is_none()
    {
        let message = format!("{origin}: metadata.name is missing");
        return (Doc::Invalid { key, message }, Vec::new());
    }
    let mut value = value;
    if let Some(o) = value.as_object_mut() {
        // checked above; the derived type does not read them back
        o.remove("apiVersion");
        o.remove("kind");
    }
    let mut unknown = Vec::new();
    let read: std::result::Result<DockerBuild, _> = serde_ignored::deserialize(value, |path| {
        // `?` stands for an Option the path went through: not a field name
        let path = path.to_string().replace(".?", "");
        // status is written by slipway (maybe another version of it), not the user
        if !path.starts_with("status.") {
            unknown.push(format!("unknown field \"{path}\""));
        }
    });
    match read {
        Ok(mut b) => {
            b.metadata.namespace.get_or_insert_with(|| "default".into());
            (Doc::Build(Box::new(b)), unknown)
        }
        Err(e) => {
            let message = format!("{origin}: not a valid DockerBuild: {e}");
            (Doc::Invalid { key, message }, Vec::new())
        }
    }
}

/// How the parser words a key given twice in one mapping (it refuses them: serde's
/// maps would keep the last one silently).
const DUPLICATE: &str = "duplicate key";

fn key_of(v: &serde_json::Value) -> Option<String> {
    let name = v.pointer("/metadata/name")?.as_str()?;
    let ns = v
        .pointer("/metadata/namespace")
        .and_then(|n| n.as_str())
        .unwrap_or("default");
    Some(format!("{ns}/{name}"))
}

/// The `name:` (and `namespace:`) of a broken document's metadata, read as text.
pub(super) fn guess_key(doc: &str) -> Option<String> {
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
    crate::yaml::to_string(&Wrap { status }).map_err(|e| Error::Source {
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
        let docs: Vec<Doc> = read_docs(text, "f.yaml").into_iter().map(|d| d.0).collect();
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
        let docs: Vec<Doc> = read_docs(
            "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata: {name: a}\nspec: {source: {path: [1]}}\n---\n\
apiVersion: slipway.dev/v9\nkind: DockerBuild\nmetadata: {name: b}\nspec: {}\n",
            "f.yaml",
        )
        .into_iter()
        .map(|d| d.0)
        .collect();
        assert!(
            matches!(&docs[0], Doc::Invalid { message, .. } if message.contains("not a valid DockerBuild"))
        );
        assert!(
            matches!(&docs[1], Doc::Invalid { key, message } if key == "default/b" && message.contains("apiVersion"))
        );
    }

    const HEAD: &str =
        "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata:\n  name: a\n";

    #[test]
    fn a_key_given_twice_is_refused_with_its_name_and_line() {
        // line 9 of the file: the document starts at line 3
        let doc = format!(
            "{HEAD}spec:\n  source: {{inline: {{dockerfile: FROM scratch}}}}\n  timeoutSeconds: 5\n  timeoutSeconds: 50\n"
        );
        match read_doc(&doc, 3, "f.yaml") {
            Doc::Invalid { key, message } => {
                assert_eq!(key, "default/a");
                assert!(
                    message.contains("duplicate key \"timeoutSeconds\""),
                    "{message}"
                );
                assert!(message.contains("at line 10"), "{message}");
            }
            d => panic!("{d:?}"),
        }
        // maps too: a build argument given twice, in flow style
        let doc = format!(
            "{HEAD}spec:\n  source: {{inline: {{dockerfile: FROM scratch}}}}\n  buildArgs: {{V: '1', V: '2'}}\n"
        );
        assert!(
            matches!(read_doc(&doc, 1, "f.yaml"), Doc::Invalid { message, .. } if message.contains("duplicate key \"V\"")),
        );
    }

    #[test]
    fn unknown_fields_are_warned_about_and_the_build_kept() {
        let doc = format!(
            "{HEAD}  labels: {{team: a}}\n  colour: blue\nspec:\n  source: {{inline: {{dockerfile: FROM scratch}}}}\n  timeoutSecs: 5\n  output: {{registry: r, repositry: x}}\nextra: 1\nstatus: {{phase: Failed, fromANewerSlipway: 1}}\n"
        );
        let (read, warnings) = read_doc_warned(&doc, 1, "f.yaml");
        let Doc::Build(b) = read else {
            panic!("{read:?}")
        };
        assert_eq!(b.spec.timeout_seconds, None);
        let mut warnings = warnings;
        warnings.sort();
        assert_eq!(
            warnings,
            [
                "unknown field \"extra\"",
                "unknown field \"metadata.colour\"",
                "unknown field \"spec.output.repositry\"",
                "unknown field \"spec.timeoutSecs\"",
            ]
        );
        // a clean document warns about nothing
        let clean = format!("{HEAD}spec:\n  source: {{inline: {{dockerfile: FROM scratch}}}}\n");
        assert!(read_doc_warned(&clean, 1, "f.yaml").1.is_empty());
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
        let back: serde_json::Value = crate::yaml::from_str(&y).unwrap();
        assert_eq!(back["status"]["message"], "step 1/1 failed:\nline two");
    }
}
