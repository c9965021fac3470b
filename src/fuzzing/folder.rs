//! The watch folder's YAML loader and status writer.

use crate::api::{Condition, DockerBuildStatus, Phase};
use crate::sources::folder::{Doc, merge_status, read_docs, split_documents, status_yaml};

const ORIGIN: &str = "fuzz.yaml";

/// Two statuses unlike each other in every field the writer formats, the second with
/// text that needs quoting in YAML and JSON alike.
fn statuses() -> [DockerBuildStatus; 2] {
    let first = DockerBuildStatus {
        phase: Some(Phase::Succeeded),
        observed_generation: Some(3),
        image_digest: Some("sha256:0123".into()),
        pushed_tags: vec!["r:5000/a:1".into(), "r:5000/a:latest".into()],
        ..Default::default()
    };
    let second = DockerBuildStatus {
        phase: Some(Phase::Failed),
        message: Some(
            "line: one\n# not a comment\n  - \"quoted\" 'x' {a, b} [c]\r\n---\n...".into(),
        ),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: Some("BuildFailed".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    [first, second]
}

/// Every DockerBuild of a file, by its index among the documents.
fn builds(text: &str) -> Vec<(usize, String, Option<DockerBuildStatus>)> {
    read_docs(text, ORIGIN)
        .into_iter()
        .enumerate()
        .filter_map(|(i, (doc, _))| match doc {
            Doc::Build(b) => Some((i, b.key(), b.status.clone())),
            _ => None,
        })
        .collect()
}

fn write(text: &str, key: &str, status: &DockerBuildStatus) -> String {
    let block = status_yaml(status).expect("a status serialises");
    merge_status(text, key, ORIGIN, status, &block).expect("the resource is in the file")
}

/// Writing a status into each DockerBuild of a file: the file still parses, with the
/// same documents; the status reads back; every byte outside that document's status
/// is kept (writing A, then B, then A again gives the file A gave); writing the same
/// status twice changes nothing.
pub fn check_status_write(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let before = builds(text);
    let kinds = doc_kinds(text);
    let [a, b] = statuses();
    for (index, key, _) in &before {
        // only the first document with a key gets the status (as the watcher writes)
        if before.iter().find(|(_, k, _)| k == key).map(|f| f.0) != Some(*index) {
            continue;
        }
        let with_a = write(text, key, &a);
        let after = builds(&with_a);
        assert_eq!(doc_kinds(&with_a), kinds, "documents changed:\n{with_a}");
        for ((i, k, s), (i2, k2, s2)) in before.iter().zip(&after) {
            assert_eq!((i, k), (i2, k2), "documents changed:\n{with_a}");
            let want = if i == index { Some(&a) } else { s.as_ref() };
            assert_eq!(
                s2.as_ref(),
                want,
                "status of {k} did not read back:\n{with_a}"
            );
        }
        assert_eq!(write(&with_a, key, &a), with_a, "not idempotent");
        let with_b = write(&with_a, key, &b);
        let status_b = builds(&with_b).into_iter().find(|(i, ..)| i == index);
        assert_eq!(status_b.and_then(|s| s.2), Some(b.clone()), "{with_b}");
        assert_eq!(
            write(&with_b, key, &a),
            with_a,
            "bytes outside status changed"
        );
    }
}

/// What each document is, to check a write kept the others as they were.
fn doc_kinds(text: &str) -> Vec<String> {
    let spans = split_documents(text);
    read_docs(text, ORIGIN)
        .into_iter()
        .zip(spans)
        .map(|((doc, _), span)| match doc {
            Doc::Build(b) => format!("build {}", b.key()),
            Doc::Other { kind } => format!("other {kind} {}", &text[span.range]),
            // a nameless broken document is keyed by its line, which a longer
            // status above it moves
            Doc::Invalid { key, .. } if key.starts_with(&format!("{ORIGIN}#")) => {
                "invalid, unnamed".to_string()
            }
            Doc::Invalid { key, .. } => format!("invalid {key}"),
        })
        .collect()
}
