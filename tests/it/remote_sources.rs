//! Contexts that come from elsewhere: a Git repository and a tarball over HTTP.

use std::process::Command;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn git_source_builds_the_context_dir_at_a_revision() {
    let base = ensure_base().await;
    let fx = Fixture::new()
        .file(
            "repo/docker/app/Dockerfile",
            &format!("FROM {base}\nCOPY version.txt /version.txt\n"),
        )
        .file("repo/docker/app/version.txt", "one\n");
    let repo = fx.path("repo");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "one"]);
    git(&repo, &["tag", "v1"]);
    let v1 = git(&repo, &["rev-parse", "HEAD"]);
    std::fs::write(repo.join("docker/app/version.txt"), "two\n").unwrap();
    git(&repo, &["commit", "-qam", "two"]);

    let url = format!("file://{}", repo.display());
    let spec = spec(&format!(
        "source: {{git: {{url: '{url}', revision: v1, contextDir: docker/app}}}}\n\
output: {{registry: '{}', repository: slipway-test/git}}",
        registry()
    ));
    let out = run(&Fixture::new(), spec)
        .await
        .expect("git build succeeds");
    assert_eq!(out.revision.as_deref(), Some(v1.as_str()));
    assert_pushed(&out).await;

    let docker = docker().await;
    let labels = docker
        .inspect_image(&out.image)
        .await
        .unwrap()
        .config
        .and_then(|c| c.labels)
        .unwrap_or_default();
    assert_eq!(labels.get("org.opencontainers.image.revision"), Some(&v1));
    assert_eq!(labels.get("org.opencontainers.image.source"), Some(&url));

    let missing = crate::common::spec(&format!(
        "source: {{git: {{url: '{url}', revision: no-such-branch}}}}\noutput: {{registry: '{}', repository: slipway-test/git}}",
        registry()
    ));
    let err = run(&Fixture::new(), missing).await.unwrap_err();
    assert!(err.to_string().contains("no-such-branch"), "{err}");
}

/// Serves `body` once per connection at any path, on 127.0.0.1.
async fn serve(body: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"ctx-1\"\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn url_source_builds_a_gzipped_tarball() {
    let base = ensure_base().await;
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in [
        (
            "Dockerfile",
            format!(
                "FROM {base}\nCOPY data/hello.txt /hello.txt\nRUN grep -q tarball /hello.txt\n"
            ),
        ),
        ("data/hello.txt", "from a tarball\n".to_string()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data.as_bytes()).unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    let url = format!("{}/ctx.tar.gz", serve(gz.finish().unwrap()).await);

    let spec = spec(&format!(
        "source: {{url: '{url}'}}\noutput: {{registry: '{}', repository: slipway-test/url}}",
        registry()
    ));
    let out = run(&Fixture::new(), spec)
        .await
        .expect("tarball build succeeds");
    assert_pushed(&out).await;
    // what the url poller compares with, and the base the cascade follows
    assert_eq!(out.source_version.as_deref(), Some("\"ctx-1\""));
    assert_eq!(
        out.base_images.iter().map(|b| &b.image).collect::<Vec<_>>(),
        [&base]
    );
}

/// Serves `head`, then `chunk` over and over, `chunk` bytes every `every`, for ever.
async fn serve_endlessly(head: Vec<u8>, chunk: Vec<u8>, every: std::time::Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (head, chunk) = (head.clone(), chunk.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = sock.write_all(&head).await;
                while sock.write_all(&chunk).await.is_ok() {
                    tokio::time::sleep(every).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, data).unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn url_source_gzip_bomb_is_refused_at_max_context_bytes() {
    use slipway::runner::fetch::UrlLimits;
    // A tar entry claiming 1 TiB, then zeros: gzip members of 1 MiB of zeros, for ever.
    let mut h = tar::Header::new_gnu();
    h.set_path("big").unwrap();
    h.set_size(1 << 40);
    h.set_mode(0o644);
    h.set_cksum();
    let zeros = gzip(&vec![0; 1 << 20]);
    let mut bomb = gzip(h.as_bytes());
    for _ in 0..200 {
        bomb.extend_from_slice(&zeros);
    }
    let finite = serve(bomb).await;
    let endless = serve_endlessly(
        gzip(h.as_bytes()),
        zeros,
        std::time::Duration::from_millis(1),
    )
    .await;
    let runner = runner().await.with_url_limits(UrlLimits {
        max_bytes: 1 << 20,
        ..Default::default()
    });
    for (url, what) in [
        (
            format!("{finite}/bomb.tar.gz"),
            "the archive unpacks to more than",
        ),
        (
            format!("{endless}/endless.tar.gz"),
            "endless.tar.gz is more than",
        ),
    ] {
        let spec = spec(&format!(
            "source: {{url: '{url}'}}\ntimeoutSeconds: 120\noutput: {{registry: '{}', repository: slipway-test/bomb}}",
            registry()
        ));
        let req = slipway::runner::BuildRequest {
            key: "test/bomb".into(),
            spec,
            base_dir: None,
            auth: Default::default(),
            previous: None,
            secrets: Default::default(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let _daemon = daemon_shared().await;
        let err = runner
            .run(req, tx, Default::default())
            .await
            .expect_err("only the cap stops it");
        assert!(matches!(err, slipway::Error::Context(_)), "{err:?}");
        assert!(!err.is_retryable());
        let msg = err.to_string();
        assert!(msg.contains(what), "{msg}");
        assert!(
            msg.contains("more than 1 MiB (1048576 bytes), the limit set by --max-context-bytes"),
            "{msg}"
        );
    }
}
