//! Git triggers against a real git server (`git daemon`, tests/it/common/git.rs): the
//! remote's commit looked up, polled, and pushed by signed webhooks.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::git::GitServer;
use slipway::tls::GitTls;
use slipway::triggers::webhook::{self, WebhookSecret};
use slipway::triggers::{GitTarget, Observation, Targets, ls_remote, spawn_poller};
use tokio::sync::{mpsc, watch};

const SECRET: &str = "s3cret-for-hooks";

fn target(url: &str, revision: Option<&str>) -> GitTarget {
    GitTarget {
        url: url.into(),
        revision: revision.map(Into::into),
    }
}

fn targets(git: impl IntoIterator<Item = (GitTarget, Duration)>) -> Targets {
    Targets {
        git: git.into_iter().collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

async fn next(rx: &mut mpsc::Receiver<Observation>, within: Duration) -> Observation {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("an observation in time")
        .expect("the trigger is running")
}

#[tokio::test]
async fn ls_remote_reads_branches_peeled_tags_and_the_default_branch() {
    let server = GitServer::start();
    let repo = server.repo("lookup", "FROM scratch\n");
    let tagged = repo.tag("v1");
    let dev = repo.commit_on("dev", "Dockerfile", "FROM scratch\n# dev\n");
    let main = repo.commit("Dockerfile", "FROM scratch\n# two\n");

    assert_eq!(
        ls_remote(&repo.url, None, &GitTls::default())
            .await
            .unwrap(),
        main
    );
    assert_eq!(
        ls_remote(&repo.url, Some("main"), &GitTls::default())
            .await
            .unwrap(),
        main
    );
    assert_eq!(
        ls_remote(&repo.url, Some("refs/heads/dev"), &GitTls::default())
            .await
            .unwrap(),
        dev
    );
    // an annotated tag gives its commit, as a build would check out
    assert_eq!(
        ls_remote(&repo.url, Some("v1"), &GitTls::default())
            .await
            .unwrap(),
        tagged
    );

    let e = ls_remote(&repo.url, Some("no-such-branch"), &GitTls::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-such-branch") && e.contains(&repo.url), "{e}");
    let gone = repo.url.replace("lookup", "missing");
    let e = ls_remote(&gone, None, &GitTls::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&gone), "{e}");
}

#[tokio::test]
async fn poller_reports_the_first_commit_then_each_new_one_once() {
    let server = GitServer::start();
    let repo = server.repo("polled", "FROM scratch\n");
    let first = ls_remote(&repo.url, Some("main"), &GitTls::default())
        .await
        .unwrap();
    let interval = Duration::from_secs(1);
    let (tx, rx) = watch::channel(targets([(target(&repo.url, Some("main")), interval)]));
    let (out, mut seen) = mpsc::channel(16);
    let poller = spawn_poller(rx, out, GitTls::default());

    let want = |commit: &str| Observation::Git {
        url: repo.url.clone(),
        revision: Some("main".into()),
        commit: commit.into(),
        webhook: false,
    };
    // Generous bounds: this machine is shared; one interval plus a lookup is the goal.
    let within = interval + Duration::from_secs(10);
    assert_eq!(next(&mut seen, within).await, want(&first));
    let second = repo.commit("Dockerfile", "FROM scratch\n# two\n");
    assert_eq!(next(&mut seen, within).await, want(&second));
    // the same commit is not reported again, however many intervals pass
    assert!(
        tokio::time::timeout(interval * 3, seen.recv())
            .await
            .is_err(),
        "a commit reported twice"
    );
    // a new target sharing the server is looked up as soon as it is added
    let other = server.repo("added", "FROM scratch\n");
    let other_head = ls_remote(&other.url, None, &GitTls::default())
        .await
        .unwrap();
    tx.send_modify(|t| {
        t.git
            .insert(target(&other.url, None), Duration::from_secs(3600));
    });
    assert_eq!(
        next(&mut seen, within).await,
        Observation::Git {
            url: other.url.clone(),
            revision: None,
            commit: other_head,
            webhook: false,
        }
    );
    drop(tx);
    tokio::time::timeout(Duration::from_secs(5), poller)
        .await
        .expect("the poller ends with the reconciler")
        .unwrap();
}

struct Hooks {
    base: String,
    seen: mpsc::Receiver<Observation>,
    http: reqwest::Client,
    _task: tokio::task::JoinHandle<()>,
}

async fn serve_hooks(targets: Targets) -> Hooks {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (_tx, rx) = watch::channel(targets);
    let (out, seen) = mpsc::channel(16);
    let secret = WebhookSecret::new(SECRET).unwrap();
    let task = tokio::spawn(async move {
        let _keep = _tx;
        webhook::serve(listener, secret, rx, out, GitTls::default())
            .await
            .unwrap();
    });
    Hooks {
        base,
        seen,
        http: reqwest::Client::new(),
        _task: task,
    }
}

impl Hooks {
    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// What the hook reported, all of it already sent when the response came.
    fn drain(&mut self) -> Vec<Observation> {
        std::iter::from_fn(|| self.seen.try_recv().ok()).collect()
    }
}

fn sign(body: &str) -> String {
    WebhookSecret::new(SECRET).unwrap().sign(body.as_bytes())
}

fn hooked(url: &str, revision: Option<&str>, commit: &str) -> Observation {
    Observation::Git {
        url: url.into(),
        revision: revision.map(Into::into),
        commit: commit.into(),
        webhook: true,
    }
}

fn github_push(url: &str, git_ref: &str, after: &str) -> String {
    serde_json::json!({
        "ref": git_ref, "before": "0".repeat(40), "after": after,
        "head_commit": {"id": after},
        "repository": {
            "default_branch": "main",
            "clone_url": "https://git.example.invalid/team/app.git",
            "html_url": "https://git.example.invalid/team/app",
            "ssh_url": "git@git.example.invalid:team/app.git",
            "git_url": url,
        }
    })
    .to_string()
}

#[tokio::test]
async fn signed_hooks_report_matching_targets_at_once() {
    let server = GitServer::start();
    let repo = server.repo("hooked", "FROM scratch\n");
    let unrelated = server.repo("unrelated", "FROM scratch\n");
    // Polling off: whatever is reported comes from the hooks.
    let off = Duration::ZERO;
    let mut hooks = serve_hooks(targets([
        (target(&repo.url, Some("main")), off),
        // the same repository spelt another way, following the default branch
        (
            target(&format!("{}/", repo.url.trim_end_matches(".git")), None),
            off,
        ),
        (target(&repo.url, Some("dev")), off),
        (target(&unrelated.url, Some("main")), off),
    ]))
    .await;
    let new = repo.commit("Dockerfile", "FROM scratch\n# new\n");
    let spelt = format!("{}/", repo.url.trim_end_matches(".git"));

    // GitHub: HMAC of the body
    let body = github_push(&repo.url, "refs/heads/main", &new);
    let (status, text) = hooks
        .post(
            "/hooks/github",
            &[
                ("x-github-event", "push"),
                ("x-hub-signature-256", &sign(&body)),
            ],
            &body,
        )
        .await;
    assert_eq!((status, text.trim()), (202, "2 targets matched"));
    assert_eq!(
        hooks.drain(),
        [
            hooked(&repo.url, Some("main"), &new),
            hooked(&spelt, None, &new)
        ]
    );

    // GitLab: the secret as a token
    let body = serde_json::json!({
        "object_kind": "push", "ref": "refs/heads/main", "after": new, "checkout_sha": new,
        "project": {"git_http_url": repo.url, "git_ssh_url": "git@h:x/y.git",
                    "web_url": "https://h/x/y", "default_branch": "main"}
    })
    .to_string();
    let (status, _) = hooks
        .post(
            "/hooks/gitlab",
            &[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", SECRET)],
            &body,
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(hooks.drain().len(), 2);

    // generic, without a commit: looked up on the real server
    let body = serde_json::json!({"url": repo.url, "ref": "main"}).to_string();
    let (status, text) = hooks
        .post(
            "/hooks/generic",
            &[("x-slipway-signature", &sign(&body))],
            &body,
        )
        .await;
    assert_eq!((status, text.trim()), (202, "1 targets matched"));
    assert_eq!(hooks.drain(), [hooked(&repo.url, Some("main"), &new)]);

    // a push to a branch nobody builds, a deleted branch, GitHub's ping
    let body = github_push(&repo.url, "refs/heads/other", &new);
    let sig = sign(&body);
    let (status, _) = hooks
        .post("/hooks/github", &[("x-hub-signature-256", &sig)], &body)
        .await;
    assert_eq!(status, 200);
    let body = github_push(&repo.url, "refs/heads/dev", &"0".repeat(40));
    let sig = sign(&body);
    let (status, _) = hooks
        .post("/hooks/github", &[("x-hub-signature-256", &sig)], &body)
        .await;
    assert_eq!(status, 200);
    let body = r#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#;
    let (status, _) = hooks
        .post(
            "/hooks/github",
            &[
                ("x-github-event", "ping"),
                ("x-hub-signature-256", &sign(body)),
            ],
            body,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(hooks.drain(), []);
}

/// A path, its headers, its body.
type Hook<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test]
async fn unsigned_or_wrongly_signed_hooks_get_401_and_report_nothing() {
    let server = GitServer::start();
    let repo = server.repo("guarded", "FROM scratch\n");
    let mut hooks = serve_hooks(targets([(target(&repo.url, Some("main")), Duration::ZERO)])).await;
    let new = repo.commit("Dockerfile", "FROM scratch\n# new\n");
    let body = github_push(&repo.url, "refs/heads/main", &new);
    let forged = WebhookSecret::new("not-the-secret")
        .unwrap()
        .sign(body.as_bytes());
    let generic = serde_json::json!({"url": repo.url, "ref": "main", "commit": new}).to_string();
    let generic_forged = WebhookSecret::new("not-the-secret")
        .unwrap()
        .sign(generic.as_bytes());
    // signed for another body: a replayed signature with a changed payload
    let other_body = sign(&github_push(&repo.url, "refs/heads/main", &"1".repeat(40)));

    let cases: [Hook; 7] = [
        ("/hooks/github", vec![], &body),
        (
            "/hooks/github",
            vec![("x-hub-signature-256", &forged)],
            &body,
        ),
        (
            "/hooks/github",
            vec![("x-hub-signature-256", &other_body)],
            &body,
        ),
        ("/hooks/gitlab", vec![], &body),
        (
            "/hooks/gitlab",
            vec![("x-gitlab-token", "not-the-secret")],
            &body,
        ),
        ("/hooks/generic", vec![], &generic),
        (
            "/hooks/generic",
            vec![("x-slipway-signature", &generic_forged)],
            &generic,
        ),
    ];
    for (path, headers, body) in cases {
        let (status, text) = hooks.post(path, &headers, body).await;
        assert_eq!(status, 401, "{path} {headers:?}: {text}");
        assert!(!text.contains(SECRET));
    }
    // nothing was reported, even a moment later
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hooks.drain(), []);
    // while a correctly signed one still is
    let (status, _) = hooks
        .post(
            "/hooks/github",
            &[("x-hub-signature-256", &sign(&body))],
            &body,
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(hooks.drain().len(), 1);
}

// ---- end to end: `slipway watch` building a git source served by the git daemon ----

fn git_build(name: &str, url: &str) -> String {
    crate::common::watcher::doc(
        name,
        &crate::common::watcher::indent(&format!(
            "source: {{git: {{url: '{url}', revision: main}}}}\n\
             output: {{registry: '{}', repository: slipway-test/{name}}}",
            crate::common::registry()
        )),
    )
}

/// The status once `name` has built `commit`.
async fn built(file: &std::path::Path, name: &str, commit: &str) -> serde_json::Value {
    crate::common::wait_for(
        &format!("{name} to build {commit}"),
        crate::common::watcher::LONG,
        || {
            crate::common::status_in(file, name)
                .filter(|s| s["phase"] == "Succeeded" && s["revision"] == commit)
        },
    )
    .await
}

#[tokio::test]
async fn watch_builds_a_new_commit_after_one_git_poll() {
    let base = crate::common::ensure_base().await;
    let server = GitServer::start();
    let repo = server.repo("polled-app", &format!("FROM {base}\nCOPY msg /msg\n"));
    let first = repo.commit("msg", "one");
    let fx = crate::common::Fixture::new().file("app.yaml", &git_build("gitpoll", &repo.url));
    let file = fx.path("app.yaml");
    let w = crate::common::watcher::Watcher::start(fx.dir.path(), &["--git-poll", "1s"]);

    let s = built(&file, "gitpoll", &first).await;
    assert_eq!(s["buildNumber"], 1, "{s:#}");
    let pushed = std::time::Instant::now();
    let second = repo.commit("msg", "two");
    let s = built(&file, "gitpoll", &second).await;
    eprintln!("commit pushed to built: {:?}", pushed.elapsed());
    assert_eq!(
        s["triggeredBy"],
        format!("git: {}..{}", &first[..7], &second[..7]),
        "{s:#}\n{}",
        w.log()
    );
    // one build per commit: the poll seeing the first commit again built nothing
    assert_eq!(s["buildNumber"], 2, "{s:#}");
}

#[tokio::test]
async fn watch_builds_at_once_on_a_signed_webhook_and_refuses_a_forged_one() {
    let base = crate::common::ensure_base().await;
    let server = GitServer::start();
    let repo = server.repo("hooked-app", &format!("FROM {base}\nCOPY msg /msg\n"));
    let first = repo.commit("msg", "one");
    let fx = crate::common::Fixture::new().file("app.yaml", &git_build("githook", &repo.url));
    let file = fx.path("app.yaml");
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("webhook-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    // Polling off: only a hook can tell slipway about the new commit.
    let w = crate::common::watcher::Watcher::start(
        fx.dir.path(),
        &[
            "--git-poll",
            "0",
            "--webhook-listen",
            &listen,
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
        ],
    );
    built(&file, "githook", &first).await;
    let second = repo.commit("msg", "two");
    let body = github_push(&repo.url, "refs/heads/main", &second);
    let http = reqwest::Client::new();
    let hook = |sig: Option<String>| {
        let mut req = http
            .post(format!("http://{listen}/hooks/github"))
            .header("x-github-event", "push")
            .body(body.clone());
        if let Some(sig) = sig {
            req = req.header("x-hub-signature-256", sig);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };

    let forged = WebhookSecret::new("not-the-secret")
        .unwrap()
        .sign(body.as_bytes());
    assert_eq!(hook(Some(forged)).await, 401);
    assert_eq!(hook(None).await, 401);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = crate::common::status_in(&file, "githook").unwrap();
    assert_eq!(
        (&s["phase"], &s["revision"], &s["buildNumber"]),
        (&"Succeeded".into(), &first.clone().into(), &1.into()),
        "a refused hook built something: {s:#}"
    );
    assert!(!w.log().contains(SECRET), "the secret is in the log");

    let hooked = std::time::Instant::now();
    assert_eq!(hook(Some(sign(&body))).await, 202);
    let s = built(&file, "githook", &second).await;
    eprintln!("signed hook to built: {:?}", hooked.elapsed());
    assert_eq!(
        s["triggeredBy"],
        format!("git: {}..{}", &first[..7], &second[..7]),
        "{s:#}"
    );
    assert_eq!(s["buildNumber"], 2, "{s:#}");
    assert!(!w.log().contains(SECRET), "the secret is in the log");
}
