use super::*;

#[test]
fn relative_submodule_urls() {
    let base = "https://u:p@h.example/group/super.git";
    assert_eq!(
        resolve_relative(base, "../lib.git").as_deref(),
        Some("https://u:p@h.example/group/lib.git")
    );
    assert_eq!(
        resolve_relative(base, "./sub").as_deref(),
        Some("https://u:p@h.example/group/super.git/sub")
    );
    assert_eq!(
        resolve_relative(base, "../../other/x.git").as_deref(),
        Some("https://u:p@h.example/other/x.git")
    );
    assert_eq!(resolve_relative("https://h/x.git", "../../../y"), None);
    assert_eq!(
        resolve_relative(base, "https://else/x.git").as_deref(),
        Some("https://else/x.git")
    );
}

#[test]
fn kinds() {
    let said = |text: &str| kind(&std::io::Error::other(text.to_string()), text);
    assert_eq!(said("HTTP status 401 Unauthorized"), Some(AUTH));
    assert_eq!(
        said("The remote didn't have any ref that matched 'x'"),
        Some(NO_SUCH_REVISION)
    );
    assert_eq!(said("corrupt pack"), None);
    // the way there is judged by the error's type, not by words a server can send
    assert_eq!(
        said("remote: error trying to connect: Connection refused"),
        None
    );
    assert_eq!(
        said("remote: invalid peer certificate: UnknownIssuer"),
        None
    );
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    assert_eq!(kind(&refused, "tcp connect error"), Some(NETWORK));
    // hyper-rustls's io::Error holding tokio-rustls's, holding the rustls error
    let untrusted = std::io::Error::other(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
    ));
    assert_eq!(kind(&untrusted, "client error (Connect)"), Some(UNTRUSTED));
}

/// What a user reads when a git server is not there: the network named, from the
/// transport's connect error (a refused port, a name that does not resolve).
#[test]
fn an_unreachable_git_server_is_a_network_error() {
    let (dir, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let never = AtomicBool::new(false);
    let tls = GitTls::default();
    for url in [
        "http://127.0.0.1:1/repo.git",
        "http://no-such-host.invalid/repo.git",
    ] {
        let e = fetch_tree(url, None, false, dir.path(), scratch.path(), &tls, &never).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!(
                "build context: git fetch of 'HEAD' from {url} failed: network error (unreachable): "
            )),
            "{shown}"
        );
    }
}

/// A git server that wants credentials for everything. Without any for its host the
/// user is told to set some; with rejected ones, not that (the helper knows which).
#[tokio::test]
async fn a_server_asking_for_credentials_nobody_set_is_told_apart_from_refused_ones() {
    use axum::http::{HeaderMap, StatusCode};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async {
        let mut h = HeaderMap::new();
        h.insert("www-authenticate", r#"Basic realm="git""#.parse().unwrap());
        (StatusCode::UNAUTHORIZED, h)
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let fetch = |url: String| {
        tokio::task::spawn_blocking(move || {
            let (dir, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let tls = GitTls::default();
            let never = AtomicBool::new(false);
            fetch_tree(
                &url,
                Some("main"),
                false,
                dir.path(),
                scratch.path(),
                &tls,
                &never,
            )
        })
    };
    let none = fetch(format!("http://{addr}/repo.git"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        none.to_string(),
        format!(
            "build context: git fetch of 'main' from http://{addr}/repo.git failed: \
             authentication failed: the server asks for credentials and none are set for \
             this host (in the URL or the --git-credentials file)"
        )
    );
    assert!(!none.is_retryable());
    assert!(
        std::error::Error::source(&none).is_some(),
        "gitoxide's error is kept"
    );
    let refused = fetch(format!("http://u:wrong@{addr}/repo.git"))
        .await
        .unwrap()
        .unwrap_err();
    let shown = refused.to_string();
    assert!(
        shown.starts_with(&format!(
            "build context: git fetch of 'main' from http://{addr}/repo.git failed: \
             authentication failed: "
        )),
        "{shown}"
    );
    assert!(!shown.contains("none are set"), "{shown}");
    assert!(!shown.contains("wrong"), "{shown}");
}
