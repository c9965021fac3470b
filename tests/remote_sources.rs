//! Contexts that come from elsewhere: a Git repository and a tarball over HTTP.

mod common;

use std::process::Command;

use common::*;
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

    let missing = common::spec(&format!(
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
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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
}
