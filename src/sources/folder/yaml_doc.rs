//! YAML files as text: split into documents, and replace one document's top-level
//! `status:` block while keeping every other byte (comments, key order, other
//! documents) as the user wrote it. No YAML library keeps formatting, hence by hand.

pub mod flow;

use std::ops::Range;

/// One `---`-separated document: its byte range in the file and the 1-based line
/// its text starts on. The marker line is excluded, unless the document starts on
/// it (`--- {kind: DockerBuild, ...}`, `--- !!map`): then the range starts with it,
/// so the YAML parser judges the whole document as YAML would.
#[derive(Debug, Clone, PartialEq)]
pub struct DocSpan {
    pub range: Range<usize>,
    pub first_line: usize,
}

/// Splits on `---` lines (and stops at `...`), the way YAML streams do.
pub fn split_documents(text: &str) -> Vec<DocSpan> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut pos = 0;
    for (line_no, line) in (1..).zip(text.split_inclusive('\n')) {
        let trimmed = line.trim_end_matches(['\n', '\r']);
        let is_marker = trimmed == "---"
            || trimmed.starts_with("--- ")
            || trimmed.starts_with("---\t")
            || trimmed == "...";
        if is_marker {
            docs.push(DocSpan {
                range: start..pos,
                first_line: start_line,
            });
            let after = trimmed[3..].trim_start();
            if trimmed.starts_with("---") && !after.is_empty() && !after.starts_with('#') {
                start = pos;
                start_line = line_no;
            } else {
                start = pos + line.len();
                start_line = line_no + 1;
            }
        }
        pos += line.len();
    }
    docs.push(DocSpan {
        range: start..text.len(),
        first_line: start_line,
    });
    // the empty piece before a leading `---` (or after a trailing one) is no document
    docs.retain(|d| !is_blank(&text[d.range.clone()]));
    docs
}

/// Only whitespace and comments.
pub fn is_blank(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

/// Byte range of the top-level `status:` entry inside `doc`: from its key line to
/// the next top-level line that is not part of it.
fn status_block(doc: &str) -> Option<Range<usize>> {
    let mut pos = 0;
    let mut start = None;
    for line in doc.split_inclusive('\n') {
        let top_level = line.starts_with(|c: char| !c.is_whitespace() && c != '#');
        if let Some(s) = start {
            if top_level {
                return Some(s..pos);
            }
        } else if top_level && is_status_key(line) {
            start = Some(pos);
        }
        pos += line.len();
    }
    let s = start?;
    // trailing blank lines and column-0 comments belong to what follows, not to status
    let mut end = doc.len();
    for line in doc[s..]
        .split_inclusive('\n')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let t = line.trim_end_matches(['\n', '\r']);
        if end - line.len() > s && (t.trim().is_empty() || t.starts_with('#')) {
            end -= line.len();
        } else {
            break;
        }
    }
    Some(s..end)
}

fn is_status_key(line: &str) -> bool {
    let rest = line
        .strip_prefix("status:")
        .or_else(|| line.strip_prefix("\"status\":"))
        .or_else(|| line.strip_prefix("'status':"));
    rest.is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t', '\n', '\r']))
}

/// `doc` with its status block replaced by `status_yaml` (a complete
/// `status:\n  ...\n` block), or with it appended when there is none.
pub fn replace_status(doc: &str, status_yaml: &str) -> String {
    let crlf = doc.contains("\r\n");
    let block = if crlf {
        status_yaml.replace('\n', "\r\n")
    } else {
        status_yaml.to_string()
    };
    match status_block(doc) {
        Some(r) => format!("{}{}{}", &doc[..r.start], block, &doc[r.end..]),
        None => {
            // after the last content line, before trailing comments/blank lines
            let trimmed_len = content_end(doc);
            let (head, tail) = doc.split_at(trimmed_len);
            let nl = if crlf { "\r\n" } else { "\n" };
            let sep = if head.is_empty() || head.ends_with('\n') {
                ""
            } else {
                nl
            };
            format!("{head}{sep}{block}{tail}")
        }
    }
}

/// End of the last line that is neither blank nor a column-0 comment.
fn content_end(doc: &str) -> usize {
    let mut end = 0;
    let mut pos = 0;
    for line in doc.split_inclusive('\n') {
        pos += line.len();
        let t = line.trim();
        if !(t.is_empty() || line.starts_with('#')) {
            end = pos;
        }
    }
    end
}

/// The whole file with document `span`'s text replaced by `new_doc`.
pub fn splice(text: &str, span: &DocSpan, new_doc: &str) -> String {
    format!(
        "{}{}{}",
        &text[..span.range.start],
        new_doc,
        &text[span.range.end..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# builds of the wiki\n\
apiVersion: slipway.dev/v1alpha1   # keep me\n\
kind: DockerBuild\n\
metadata: {name: a}\n\
spec:\n  source: {path: ctx}   # context\n\
status:\n  phase: Building\n  message: old\n\
# trailing comment\n\
---\n\
kind: DockerBuild\n\
metadata:\n  name: b\n\
spec:\n  source:\n    inline:\n      dockerfile: |\n        FROM scratch\n";

    #[test]
    fn splits_documents_with_line_numbers() {
        let docs = split_documents(FILE);
        assert_eq!(docs.len(), 2);
        assert!(FILE[docs[0].range.clone()].contains("name: a"));
        assert!(FILE[docs[1].range.clone()].starts_with("kind: DockerBuild\nmetadata:\n  name: b"));
        assert_eq!(docs[1].first_line, 12);
        let lead = split_documents("---\na: 1\n---\n# only a comment\n---\nb: 2\n...\n");
        assert_eq!(lead.len(), 2);
    }

    #[test]
    fn replaces_status_keeping_everything_else() {
        let docs = split_documents(FILE);
        let d0 = &FILE[docs[0].range.clone()];
        let new = replace_status(d0, "status:\n  phase: Succeeded\n");
        assert_eq!(
            new,
            "# builds of the wiki\napiVersion: slipway.dev/v1alpha1   # keep me\nkind: DockerBuild\n\
metadata: {name: a}\nspec:\n  source: {path: ctx}   # context\nstatus:\n  phase: Succeeded\n# trailing comment\n"
        );
        let whole = splice(FILE, &docs[0], &new);
        assert!(whole.ends_with(&FILE[docs[1].range.clone()]));
        assert!(whole.contains("---\nkind: DockerBuild\nmetadata:\n  name: b"));
    }

    #[test]
    fn appends_status_when_missing() {
        let docs = split_documents(FILE);
        let d1 = &FILE[docs[1].range.clone()];
        let new = replace_status(d1, "status:\n  phase: Queued\n");
        assert_eq!(new, format!("{d1}status:\n  phase: Queued\n"));
        assert_eq!(replace_status("a: 1", "status: {}\n"), "a: 1\nstatus: {}\n");
        assert_eq!(
            replace_status("a: 1\n\n# end\n", "status: {}\n"),
            "a: 1\nstatus: {}\n\n# end\n"
        );
    }

    #[test]
    fn status_in_the_middle_and_flow_style() {
        let doc = "kind: DockerBuild\nstatus: {phase: Failed}\nspec:\n  x: 1\n";
        assert_eq!(
            replace_status(doc, "status:\n  phase: Queued\n"),
            "kind: DockerBuild\nstatus:\n  phase: Queued\nspec:\n  x: 1\n"
        );
        // a key merely starting with "status" is not the status block
        let doc = "statusNote: x\nspec: {}\n";
        assert_eq!(
            replace_status(doc, "status: {}\n"),
            "statusNote: x\nspec: {}\nstatus: {}\n"
        );
    }

    #[test]
    fn keeps_crlf_line_endings() {
        let doc = "kind: DockerBuild\r\nstatus:\r\n  phase: Queued\r\n";
        assert_eq!(
            replace_status(doc, "status:\n  phase: Building\n"),
            "kind: DockerBuild\r\nstatus:\r\n  phase: Building\r\n"
        );
    }

    #[test]
    fn a_document_may_start_on_its_marker_line() {
        let text = "--- {apiVersion: v1, kind: A,
  metadata: {name: a}}
--- # just a comment
kind: B
--- !!map
kind: C
---
";
        let docs = split_documents(text);
        let parts: Vec<_> = docs.iter().map(|d| &text[d.range.clone()]).collect();
        assert_eq!(
            parts,
            [
                "--- {apiVersion: v1, kind: A,\n  metadata: {name: a}}\n",
                "kind: B\n",
                "--- !!map\nkind: C\n"
            ]
        );
        assert_eq!(
            docs.iter().map(|d| d.first_line).collect::<Vec<_>>(),
            [1, 4, 5]
        );
        for (part, kind) in parts.iter().zip(["A", "B", "C"]) {
            let v: serde_json::Value = crate::yaml::from_str(part).unwrap();
            assert_eq!(v["kind"], kind);
        }
        // YAML allows no block mapping on the marker line: the parser says so
        let bad = split_documents("a: 1\n--- kind: B\n");
        assert_eq!(bad.len(), 2);
        assert!(crate::yaml::from_str::<serde_json::Value>("--- kind: B\n").is_err());
    }

    #[test]
    fn a_flow_document_on_the_marker_line_gets_its_status_inside() {
        let text = "a: 1\n--- {kind: DockerBuild, metadata: {name: x}}   # mine\n---\nb: 2\n";
        let docs = split_documents(text);
        let doc = &text[docs[1].range.clone()];
        let new = flow::replace_status(doc, &serde_json::json!({"phase": "Queued"})).unwrap();
        let whole = splice(text, &docs[1], &new);
        assert_eq!(
            whole,
            "a: 1\n--- {kind: DockerBuild, metadata: {name: x}, \"status\": {\"phase\":\"Queued\"}}   # mine\n---\nb: 2\n"
        );
        let again = split_documents(&whole);
        let v: serde_json::Value = crate::yaml::from_str(&whole[again[1].range.clone()]).unwrap();
        assert_eq!(v["status"]["phase"], "Queued");
    }
}
