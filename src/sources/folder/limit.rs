//! A resource file is read only when it is small enough to be a resource: a file of
//! tens of megabytes read whole, and parsed, costs several times its size in memory.

use std::io::Read as _;
use std::path::Path;

use super::parse::guess_key;
use super::yaml_doc::split_documents;

/// 1.5 MiB: etcd's default request limit, so no bigger DockerBuild could exist in a
/// cluster either.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1536 * 1024;

/// How much of a refused file is read to name the resources it holds.
const NAMING_PREFIX: u64 = 64 * 1024;

/// One resource file, read within the limit.
#[derive(Debug, PartialEq)]
pub(super) enum FileRead {
    Text(String),
    Gone,
    Unreadable(String),
    /// Over the limit: its size and the keys of the resources its start names.
    TooLarge {
        size: u64,
        keys: Vec<String>,
    },
}

pub(super) fn read(path: &Path, max: u64) -> FileRead {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileRead::Gone,
        Err(e) => return FileRead::Unreadable(e.to_string()),
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > max {
        return too_large(file, size);
    }
    // the file may grow between the stat and the read: never take more than the limit
    let mut bytes = Vec::with_capacity(size as usize);
    if let Err(e) = (&mut file).take(max + 1).read_to_end(&mut bytes) {
        return FileRead::Unreadable(e.to_string());
    }
    if bytes.len() as u64 > max {
        let size = file.metadata().map(|m| m.len()).unwrap_or(max + 1);
        return FileRead::TooLarge {
            size,
            keys: names_in(&bytes[..NAMING_PREFIX.min(max) as usize]),
        };
    }
    match String::from_utf8(bytes) {
        Ok(t) => FileRead::Text(t),
        Err(_) => FileRead::Unreadable("it is not UTF-8 text".into()),
    }
}

fn too_large(file: std::fs::File, size: u64) -> FileRead {
    let mut start = Vec::new();
    let keys = match file.take(NAMING_PREFIX).read_to_end(&mut start) {
        Ok(_) => names_in(&start),
        Err(_) => Vec::new(),
    };
    FileRead::TooLarge { size, keys }
}

/// The DockerBuilds the complete lines of `start` name (a cut line could name another).
fn names_in(start: &[u8]) -> Vec<String> {
    let end = start.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = match std::str::from_utf8(&start[..end]) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&start[..e.valid_up_to()]).unwrap_or_default(),
    };
    let mut keys: Vec<String> = split_documents(text)
        .into_iter()
        .filter_map(|span| guess_key(&text[span.range]))
        .collect();
    keys.dedup();
    keys
}

/// What the status (or the log, when no resource can be named) says of a refused file.
/// The text of one resource file read on its own (`slipway build FILE`), or what
/// a person is told instead.
pub fn read_one(path: &Path, max: u64) -> Result<String, String> {
    let origin = path.display().to_string();
    match read(path, max) {
        FileRead::Text(t) => Ok(t),
        FileRead::Gone => Err(format!("{origin}: no such file")),
        FileRead::Unreadable(e) => Err(format!("{origin}: cannot read the file: {e}")),
        FileRead::TooLarge { size, .. } => Err(too_large_message(&origin, size, max)),
    }
}

pub(super) fn too_large_message(origin: &str, size: u64, max: u64) -> String {
    format!(
        "{origin}: the file is {size} bytes, over the {max}-byte limit of a resource file (--max-resource-file-bytes, by default 1.5 MiB, etcd's request limit); it was not read: split it into smaller files"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata:\n  name: NAME\n  namespace: team\nspec:\n  source: {inline: {dockerfile: \"FROM scratch\"}}\n";

    fn doc(name: &str) -> String {
        DOC.replace("NAME", name)
    }

    #[test]
    fn a_file_within_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.yaml");
        std::fs::write(&p, doc("a")).unwrap();
        assert_eq!(read(&p, doc("a").len() as u64), FileRead::Text(doc("a")));
        assert_eq!(read(&dir.path().join("gone.yaml"), 10), FileRead::Gone);
    }

    #[test]
    fn a_file_over_the_limit_is_refused_and_its_resources_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.yaml");
        // two documents, then a third whose name line is beyond what is read
        let pad = format!("  buildArgs:\n{}", "    k: v\n".repeat(20_000));
        let text = format!(
            "{}---\n{}{pad}---\n{}",
            doc("one"),
            doc("two"),
            doc("three")
        );
        std::fs::write(&p, &text).unwrap();
        let got = read(&p, 4096);
        assert_eq!(
            got,
            FileRead::TooLarge {
                size: text.len() as u64,
                keys: vec!["team/one".into(), "team/two".into()],
            }
        );
        let m = too_large_message("big.yaml", 200_000, 4096);
        assert!(m.starts_with("big.yaml: the file is 200000 bytes, over the 4096-byte limit"));
        assert!(m.contains("--max-resource-file-bytes"), "{m}");
    }

    #[test]
    fn a_name_cut_by_the_prefix_is_not_guessed() {
        // "  name: tw" of "two" must not become a resource named "tw"
        let text = doc("two");
        let cut = text.find("two").unwrap() + 2;
        assert_eq!(names_in(&text.as_bytes()[..cut]), Vec::<String>::new());
        assert_eq!(names_in(text.as_bytes()), vec!["team/two".to_string()]);
    }

    /// The parser's own limits stay: nesting and alias expansion (a billion laughs)
    /// are refused in the document's status, not followed into the memory.
    #[test]
    fn deep_nesting_and_alias_bombs_are_refused() {
        use super::super::parse::{Doc, read_docs};
        let nested = format!(
            "{}  buildArgs: {}{}\n",
            doc("deep"),
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let mut laughs = String::from("  x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            laughs.push_str(&format!("  x{i}: &a{i} [{refs}]\n"));
        }
        let bomb = format!(
            "{}  buildArgs:\n  {}\n",
            doc("bomb"),
            laughs.replace('\n', "\n  ")
        );
        for (text, key, why) in [
            (nested, "team/deep", "nesting limit exceeded"),
            (bomb, "team/bomb", "size limit exceeded"),
        ] {
            let docs = read_docs(&text, "f.yaml");
            match &docs[..] {
                [(Doc::Invalid { key: k, message }, _)] => {
                    assert_eq!(k, key);
                    assert!(message.contains(why), "{message}");
                }
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    /// A file that grows past the limit fails the resources it held, even when its
    /// start no longer names them; its status is never written into it.
    #[tokio::test]
    async fn a_file_grown_over_the_limit_fails_the_resources_it_held() {
        use super::super::{FolderSource, Source, SourceEvent};
        use crate::api::DockerBuildStatus;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.yaml");
        std::fs::write(&p, doc("a")).unwrap();
        let source = FolderSource::new(dir.path()).with_max_file_bytes(4096);
        let p = std::fs::canonicalize(&p).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        source.report_file(&p, &tx).await;
        assert!(matches!(rx.recv().await, Some(SourceEvent::Applied(_))));

        let grown = format!("{}{}", "# padding\n".repeat(10_000), doc("a"));
        std::fs::write(&p, &grown).unwrap();
        source.report_file(&p, &tx).await;
        match rx.try_recv() {
            Ok(SourceEvent::Invalid { key, message, .. }) => {
                assert_eq!(key, "team/a");
                assert!(message.contains("a.yaml: the file is 100"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(rx.try_recv().is_err(), "nothing reported deleted");
        source
            .write_status("team/a", "a.yaml", &DockerBuildStatus::default())
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), grown);
    }
}
