//! Private CAs and client certificates the Docker way, for slipway's own HTTPS:
//! a `url` source served with a CA the test makes (`--ca-file`), and registries on
//! 127.0.0.1 serving TLS from that CA, reached through a certs.d directory
//! (`<dir>/<host:port>/ca.crt`, `client.cert`, `client.key`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::git::git;
use crate::common::git_http::{GitHttpServer, PASSWORD, USER};
use crate::common::process::Process;
use crate::common::*;
use slipway::runner::{Builder, Runner};
use slipway::tls::{Tls, TlsArgs};
use slipway::triggers::{Observation, Targets, ls_remote, spawn_base_poller};

fn unique() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}-{}", t.as_nanos(), std::process::id())
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all from it.
struct Pki(tempfile::TempDir);

impl Pki {
    fn new() -> Self {
        let pki = Self(tempfile::tempdir().unwrap());
        let d = pki.0.path();
        let days = ["-days", "2"];
        openssl(
            d,
            &[
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=slipway test CA",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                ][..],
                &days,
            ]
            .concat(),
        );
        for (name, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(d.join(format!("{name}.ext")), ext).unwrap();
            let (key, csr, pem, extf) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            openssl(
                d,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    &format!("/CN={name}"),
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                ],
            );
            openssl(
                d,
                &[
                    &[
                        "x509",
                        "-req",
                        "-in",
                        &csr,
                        "-CA",
                        "ca.pem",
                        "-CAkey",
                        "ca.key",
                        "-CAcreateserial",
                        "-extfile",
                        &extf,
                        "-out",
                        &pem,
                    ][..],
                    &days,
                ]
                .concat(),
            );
        }
        pki
    }

    fn path(&self, f: &str) -> PathBuf {
        self.0.path().join(f)
    }

    /// A certs.d directory with `host`'s entry holding `files` (from `(ours, theirs)`).
    fn certs_dir(&self, host: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(host)).unwrap();
        for (ours, theirs) in files {
            std::fs::copy(self.path(ours), dir.path().join(host).join(theirs)).unwrap();
        }
        dir
    }
}

/// The port a server of ours (a [`Process`] logging stdout) printed first.
fn printed_port(server: &Process) -> String {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let log = server.log();
        if let Some(port) = log.lines().find(|l| l.trim().parse::<u16>().is_ok()) {
            return port.trim().to_string();
        }
        assert!(Instant::now() < until, "no port printed:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) {
    let until = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Debian's docker-registry on 127.0.0.1 serving TLS from `pki`'s CA, images in
/// `storage`; with `client_certs`, only clients with a certificate from that CA.
fn tls_registry(pki: &Pki, storage: &Path, client_certs: bool) -> (Process, String) {
    let port = free_port();
    let clientcas = if client_certs {
        format!("    clientcas: [{}]\n", pki.path("ca.pem").display())
    } else {
        String::new()
    };
    let conf = format!(
        "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {}\n    key: {}\n{clientcas}",
        storage.display(),
        pki.path("server.pem").display(),
        pki.path("server.key").display(),
    );
    let file = pki.path(&format!("registry-{port}.yml"));
    std::fs::write(&file, conf).unwrap();
    // (scripts/ensure-docker.sh installs docker-registry)
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve").arg(&file);
    let server = Process::spawn("docker-registry", cmd);
    wait_listening(port);
    (server, format!("127.0.0.1:{port}"))
}

fn tls(certs_dir: &Path) -> Tls {
    Tls::load(&TlsArgs {
        ca_file: None,
        certs_dir: certs_dir.into(),
    })
    .expect("certs dir reads")
}

async fn runner(certs_dir: &Path) -> Runner {
    let tls = tls(certs_dir);
    // the classic builder uses a base the daemon has without asking its registry
    Runner::connect(None, Builder::Classic)
        .await
        .expect("docker daemon reachable")
        .with_tls(&tls)
        .unwrap()
}

fn inline(dockerfile: &str, registry: &str, repo: &str) -> slipway::api::DockerBuildSpec {
    spec(&format!(
        "source: {{inline: {{dockerfile: {dockerfile:?}}}}}\noutput: {{registry: '{registry}', repository: {repo}}}"
    ))
}

/// The daemon pushes to a TLS registry on 127.0.0.1 without checking its
/// certificate (Docker's default insecure range); slipway then reads the pushed
/// digest back over TLS, trusting the registry through certs.d. A base on a
/// registry that requires client certificates is looked up with `client.cert`.
#[tokio::test(flavor = "multi_thread")]
async fn registries_with_a_private_ca_and_client_certificates_through_certs_d() {
    let pki = Pki::new();
    let storage = tempfile::tempdir().unwrap();
    let (_reg, host) = tls_registry(&pki, storage.path(), false);
    let base = ensure_base().await;
    let repo = format!("slipway-test/private-ca-{}", unique());
    let dockerfile = format!("FROM {base}\nLABEL unique={}\n", unique());
    let key = "test/private-ca";

    // certs.d names the host but holds no CA: a certificate error, named
    let no_ca = pki.certs_dir(&host, &[]);
    let e = run_on(
        &runner(no_ca.path()).await,
        key,
        inline(&dockerfile, &host, &repo),
        None,
    )
    .await
    .expect_err("the registry's certificate is not trusted");
    let msg = e.to_string();
    assert!(
        msg.contains(&host) && msg.contains("certificate") && msg.contains("UnknownIssuer"),
        "{msg}"
    );

    let with_ca = pki.certs_dir(&host, &[("ca.pem", "ca.crt")]);
    let out = run_on(
        &runner(with_ca.path()).await,
        key,
        inline(&dockerfile, &host, &repo),
        None,
    )
    .await
    .expect("the digest is read back over TLS");
    assert_eq!(out.image, format!("{host}/{repo}@{}", out.digest));

    // the same images, served only to clients with a certificate
    let (_mtls, mhost) = tls_registry(&pki, storage.path(), true);
    let docker = docker().await;
    let tagged = bollard::query_parameters::TagImageOptions {
        repo: Some(format!("{mhost}/{repo}")),
        tag: Some("latest".into()),
    };
    docker
        .tag_image(&format!("{host}/{repo}:latest"), Some(tagged))
        .await
        .unwrap();
    let based = format!("FROM {mhost}/{repo}:latest\nLABEL unique={}\n", unique());
    let child = format!("slipway-test/private-ca-child-{}", unique());
    let build = |certs: tempfile::TempDir| {
        let spec = inline(&based, &registry(), &child);
        async move {
            run_on(&runner(certs.path()).await, key, spec, None)
                .await
                .expect("builds")
        }
    };
    let expected = slipway::api::BaseImage {
        image: format!("{mhost}/{repo}:latest"),
        digest: out.digest.clone(),
    };
    let with_cert = pki.certs_dir(
        &mhost,
        &[
            ("ca.pem", "ca.crt"),
            ("client.pem", "client.cert"),
            ("client.key", "client.key"),
        ],
    );
    assert_eq!(build(with_cert).await.base_images, vec![expected.clone()]);
    // without the client certificate the registry refuses the lookup: the base
    // is left out (the build does not depend on it)
    let ca_only = pki.certs_dir(&mhost, &[("ca.pem", "ca.crt")]);
    assert_eq!(build(ca_only).await.base_images, vec![]);

    // the base poller (`watch`, `controller`) looks it up the same way
    let with_cert = pki.certs_dir(
        &mhost,
        &[
            ("ca.pem", "ca.crt"),
            ("client.pem", "client.cert"),
            ("client.key", "client.key"),
        ],
    );
    let clients = tls(with_cert.path()).clients(|b| b).unwrap();
    let (tx, targets) = tokio::sync::watch::channel(Targets::default());
    tx.send_modify(|t| {
        t.bases.insert(expected.image.clone(), Default::default());
    });
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel(4);
    let poller = spawn_base_poller(targets, Duration::from_secs(1), clients, seen_tx);
    let first = tokio::time::timeout(Duration::from_secs(20), seen.recv()).await;
    poller.abort();
    let want = Observation::Base {
        image: expected.image,
        digest: expected.digest,
    };
    assert_eq!(first.expect("observed in time"), Some(want));
}

/// A `url` source served over HTTPS with a private CA: `slipway build` fetches it
/// with `--ca-file`, and without it fails naming the certificate problem.
#[test]
fn url_sources_trust_the_ca_file() {
    let pki = Pki::new();
    let site = Fixture::new()
        .file("ctx/Dockerfile", "FROM scratch\nCOPY hello /hello\n")
        .file("ctx/hello", &unique());
    let tar = Command::new("tar")
        .args(["-cf", "ctx.tar", "-C", "ctx", "."])
        .current_dir(site.dir.path())
        .status()
        .unwrap();
    assert!(tar.success());
    let serve = "import functools, http.server, ssl, sys
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
s = http.server.HTTPServer(('127.0.0.1', 0), h)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain(sys.argv[2], sys.argv[3])
s.socket = c.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", serve])
        .arg(site.dir.path())
        .arg(pki.path("server.pem"))
        .arg(pki.path("server.key"));
    let server = Process::spawn_with_stdout("https server", cmd);
    let url = format!("https://127.0.0.1:{}/ctx.tar", printed_port(&server));
    let build = site.path("build.yaml");
    std::fs::write(
        &build,
        Build::new("tls-url")
            .url(&url)
            .push_to("slipway-test/tls-url")
            .yaml(),
    )
    .unwrap();
    let empty_certs = tempfile::tempdir().unwrap();
    let run = |extra: &[&Path], system_bundle: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.arg("build")
            .arg(&build)
            .arg("--certs-dir")
            .arg(empty_certs.path());
        if let Some(ca) = extra.first() {
            cmd.arg("--ca-file").arg(ca);
        }
        cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
        if let Some(bundle) = system_bundle {
            cmd.env("SSL_CERT_FILE", bundle);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let slipway = |extra: &[&Path]| run(extra, None);
    let (code, text) = slipway(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("certificate") && text.contains("UnknownIssuer"),
        "{text}"
    );
    let (code, text) = slipway(&[&pki.path("ca.pem")]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("slipway-test/tls-url@sha256:"), "{text}");
    // the system bundle, as a scratch image is given one
    let (code, text) = run(&[], Some(&pki.path("ca.pem")));
    assert_eq!(code, Some(0), "{text}");

    // a CA file that is no certificate stops slipway at start-up, named
    let (code, text) = slipway(&[&pki.path("ca.key")]);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("ca.key: no PEM certificate"), "{text}");
}

/// A TLS terminator from the test's CA in front of `upstream` (plain HTTP), as a
/// company's git server behind its own CA would be; prints its port.
const TLS_PROXY: &str = "import socket, ssl, sys, threading
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain(sys.argv[1], sys.argv[2])
up = int(sys.argv[3])
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for x in (a, b):
        try:
            x.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def serve(conn):
    try:
        t = c.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError):
        conn.close()
        return
    u = socket.create_connection(('127.0.0.1', up))
    threading.Thread(target=pipe, args=(t, u), daemon=True).start()
    pipe(u, t)
while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()";

/// A `git` source over https from a private CA: `slipway build --ca-file` fetches it
/// (and the git trigger's lookup trusts the same file); without the flag the fetch
/// fails naming the certificate problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_sources_over_https_trust_the_ca_file() {
    let pki = Pki::new();
    let server = GitHttpServer::start().await;
    let bare = server.bare("app");
    let work = server.base().join("app.work");
    git(server.base(), &["init", "-q", work.to_str().unwrap()]);
    std::fs::write(work.join("Dockerfile"), "FROM scratch\nCOPY hello /hello\n").unwrap();
    std::fs::write(work.join("hello"), unique()).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(
        &work,
        &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/heads/main"],
    );
    let commit = git(&work, &["rev-parse", "HEAD"]);

    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", TLS_PROXY])
        .arg(pki.path("server.pem"))
        .arg(pki.path("server.key"))
        .arg(server.port.to_string());
    let proxy = Process::spawn_with_stdout("TLS proxy", cmd);
    let url = format!(
        "https://{USER}:{PASSWORD}@127.0.0.1:{}/app.git",
        printed_port(&proxy)
    );

    let site = tempfile::tempdir().unwrap();
    let build = site.path().join("build.yaml");
    std::fs::write(
        &build,
        Build::new("tls-git")
            .git(&url, Some("main"), None)
            .push_to("slipway-test/tls-git")
            .yaml(),
    )
    .unwrap();
    let empty_certs = tempfile::tempdir().unwrap();
    let slipway = |ca: Option<PathBuf>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.arg("build")
            .arg(&build)
            .arg("--certs-dir")
            .arg(empty_certs.path())
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        if let Some(ca) = ca {
            cmd.arg("--ca-file").arg(ca);
        }
        async move {
            let out = cmd.output().await.unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.code(), text)
        }
    };
    let (code, text) = slipway(None).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("TLS certificate not trusted (its CA goes in --ca-file)")
            && text.contains("UnknownIssuer"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
    let (code, text) = slipway(Some(pki.path("ca.pem"))).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("slipway-test/tls-git@sha256:"), "{text}");

    // the git trigger's lookup, with the same trust
    let tls = |ca_file: Option<PathBuf>| {
        Tls::load(&TlsArgs {
            ca_file,
            certs_dir: empty_certs.path().into(),
        })
        .unwrap()
        .git()
    };
    let found = ls_remote(&url, Some("main"), &tls(Some(pki.path("ca.pem"))))
        .await
        .unwrap();
    assert_eq!(found, commit);
    let e = ls_remote(&url, Some("main"), &tls(None))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("certificate"), "{e}");
}
