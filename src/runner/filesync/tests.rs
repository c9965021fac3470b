//! The service over real gRPC on loopback, with the test playing fsutil's receiver.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use bollard_buildkit_proto::fsutil::types::Stat;
use bollard_buildkit_proto::fsutil::types::packet::PacketType;
use bollard_buildkit_proto::moby::filesync::v1::file_sync_client::FileSyncClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use super::send::{CHUNK, Packet};
use super::*;
use crate::runner::context;

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// The service on a loopback port, and a client for it.
async fn client(dirs: LocalDirs) -> FileSyncClient<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = futures::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(FileSyncServer::new(dirs))
            .serve_with_incoming(incoming),
    );
    FileSyncClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

fn build_dirs(root: &Path) -> LocalDirs {
    let plan = context::plan(root, "Dockerfile").unwrap();
    LocalDirs::for_build(plan, b"FROM scratch\nCOPY . /\n".to_vec()).unwrap()
}

fn req(kind: PacketType, id: u32) -> Packet {
    Packet {
        r#type: kind as i32,
        id,
        ..Default::default()
    }
}

struct Received {
    stats: Vec<Stat>,
    data: HashMap<String, Vec<u8>>,
}

/// Plays fsutil's receiver: reads the stat list, requests the files `want` picks (by
/// their index in the list), reads their data, then FIN and expects FIN back.
async fn receive(
    client: &mut FileSyncClient<Channel>,
    md: &[(&'static str, &str)],
    want: impl Fn(&Stat) -> bool,
) -> Result<Received, String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut request = tonic::Request::new(UnboundedReceiverStream::new(rx));
    for (k, v) in md {
        request.metadata_mut().append(*k, v.parse().unwrap());
    }
    let mut resp = client
        .diff_copy(request)
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    let mut next = async || -> Result<Packet, String> {
        match resp.message().await {
            Ok(Some(p)) if p.r#type == PacketType::PacketErr as i32 => {
                Err(String::from_utf8_lossy(&p.data).into_owned())
            }
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err("stream ended".into()),
            Err(s) => Err(s.message().to_string()),
        }
    };
    let mut stats = Vec::new();
    loop {
        let p = next().await?;
        assert_eq!(p.r#type, PacketType::PacketStat as i32);
        match p.stat {
            Some(s) => stats.push(s),
            None => break,
        }
    }
    let mut pending = HashMap::new();
    for (id, s) in stats.iter().enumerate() {
        if want(s) {
            tx.send(req(PacketType::PacketReq, id as u32)).unwrap();
            pending.insert(id as u32, (s.path.clone(), Vec::new()));
        }
    }
    let mut data = HashMap::new();
    while !pending.is_empty() {
        let p = next().await?;
        assert_eq!(p.r#type, PacketType::PacketData as i32);
        assert!(p.data.len() <= CHUNK);
        if p.data.is_empty() {
            let (path, bytes) = pending
                .remove(&p.id)
                .expect("data for a file not requested");
            data.insert(path, bytes);
        } else {
            pending.get_mut(&p.id).unwrap().1.extend_from_slice(&p.data);
        }
    }
    tx.send(req(PacketType::PacketFin, 0)).unwrap();
    assert_eq!(next().await?.r#type, PacketType::PacketFin as i32);
    assert_eq!(next().await.unwrap_err(), "stream ended");
    Ok(Received { stats, data })
}

fn is_file(s: &Stat) -> bool {
    s.mode & select::go_mode::TYPE == 0
}

#[tokio::test]
async fn context_goes_as_planned_and_files_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\nTAG x\nCOPY . /\n");
    write(root, ".dockerignore", b"secret\n*.log\n");
    write(root, "a.txt", b"hello");
    write(root, "x.log", b"log");
    write(root, "secret", b"password");
    write(root, "sub/b.txt", b"world");
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    write(root, "sub/big", &big);
    symlink("sub/b.txt", root.join("link")).unwrap();
    let mut c = client(build_dirs(root)).await;

    let got = receive(&mut c, &[("dir-name", "context")], is_file)
        .await
        .unwrap();
    let paths: Vec<&str> = got.stats.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".dockerignore",
            "Dockerfile",
            "a.txt",
            "link",
            "sub",
            "sub/b.txt",
            "sub/big"
        ]
    );
    let link = &got.stats[3];
    assert_eq!(link.mode, (1 << 27) | 0o777);
    assert_eq!(link.linkname, "sub/b.txt");
    assert_eq!(got.stats[4].mode & (1 << 31), 1 << 31);
    assert_eq!(got.data["a.txt"], b"hello");
    assert_eq!(got.data["sub/big"], big);
    // the context carries the Dockerfile without slipway's directives, as the tar did
    assert_eq!(got.data["Dockerfile"], b"FROM scratch\nCOPY . /\n");
    assert!(!got.data.contains_key("link"));
}

#[tokio::test]
async fn unchanged_files_need_not_be_sent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\n");
    write(root, "a", b"a");
    write(root, "b", b"b");
    let mut c = client(build_dirs(root)).await;
    // a receiver that already has everything but `b`
    let got = receive(&mut c, &[("dir-name", "context")], |s| s.path == "b")
        .await
        .unwrap();
    assert_eq!(got.data.len(), 1);
    assert_eq!(got.data["b"], b"b");
}

#[tokio::test]
async fn the_frontends_requests() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\nREGISTRY r\nCOPY . /\n");
    write(root, ".dockerignore", b"*.log\n");
    write(root, "x.log", b"l");
    write(root, "other", b"o");
    let mut c = client(build_dirs(root)).await;

    // the Dockerfile, as dockerui reads it (DiffNone: everything requested)
    let md = [
        ("dir-name", "dockerfile"),
        ("followpaths", "Dockerfile"),
        ("followpaths", "Dockerfile.dockerignore"),
        ("followpaths", "dockerfile"),
    ];
    let got = receive(&mut c, &md, is_file).await.unwrap();
    assert_eq!(got.stats.len(), 1);
    assert_eq!(got.data["Dockerfile"], b"FROM scratch\nCOPY . /\n");

    // then .dockerignore alone
    let md = [("dir-name", "context"), ("followpaths", ".dockerignore")];
    let got = receive(&mut c, &md, is_file).await.unwrap();
    assert_eq!(got.data.keys().collect::<Vec<_>>(), [".dockerignore"]);

    // then the context with its patterns (query-escaped when not ASCII)
    let md = [
        ("dir-name", "context"),
        ("exclude-patterns", "*.log"),
        ("exclude-patterns", "%C3%A9t%C3%A9+x"),
        ("exclude-patterns-encoded", "1"),
    ];
    let got = receive(&mut c, &md, is_file).await.unwrap();
    let paths: Vec<&str> = got.stats.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, [".dockerignore", "Dockerfile", "other"]);

    let err = receive(&mut c, &[("dir-name", "elsewhere")], is_file)
        .await
        .err()
        .unwrap();
    assert!(
        err.contains("NotFound") && err.contains("elsewhere"),
        "{err}"
    );
}

#[tokio::test]
async fn a_file_changed_since_its_stat_fails_the_sync_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\n");
    write(root, "grows", b"abc");
    let dirs = build_dirs(root);
    let failure = dirs.failure();
    let mut c = client(dirs).await;
    write(root, "grows", b"abcdef");
    let err = receive(&mut c, &[("dir-name", "context")], is_file)
        .await
        .err()
        .unwrap();
    assert!(err.contains("'grows' changed"), "{err}");
    // kept for the runner, which reports it as the context's fault (not retried)
    // rather than as whatever buildkitd makes of a broken transfer
    let kept = failure.get().expect("the failure is kept");
    assert!(kept.contains("'grows' changed"), "{kept}");
}

#[tokio::test]
async fn only_listed_files_can_be_requested_and_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", b"FROM scratch\n");
    write(root, "sub/f", b"f");
    let mut c = client(build_dirs(root)).await;
    // id 1 is the directory `sub`
    let err = receive(&mut c, &[("dir-name", "context")], |s| s.path == "sub")
        .await
        .err()
        .unwrap();
    assert!(err.contains("invalid file id 1"), "{err}");
}
