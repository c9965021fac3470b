use super::*;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---- url ----

type Routes = Vec<(String, u16, Vec<u8>)>;

/// A one-request-per-connection HTTP/1.1 server on loopback.
async fn serve(routes: Routes) -> String {
    serve_with_headers(routes, "").await
}

/// [`serve`], with `headers` (`name: value\r\n` lines) in every response.
async fn serve_with_headers(routes: Routes, headers: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let routes = routes.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req);
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = routes
                    .iter()
                    .find(|r| r.0 == path)
                    .map(|r| (r.1, r.2.clone()))
                    .unwrap_or((404, b"not found".to_vec()));
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    };
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "./", io::empty()).unwrap();
    add(&mut b, "Dockerfile", b"FROM scratch\nCOPY . /\n", 0o644);
    add(&mut b, "sub/run.sh", b"#!/bin/sh\n", 0o755);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "sub/link", "../Dockerfile").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(&mut h, "hard", "Dockerfile").unwrap();
    b.into_inner().unwrap()
}

/// A tar of one entry with a raw name, which `tar::Builder` would refuse.
fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, ty, link, body) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_entry_type(*ty);
        h.set_mtime(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn check_sample(dest: &Path) {
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::read_to_string(dest.join("Dockerfile")).unwrap(),
        "FROM scratch\nCOPY . /\n"
    );
    assert_eq!(
        fs::metadata(dest.join("sub/run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        fs::read_link(dest.join("sub/link")).unwrap(),
        Path::new("../Dockerfile")
    );
    assert_eq!(
        fs::read_to_string(dest.join("hard")).unwrap(),
        "FROM scratch\nCOPY . /\n"
    );
}

async fn fetch_url(base: &str, path: &str) -> (Result<Option<String>>, tempfile::TempDir) {
    fetch_with(base, path, UrlLimits::default()).await
}

async fn fetch_with(
    base: &str,
    path: &str,
    limits: UrlLimits,
) -> (Result<Option<String>>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let r = url(
        &client,
        &format!("{base}{path}"),
        &dir.path().join("ctx"),
        limits,
    )
    .await;
    (r, dir)
}

fn context_msg<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(Error::Context(m)) => m.to_string(),
        other => panic!("expected Error::Context, got {other:?}"),
    }
}

#[tokio::test]
async fn url_plain_gzip_and_zstd() {
    let tar = sample_tar();
    let base = serve(vec![
        ("/c.tar".into(), 200, tar.clone()),
        ("/c.tar.gz".into(), 200, gzip(&tar)),
        (
            "/c.tar.zst".into(),
            200,
            zstd::encode_all(&tar[..], 3).unwrap(),
        ),
        // The format comes from the bytes, not the name.
        ("/misnamed.tar".into(), 200, gzip(&tar)),
    ])
    .await;
    for path in ["/c.tar", "/c.tar.gz", "/c.tar.zst", "/misnamed.tar"] {
        let (r, dir) = fetch_url(&base, path).await;
        r.unwrap_or_else(|e| panic!("{path}: {e}"));
        check_sample(&dir.path().join("ctx"));
    }
}

#[tokio::test]
async fn url_reports_the_version_it_fetched() {
    let tar = sample_tar();
    let route = || vec![("/c.tar".to_string(), 200, tar.clone())];
    let both = "etag: \"v7\"\r\nlast-modified: Wed, 21 Oct 2026 07:28:00 GMT\r\n";
    let base = serve_with_headers(route(), both).await;
    let (r, dir) = fetch_url(&base, "/c.tar").await;
    assert_eq!(r.unwrap().as_deref(), Some("\"v7\""), "the ETag wins");
    check_sample(&dir.path().join("ctx"));
    let dated = "last-modified: Wed, 21 Oct 2026 07:28:00 GMT\r\n";
    let base = serve_with_headers(route(), dated).await;
    assert_eq!(
        fetch_url(&base, "/c.tar").await.0.unwrap().as_deref(),
        Some("Wed, 21 Oct 2026 07:28:00 GMT")
    );
    let base = serve(route()).await;
    assert_eq!(fetch_url(&base, "/c.tar").await.0.unwrap(), None);
}

#[tokio::test]
async fn url_http_errors() {
    let base = serve(vec![("/boom".into(), 500, b"oops".to_vec())]).await;
    let m = context_msg(fetch_url(&base, "/missing.tar").await.0);
    assert!(m.contains("HTTP 404"), "{m}");
    let m = context_msg(fetch_url(&base, "/boom").await.0);
    assert!(m.contains("HTTP 500"), "{m}");

    let client = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let m = context_msg(
        url(
            &client,
            "http://bob:hunter2@127.0.0.1:1/c.tar",
            dir.path(),
            UrlLimits::default(),
        )
        .await,
    );
    assert!(
        m.starts_with("cannot download http://127.0.0.1:1/c.tar"),
        "{m}"
    );
    assert!(!m.contains("hunter2") && !m.contains("bob"), "{m}");
}

#[tokio::test]
async fn url_refuses_escaping_entries() {
    use tar::EntryType::{Link, Regular, Symlink};
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "/dotdot",
            raw_tar(&[("../evil", Regular, "", b"x")]),
            "'../evil' has a '..'",
        ),
        (
            "/nested",
            raw_tar(&[("a/../../evil", Regular, "", b"x")]),
            "'a/../../evil' has a '..'",
        ),
        (
            "/abs",
            raw_tar(&[("/tmp/evil", Regular, "", b"x")]),
            "'/tmp/evil' has an absolute path",
        ),
        (
            "/symabs",
            raw_tar(&[("link", Symlink, "/etc/passwd", b"")]),
            "'link' is refused: symlink 'link' points to '/etc/passwd'",
        ),
        (
            "/symup",
            raw_tar(&[("d/link", Symlink, "../../x", b"")]),
            "symlink 'd/link' points to '../../x', outside",
        ),
        (
            "/hardup",
            raw_tar(&[("hard", Link, "../../etc/passwd", b"")]),
            "'hard' is a hard link to '../../etc/passwd'",
        ),
        (
            "/hardabs",
            raw_tar(&[("hard", Link, "/etc/passwd", b"")]),
            "hard link 'hard' points to '/etc/passwd'",
        ),
        (
            // a/up -> .. is the root; b goes through it and climbs out.
            "/chain",
            raw_tar(&[
                ("a/up", Symlink, "..", b""),
                ("b", Symlink, "a/up/../outside", b""),
            ]),
            "through symlink 'a/up'",
        ),
        (
            // Same, but the symlink that makes `b` escape comes after it.
            "/chain-late",
            raw_tar(&[
                ("a/", tar::EntryType::Directory, "", b""),
                ("b", Symlink, "a/up/../outside", b""),
                ("a/up", Symlink, "..", b""),
            ]),
            "'b' is refused",
        ),
        (
            // A file written through a symlink that leads outside.
            "/through",
            raw_tar(&[
                ("a/up", Symlink, "..", b""),
                ("a/up/../escaped", Regular, "", b"x"),
            ]),
            "has a '..'",
        ),
    ];
    let base = serve(
        cases
            .iter()
            .map(|(p, data, _)| (p.to_string(), 200, gzip(data)))
            .collect(),
    )
    .await;
    for (path, _, expected) in &cases {
        let (r, dir) = fetch_url(&base, path).await;
        let m = context_msg(r);
        assert!(m.contains(expected), "{path}: {m}");
        assert!(!m.contains("build context: build context"), "{m}");
        assert!(!dir.path().join("evil").exists(), "{path} escaped");
        assert!(!dir.path().join("escaped").exists(), "{path} escaped");
    }
}

/// Unpacks `data` into `dest` with the default limits, as a downloaded file would be.
fn unpack_bytes(data: &[u8], dest: &Path) -> Result<()> {
    let mut f = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut f, data).unwrap();
    unpack(f, dest, UrlLimits::default(), &CancellationToken::new())
}

#[test]
fn write_through_a_symlink_made_escaping_later_is_refused() {
    use tar::EntryType::{Regular, Symlink};
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("outside")).unwrap();
    // `b` looks inside when it arrives; `a/up` then makes it lead to ../outside.
    let data = raw_tar(&[
        ("b", Symlink, "a/up/../outside", b""),
        ("a/up", Symlink, "..", b""),
        ("b/evil", Regular, "", b"x"),
    ]);
    let m = context_msg(unpack_bytes(&data, &dir.path().join("ctx")));
    assert!(m.contains("'b/evil' cannot be unpacked"), "{m}");
    assert!(!dir.path().join("outside/evil").exists());
}

#[tokio::test]
async fn url_unsupported_compression() {
    let mut xz = XZ_MAGIC.to_vec();
    xz.extend_from_slice(&[0; 64]);
    let base = serve(vec![("/c.tar.xz".into(), 200, xz)]).await;
    let m = context_msg(fetch_url(&base, "/c.tar.xz").await.0);
    assert!(m.contains("xz and bzip2 archives are not supported"), "{m}");
}

// ---- limits ----

const MIB: u64 = 1 << 20;

/// A tar.gz of `files` files of `size` zero bytes (a multiple of 1 MiB), built from
/// one compressed MiB repeated as gzip members: cheap however large it expands.
fn zero_bomb(files: usize, size: u64) -> Vec<u8> {
    let zeros = gzip(&vec![0; MIB as usize]);
    let mut out = Vec::new();
    for i in 0..files {
        let mut h = tar::Header::new_gnu();
        h.set_path(format!("f{i}")).unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        out.extend(gzip(h.as_bytes()));
        for _ in 0..size / MIB {
            out.extend_from_slice(&zeros);
        }
    }
    out.extend(gzip(&[0; 1024]));
    out
}

fn du(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => du(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn capped(max_bytes: u64) -> UrlLimits {
    UrlLimits {
        max_bytes,
        ..Default::default()
    }
}

#[tokio::test]
async fn gzip_bomb_is_refused_at_the_cap() {
    let base = serve(vec![
        // One entry whose header already says it is too large.
        ("/one.tar.gz".into(), 200, zero_bomb(1, 64 * MIB)),
        // Many entries, each small, too large together.
        ("/many.tar.gz".into(), 200, zero_bomb(40, MIB)),
    ])
    .await;
    for path in ["/one.tar.gz", "/many.tar.gz"] {
        let (r, dir) = fetch_with(&base, path, capped(4 * MIB)).await;
        let m = context_msg(r);
        assert!(
            m.contains(
                "unpacks to more than 4 MiB (4194304 bytes), the limit set by --max-context-bytes"
            ),
            "{path}: {m}"
        );
        let used = du(dir.path());
        assert!(used <= 4 * MIB, "{path}: {used} bytes unpacked");
    }
}

#[tokio::test]
async fn download_larger_than_the_cap_is_refused() {
    let big = zero_bomb(1, 8 * MIB);
    let base = serve(vec![("/c.tar.gz".into(), 200, big.clone())]).await;
    let (r, _dir) = fetch_with(&base, "/c.tar.gz", capped(big.len() as u64 / 2)).await;
    let m = context_msg(r);
    assert!(m.contains("/c.tar.gz is more than"), "{m}");
    assert!(m.contains("--max-context-bytes"), "{m}");
    let (r, dir) = fetch_with(&base, "/c.tar.gz", capped(16 * MIB)).await;
    r.unwrap();
    assert_eq!(du(dir.path()), 8 * MIB);
}

/// Serves `body` in `chunk`-byte pieces every `every`, going silent for good after
/// `silent_after` bytes.
async fn serve_slowly(
    body: Vec<u8>,
    chunk: usize,
    every: Duration,
    silent_after: Option<usize>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                for (i, piece) in body.chunks(chunk).enumerate() {
                    if silent_after.is_some_and(|n| i * chunk >= n) {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    if sock.write_all(piece).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

fn tar_with_file(size: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "data", &vec![7u8; size][..]).unwrap();
    b.into_inner().unwrap()
}

#[tokio::test]
async fn slow_steady_download_outlasts_the_stall_limit() {
    // 640 KiB at 200 KiB/s: about 3 s, three times the stall limit.
    let body = tar_with_file(640 * 1024);
    let base = serve_slowly(body, 20 * 1024, Duration::from_millis(100), None).await;
    let limits = UrlLimits {
        stall: Duration::from_secs(1),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let (r, dir) = fetch_with(&base, "/slow.tar", limits).await;
    r.unwrap();
    assert!(
        started.elapsed() > 2 * limits.stall,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        fs::metadata(dir.path().join("ctx/data")).unwrap().len(),
        640 * 1024
    );
}

#[tokio::test]
async fn stalled_download_fails_with_a_stall_message() {
    let body = tar_with_file(640 * 1024);
    let base = serve_slowly(body, 20 * 1024, Duration::from_millis(10), Some(100 * 1024)).await;
    let limits = UrlLimits {
        stall: Duration::from_millis(500),
        ..Default::default()
    };
    let (r, _dir) = fetch_with(&base, "/stalls.tar", limits).await;
    let m = context_msg(r);
    assert!(m.contains("/stalls.tar stalled: no data for 0.5 s"), "{m}");
}

#[tokio::test]
async fn dropping_the_download_stops_the_unpacker() {
    let base = serve(vec![("/big.tar.gz".into(), 200, zero_bomb(1, 4096 * MIB))]).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("ctx");
    let task = {
        let dest = dest.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            url(
                &client,
                &format!("{base}/big.tar.gz"),
                &dest,
                UrlLimits::default(),
            )
            .await
        })
    };
    let file = dest.join("f0");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while fs::metadata(&file).map_or(0, |m| m.len()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "unpacking never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A cancelled or timed-out build drops the future, as abort does.
    task.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_stop = fs::metadata(&file).unwrap().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = fs::metadata(&file).unwrap().len();
    assert_eq!(
        after_stop, later,
        "the unpacker kept writing after the drop"
    );
    assert!(later < 4096 * MIB);
}

#[test]
fn sizes_for_people() {
    assert_eq!(human_bytes(8 << 30), "8 GiB");
    assert_eq!(human_bytes(1536 * 1024), "1.5 MiB");
    assert_eq!(human_bytes(512), "512 bytes");
}

#[test]
fn symlink_placed_through_a_symlink_leading_out_is_refused_naming_it() {
    use tar::EntryType::{Directory, Symlink};
    let dir = tempfile::tempdir().unwrap();
    // `b` leads out only once `a/up` exists, and `ctx/../outside` does not exist yet:
    // where `b/x` lands is found by following the links, not by asking the disk.
    let data = raw_tar(&[
        ("a/", Directory, "", b""),
        ("b", Symlink, "a/up/../outside", b""),
        ("a/up", Symlink, "..", b""),
        ("b/x", Symlink, "y", b""),
    ]);
    let m = context_msg(unpack_bytes(&data, &dir.path().join("ctx")));
    assert!(
        m.contains("'b/x' would land outside the context through symlink 'a/up'"),
        "{m}"
    );
    assert!(!dir.path().join("outside").exists());
}
