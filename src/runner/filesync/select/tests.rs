use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use super::*;
use crate::runner::context;
use crate::runner::filesync::{CONTEXT, DOCKERFILE, LocalDirs};

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn dirs(root: &Path) -> LocalDirs {
    let plan = context::plan(root, "Dockerfile").unwrap();
    LocalDirs::for_build(plan, b"FROM scratch\n".to_vec()).unwrap()
}

/// (path, mode) of what a request for `name` with `req` sends.
fn sent(d: &LocalDirs, name: &str, req: &Request) -> Vec<(String, u32)> {
    let dir = &d.dirs[name];
    let filter = Filter::new(&dir.items, req, &dir.keep).unwrap();
    select(&dir.items, &filter)
        .into_iter()
        .map(|i| {
            let s = stat(&dir.items[i]);
            (s.path, s.mode)
        })
        .collect()
}

fn paths(v: &[(String, u32)]) -> Vec<&str> {
    v.iter().map(|(p, _)| p.as_str()).collect()
}

/// fsutil's `ComparePath`: `/` sorts before every other byte.
fn compare_path(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<u16> {
        s.bytes()
            .map(|c| if c == b'/' { 0 } else { u16::from(c) + 1 })
            .collect()
    };
    key(a).cmp(&key(b))
}

#[test]
fn stats_come_in_fsutils_walk_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\nTAG x\n");
    for f in ["a/x", "a-b", "a.txt", "B", "a/y/z", "ab/c", "_"] {
        write(root, f, b"1");
    }
    let got = sent(&dirs(root), CONTEXT, &Request::default());
    // a plain string sort would put `a-b` and `a.txt` before `a/x`
    assert_eq!(
        paths(&got),
        [
            "B",
            "Dockerfile",
            "_",
            "a",
            "a/x",
            "a/y",
            "a/y/z",
            "a-b",
            "a.txt",
            "ab",
            "ab/c"
        ]
    );
    for w in got.windows(2) {
        assert_eq!(
            compare_path(&w[0].0, &w[1].0),
            std::cmp::Ordering::Less,
            "{w:?}"
        );
    }
}

#[test]
fn modes_are_go_file_modes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\n");
    write(root, "run.sh", b"#!/bin/sh\n");
    write(root, "suid", b"x");
    write(root, "sub/f", b"x");
    fs::create_dir(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(root.join("suid"), fs::Permissions::from_mode(0o6644)).unwrap();
    fs::set_permissions(root.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    symlink("sub/f", root.join("link")).unwrap();
    let got: HashMap<String, u32> = sent(&dirs(root), CONTEXT, &Request::default())
        .into_iter()
        .collect();
    // Go's os.FileMode: ModeDir 1<<31, ModeSymlink 1<<27, ModeSetuid 1<<23,
    // ModeSetgid 1<<22, ModeSticky 1<<20; permission bits as Unix
    assert_eq!(got["run.sh"], 0o755);
    assert_eq!(got["suid"], (1 << 23) | (1 << 22) | 0o644);
    assert_eq!(got["sub"], 0x8000_0000 | 0o750);
    assert_eq!(got["tmp"], 0x8000_0000 | (1 << 20) | 0o777);
    assert_eq!(got["link"], 0x0800_0000 | 0o777);
}

#[test]
fn stat_fields_match_fsutils() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\nTAG x\n");
    write(root, "f", b"hello");
    symlink("target/name", root.join("l")).unwrap();
    let d = dirs(root);
    let items = &d.dirs[CONTEXT].items;
    let by = |p: &str| stat(items.iter().find(|i| i.entry.path == p).unwrap());
    let f = by("f");
    let meta = fs::metadata(root.join("f")).unwrap();
    let ns = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert_eq!((f.size, f.mod_time, f.uid, f.gid), (5, ns, 0, 0));
    let l = by("l");
    assert_eq!((l.linkname.as_str(), l.size), ("target/name", 11));
    // the stripped Dockerfile's size, not the file's
    assert_eq!(by("Dockerfile").size, 13);
}

#[test]
fn excluded_parents_are_sent_before_what_they_hold() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\n");
    write(root, ".dockerignore", b"sub\n!sub/deep/keep\nsecret\n");
    write(root, "sub/deep/keep", b"k");
    write(root, "sub/deep/drop", b"d");
    write(root, "sub/drop", b"d");
    write(root, "secret", b"s");
    let d = dirs(root);
    assert_eq!(
        paths(&sent(&d, CONTEXT, &Request::default())),
        [
            ".dockerignore",
            "Dockerfile",
            "sub",
            "sub/deep",
            "sub/deep/keep"
        ]
    );
    // a filter that keeps nothing below them sends no parent either
    let req = Request {
        exclude: vec!["sub/deep/keep".into()],
        ..Default::default()
    };
    assert_eq!(
        paths(&sent(&d, CONTEXT, &req)),
        [".dockerignore", "Dockerfile"]
    );
}

#[test]
fn followpaths_send_only_those_files_and_their_links() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\n");
    write(root, "conf/ignore", b"x\n");
    write(root, "other", b"o");
    symlink("conf/ignore", root.join(".dockerignore")).unwrap();
    let d = dirs(root);
    let req = Request {
        follow: vec![".dockerignore".into()],
        ..Default::default()
    };
    assert_eq!(
        paths(&sent(&d, CONTEXT, &req)),
        [".dockerignore", "conf", "conf/ignore"]
    );
    // no such file: nothing at all
    let req = Request {
        follow: vec!["nothere".into()],
        ..Default::default()
    };
    assert!(sent(&d, CONTEXT, &req).is_empty());
}

#[test]
fn include_and_exclude_patterns_as_patternmatcher() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\n");
    write(root, ".dockerignore", b"");
    write(root, "src/a.rs", b"a");
    write(root, "src/b.txt", b"b");
    write(root, "docs/x.rs", b"x");
    let d = dirs(root);
    let req = Request {
        include: vec!["src".into(), "docs/*.rs".into()],
        exclude: vec![
            "**/*.txt".into(),
            "Dockerfile".into(),
            ".dockerignore".into(),
        ],
        ..Default::default()
    };
    assert_eq!(
        paths(&sent(&d, CONTEXT, &req)),
        ["docs", "docs/x.rs", "src", "src/a.rs"]
    );
    // excluding them by pattern does not drop the Dockerfile and .dockerignore the
    // context always carries (as the tar did)
    let req = Request {
        exclude: vec!["*".into()],
        ..Default::default()
    };
    assert_eq!(
        paths(&sent(&d, CONTEXT, &req)),
        [".dockerignore", "Dockerfile"]
    );
}

#[test]
fn dockerfile_dir_holds_the_stripped_dockerfile_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "docker/Dockerfile.app", b"FROM scratch\nTAG x\n");
    write(root, "other", b"o");
    let plan = context::plan(root, "docker/Dockerfile.app").unwrap();
    let d = LocalDirs::for_build(plan, b"FROM scratch\n".to_vec()).unwrap();
    assert_eq!(d.dockerfile_name(), "Dockerfile.app");
    let req = Request {
        follow: vec![
            "Dockerfile.app".into(),
            "Dockerfile.app.dockerignore".into(),
        ],
        ..Default::default()
    };
    let got = sent(&d, DOCKERFILE, &req);
    assert_eq!(paths(&got), ["Dockerfile.app"]);
    assert_eq!(stat(&d.dirs[DOCKERFILE].items[0]).size, 13);
}

#[test]
fn clean_never_climbs_above_the_root() {
    assert_eq!(clean("a//b/./c/../d/"), "a/b/d");
    assert_eq!(clean("../../x"), "x");
    assert_eq!(clean("/abs"), "abs");
}
