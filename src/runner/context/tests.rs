use super::stream::CHUNK_SIZE;
use super::*;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

async fn collect(s: impl Stream<Item = io::Result<Bytes>>) -> io::Result<Vec<Bytes>> {
    let mut s = std::pin::pin!(s);
    let mut chunks = Vec::new();
    while let Some(c) = s.next().await {
        chunks.push(c?);
    }
    Ok(chunks)
}

/// (path, type, contents or link target, mode, uid)
fn read_tar(data: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>, u32, u64)> {
    let mut ar = tar::Archive::new(data);
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().to_string();
            let ty = e.header().entry_type();
            let mode = e.header().mode().unwrap();
            let uid = e.header().uid().unwrap();
            let mut body = Vec::new();
            if ty == tar::EntryType::Symlink {
                body = e
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .as_bytes()
                    .to_vec();
            } else {
                e.read_to_end(&mut body).unwrap();
            }
            (path, ty, body, mode, uid)
        })
        .collect()
}

#[test]
fn slipway_state_is_never_in_a_context() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", b"FROM scratch\n");
    write(dir.path(), ".slipway/logs/ns/app/1.log", b"log\n");
    write(dir.path(), "sub/.slipway/logs/ns/b/1.log", b"log\n");
    let paths: Vec<String> = plan(dir.path(), "Dockerfile")
        .unwrap()
        .entries
        .iter()
        .map(|e| e.path.clone())
        .collect();
    assert_eq!(paths, ["Dockerfile", "sub"]);
}

fn context_err<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(Error::Context(m)) => m.to_string(),
        other => panic!("expected Error::Context, got {other:?}"),
    }
}

#[tokio::test]
async fn tar_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\nTAG x\nCOPY . /\n");
    write(
        root,
        ".dockerignore",
        b"secret\n*.log\n!keep.log\nnode_modules\n",
    );
    write(root, "a.txt", b"hello");
    write(root, "sub/b.txt", b"world");
    write(root, "secret", b"password");
    write(root, "x.log", b"log");
    write(root, "keep.log", b"kept");
    write(root, "node_modules/m.js", b"js");
    write(root, "run.sh", b"#!/bin/sh\n");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(root.join("emptydir")).unwrap();
    let long = format!("{}/{}.txt", "d".repeat(80), "f".repeat(60));
    write(root, &long, b"long");

    let plan = plan(root, "./Dockerfile").unwrap();
    assert_eq!(plan.files, 7);
    let stripped = b"FROM scratch\n# TAG x\nCOPY . /\n".to_vec();
    let chunks = collect(stream(plan, "Dockerfile", stripped.clone()))
        .await
        .unwrap();
    let data: Vec<u8> = chunks.concat();
    let entries = read_tar(&data);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        vec![
            ".dockerignore",
            "Dockerfile",
            "a.txt",
            &format!("{}/", "d".repeat(80)),
            &long,
            "emptydir/",
            "keep.log",
            "run.sh",
            "sub/",
            "sub/b.txt",
        ]
    );
    let get = |n: &str| entries.iter().find(|e| e.0 == n).unwrap();
    assert_eq!(get("Dockerfile").2, stripped);
    assert_eq!(get("a.txt").2, b"hello");
    assert_eq!(get("sub/b.txt").2, b"world");
    assert_eq!(get(&long).2, b"long");
    assert_eq!(get("run.sh").3, 0o755);
    assert_eq!(get("sub/").1, tar::EntryType::Directory);
    assert!(entries.iter().all(|e| e.4 == 0));
}

#[tokio::test]
async fn dockerfile_and_dockerignore_always_included() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "docker/Dockerfile", b"FROM scratch\n");
    write(root, "docker/other", b"x");
    write(root, ".dockerignore", b"docker\n.dockerignore\n");
    let plan = plan(root, "docker/Dockerfile").unwrap();
    let names: Vec<&str> = plan.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, vec![".dockerignore", "docker/Dockerfile"]);
    let data = collect(stream(
        plan,
        "docker/Dockerfile",
        b"FROM scratch\n".to_vec(),
    ))
    .await
    .unwrap()
    .concat();
    let entries = read_tar(&data);
    assert_eq!(entries[1].0, "docker/Dockerfile");
}

#[test]
fn escaping_symlinks_refused() {
    let cases: &[(&str, &str)] = &[
        ("abs", "/etc/passwd"),
        ("up", "../x"),
        ("sub/climb", "../../x"),
        ("l", "a/../../x"),
        ("b", "sub/./../.."),
    ];
    for (link, target) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        write(&root, "Dockerfile", b"FROM scratch\n");
        fs::create_dir_all(root.join("sub")).unwrap();
        symlink(target, root.join(link)).unwrap();
        let m = context_err(plan(&root, "Dockerfile"));
        assert!(m.contains(&format!("symlink '{link}'")), "{m}");
        assert!(m.contains(&format!("'{target}'")), "{m}");
        assert!(m.contains("outside the build context"), "{m}");
    }
}

#[test]
fn escaping_through_another_symlink_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ctx");
    write(&root, "Dockerfile", b"FROM scratch\n");
    fs::create_dir_all(root.join("sub")).unwrap();
    // sub/up -> .. is the root itself: fine alone.
    symlink("..", root.join("sub/up")).unwrap();
    assert!(plan(&root, "Dockerfile").is_ok());
    // Lexically sub/up/../x is sub/x, but the kernel goes root/.. = outside.
    symlink("sub/up/../x", root.join("link")).unwrap();
    let m = context_err(plan(&root, "Dockerfile"));
    assert!(m.contains("symlink 'link' points to 'sub/up/../x'"), "{m}");
    assert!(m.contains("through symlink 'sub/up'"), "{m}");

    // A chain ending in an absolute target (the absolute link itself is not sent).
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\n");
    write(root, ".dockerignore", b"abs\n");
    symlink("/tmp", root.join("abs")).unwrap();
    symlink("abs/file", root.join("chain")).unwrap();
    let m = context_err(plan(root, "Dockerfile"));
    assert!(m.contains("symlink 'chain' points to 'abs/file'"), "{m}");
    assert!(m.contains("through symlink 'abs'"), "{m}");

    // A cycle is refused, not looped on.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\n");
    symlink("l2", root.join("l1")).unwrap();
    symlink("l1", root.join("l2")).unwrap();
    let m = context_err(plan(root, "Dockerfile"));
    assert!(m.contains("too many levels"), "{m}");
}

#[test]
fn excluded_escaping_symlink_is_not_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\n");
    write(root, ".dockerignore", b"outside\n");
    symlink("/etc", root.join("outside")).unwrap();
    let plan = plan(root, "Dockerfile").unwrap();
    assert!(plan.entries.iter().all(|e| e.path != "outside"));
}

#[tokio::test]
async fn inside_symlinks_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\n");
    write(root, "sub/b.txt", b"b");
    write(root, "a.txt", b"a");
    symlink("sub/b.txt", root.join("inlink")).unwrap();
    symlink("../a.txt", root.join("sub/parent")).unwrap();
    symlink("nothere", root.join("dangling")).unwrap();
    symlink("sub/parent", root.join("chain")).unwrap();
    symlink(".", root.join("self")).unwrap();
    let plan = plan(root, "Dockerfile").unwrap();
    let data = collect(stream(plan, "Dockerfile", b"FROM scratch\n".to_vec()))
        .await
        .unwrap()
        .concat();
    let entries = read_tar(&data);
    let link = |n: &str| {
        let e = entries.iter().find(|e| e.0 == n).unwrap();
        assert_eq!(e.1, tar::EntryType::Symlink, "{n}");
        String::from_utf8(e.2.clone()).unwrap()
    };
    assert_eq!(link("inlink"), "sub/b.txt");
    assert_eq!(link("sub/parent"), "../a.txt");
    assert_eq!(link("dangling"), "nothere");
    assert_eq!(link("chain"), "sub/parent");
    assert_eq!(link("self"), ".");
}

#[test]
fn symlinked_dockerfile_is_sent_as_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "docker/real", b"FROM scratch\n");
    symlink("docker/real", root.join("Dockerfile")).unwrap();
    let plan = plan(root, "Dockerfile").unwrap();
    let e = plan
        .entries
        .iter()
        .find(|e| e.path == "Dockerfile")
        .unwrap();
    assert_eq!(e.kind, EntryKind::File);
    assert_eq!(e.size, 13);
}

#[test]
fn read_dockerfile_through_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "docker/Dockerfile", b"FROM scratch\n");
    let p = plan(dir.path(), "./docker//Dockerfile").unwrap();
    assert_eq!(p.dockerfile, "docker/Dockerfile");
    assert_eq!(p.read_dockerfile().unwrap(), "FROM scratch\n");
    write(dir.path(), "docker/Dockerfile", b"\xff\xfe");
    assert!(matches!(p.read_dockerfile(), Err(Error::InvalidSpec(_))));
}

#[test]
fn escaping_dockerignore_symlink_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ctx");
    write(&root, "Dockerfile", b"FROM scratch\n");
    write(dir.path(), "outside", b"[secret line\n");
    symlink("../outside", root.join(".dockerignore")).unwrap();
    let m = context_err(plan(&root, "Dockerfile"));
    assert!(m.contains("symlink '.dockerignore'"), "{m}");
    assert!(!m.contains("secret"), "{m}");
}

#[test]
fn context_dir_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("src");
    fs::create_dir_all(base.join("a/b")).unwrap();
    fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
    symlink("a/b", base.join("inside")).unwrap();
    symlink("../elsewhere", base.join("out")).unwrap();
    assert_eq!(resolve_context_dir(&base, "").unwrap(), base);
    assert_eq!(resolve_context_dir(&base, ".").unwrap(), base);
    assert_eq!(resolve_context_dir(&base, "a/b").unwrap(), base.join("a/b"));
    assert_eq!(
        resolve_context_dir(&base, "inside").unwrap(),
        base.join("a/b")
    );
    let m = context_err(resolve_context_dir(&base, "out"));
    assert!(m.contains("through symlink 'out'"), "{m}");
    assert!(matches!(
        resolve_context_dir(&base, "../src"),
        Err(Error::InvalidSpec(_))
    ));
    assert!(matches!(
        resolve_context_dir(&base, "/etc"),
        Err(Error::InvalidSpec(_))
    ));
}

#[test]
fn relative_paths_checked() {
    assert!(check_relative("docker/Dockerfile", "dockerfile").is_ok());
    assert!(check_relative("./a/..b", "path").is_ok());
    assert!(check_relative("", "contextDir").is_ok());
    for (p, what) in [
        ("../Dockerfile", "dockerfile"),
        ("a/../../b", "contextDir"),
        ("a/..", "path"),
        ("..\\x", "path"),
    ] {
        match check_relative(p, what) {
            Err(Error::InvalidSpec(m)) => {
                assert!(m.starts_with(&format!("{what} '{p}'")), "{m}");
                assert!(m.contains("'..' is not allowed"), "{m}");
            }
            other => panic!("{p}: {other:?}"),
        }
    }
    match check_relative("/etc/Dockerfile", "dockerfile") {
        Err(Error::InvalidSpec(m)) => assert!(m.contains("absolute"), "{m}"),
        other => panic!("{other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        plan(dir.path(), "../Dockerfile"),
        Err(Error::InvalidSpec(_))
    ));
}

#[test]
fn missing_dockerfile() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "other", b"x");
    assert_eq!(
        context_err(plan(dir.path(), "Dockerfile")),
        "Dockerfile 'Dockerfile' not found in the build context"
    );
    fs::create_dir(dir.path().join("adir")).unwrap();
    assert!(context_err(plan(dir.path(), "adir")).contains("not a file"));
    let m = context_err(plan(&dir.path().join("nope"), "Dockerfile"));
    assert!(m.contains("cannot open context directory"), "{m}");
}

#[test]
fn fifo_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", b"FROM scratch\n");
    let status = std::process::Command::new("mkfifo")
        .arg(dir.path().join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let plan = plan(dir.path(), "Dockerfile").unwrap();
    assert_eq!(plan.entries.len(), 1);
}

#[tokio::test]
async fn large_file_streams_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\n");
    const SIZE: u64 = 50 * 1024 * 1024;
    let f = File::create(root.join("big.bin")).unwrap();
    f.set_len(SIZE).unwrap(); // sparse: no 50 MB written to disk
    drop(f);
    let plan = plan(root, "Dockerfile").unwrap();
    assert_eq!(plan.total_bytes, SIZE + 13);

    let mut s = std::pin::pin!(stream(plan, "Dockerfile", b"FROM scratch\n".to_vec()));
    let (mut chunks, mut total) = (0usize, 0usize);
    let mut data = Vec::new();
    while let Some(c) = s.next().await {
        let c = c.unwrap();
        assert!(c.len() <= CHUNK_SIZE);
        chunks += 1;
        total += c.len();
        data.extend_from_slice(&c);
    }
    assert_eq!(total, data.len());
    assert!(chunks >= (SIZE as usize) / CHUNK_SIZE, "{chunks} chunks");
    // Two headers, padded Dockerfile, the file, and the 1 KiB end marker.
    assert_eq!(total as u64, 512 + 512 + 512 + SIZE + 1024);
    let entries = read_tar(&data);
    let big = entries.iter().find(|e| e.0 == "big.bin").unwrap();
    assert_eq!(big.2.len() as u64, SIZE);
}

#[tokio::test]
async fn file_changing_during_stream_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\n");
    write(root, "grows", b"abc");
    write(root, "vanishes", b"abc");

    let p = plan(root, "Dockerfile").unwrap();
    write(root, "grows", b"abcdef");
    let err = collect(stream(p, "Dockerfile", vec![])).await.unwrap_err();
    assert!(err.to_string().contains("'grows' changed"), "{err}");

    // Replaced by a symlink to a file of the same size outside the context.
    write(root, "grows", b"abc");
    let p = plan(root, "Dockerfile").unwrap();
    let outside = tempfile::NamedTempFile::new().unwrap();
    fs::write(outside.path(), b"xyz").unwrap();
    fs::remove_file(root.join("grows")).unwrap();
    symlink(outside.path(), root.join("grows")).unwrap();
    let err = collect(stream(p, "Dockerfile", vec![])).await.unwrap_err();
    assert!(err.to_string().contains("'grows' changed"), "{err}");
    fs::remove_file(root.join("grows")).unwrap();

    write(root, "grows", b"abc");
    let p = plan(root, "Dockerfile").unwrap();
    fs::remove_file(root.join("vanishes")).unwrap();
    let err = collect(stream(p, "Dockerfile", vec![])).await.unwrap_err();
    assert!(err.to_string().contains("'vanishes' vanished"), "{err}");
}

#[tokio::test]
async fn dropping_the_stream_stops_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\n");
    File::create(root.join("big"))
        .unwrap()
        .set_len(20 * 1024 * 1024)
        .unwrap();
    let p = plan(root, "Dockerfile").unwrap();
    let mut s = Box::pin(stream(p, "Dockerfile", vec![]));
    assert!(s.next().await.unwrap().is_ok());
    drop(s);
    // The blocking writer sees the closed channel and returns; the runtime's
    // shutdown at the end of the test would hang if it did not.
}

#[test]
fn stream_can_be_created_outside_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", b"FROM scratch\n");
    let p = plan(dir.path(), "Dockerfile").unwrap();
    let s = stream(p, "Dockerfile", vec![]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let chunks = rt.block_on(collect(s)).unwrap();
    assert!(!chunks.is_empty());
}
