//! Building on a standalone buildkitd (`--builder buildkitd`), over its gRPC API: no
//! Docker daemon involved. slipway opens a session that serves the build context,
//! registry credentials and secrets ([`session`]), asks for one solve with the
//! Dockerfile frontend and an image exporter that pushes ([`request`]), follows the
//! build's status stream for progress, and reads the pushed index back ([`index`]).
//!
//! Written on `bollard-buildkit-proto` rather than bollard's own buildkitd driver,
//! which drops the solve's response (no digest), never sets the frontend's
//! `cache-imports` (a registry cache is exported but never imported), cannot ask for
//! provenance, and reports no status.

mod connect;
mod index;
mod request;
mod session;

use std::collections::BTreeMap;
use std::time::Duration;

use bollard_buildkit_proto::moby::buildkit::v1::StatusRequest;
use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tracing::debug;

use super::engine::BuildkitdArgs;
use super::errors::push_error;
use super::filesync::LocalDirs;
use super::progress::{Progress, StagesOnDrop};
use super::{BuildEvent, BuildOutcome, BuildSecrets, Events, Resolved};
use crate::api::DockerBuildSpec;
use crate::api::StageStep;
use crate::registry::{Credentials, error_chain};
use crate::{Error, Result};

/// Largest gRPC message accepted from buildkitd (its own default cap).
const MAX_MESSAGE: usize = 16 << 20;
/// How long the status stream may trail the solve's answer: it carries the failing
/// step's last lines.
const STATUS_GRACE: Duration = Duration::from_secs(3);

/// A buildkitd to build on; cheap to clone.
#[derive(Clone)]
pub(crate) struct Buildkitd {
    control: ControlClient<Channel>,
    /// `--buildkit-addr`, for messages.
    addr: String,
}

/// One build, prepared by the runner.
pub(crate) struct Job<'a> {
    pub spec: &'a DockerBuildSpec,
    /// The context and the directive-stripped Dockerfile, served by file sync.
    pub context: LocalDirs,
    /// Names the context for buildkitd, which keeps the copy of the last build with
    /// this key and asks only for what changed since (the resource's key).
    pub context_key: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub target: &'a Resolved,
    pub creds: Option<Credentials>,
    pub secrets: BuildSecrets,
    pub http: crate::tls::Clients,
}

impl Buildkitd {
    /// Checks the address and TLS files; the connection itself is made by the first
    /// build (a buildkitd still starting fails that build retryably, not the process).
    pub(crate) fn connect(args: &BuildkitdArgs) -> Result<Self> {
        let (channel, addr) = connect::channel(args)?;
        let control = ControlClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Ok(Self { control, addr })
    }

    fn unreachable(&self, s: tonic::Status) -> Error {
        Error::buildkit(
            format!(
                "cannot reach buildkitd at {}: {}",
                self.addr,
                error_chain(&s)
            ),
            s,
        )
    }

    /// A solve that failed: buildkitd out of reach (retried) or the build's failure.
    fn solve_error(&self, progress: &Progress, s: tonic::Status, tag_refs: &[String]) -> Error {
        if is_transport(&s) {
            self.unreachable(s)
        } else {
            failure(progress, s.message(), tag_refs)
        }
    }

    /// Builds and pushes; returns the pushed image's (or index's) digest as
    /// buildkitd reports it, and the build's steps.
    pub(crate) async fn build(
        &self,
        job: Job<'_>,
        events: &Events,
    ) -> Result<(String, Vec<StageStep>)> {
        let session_id = uuid::Uuid::new_v4().simple().to_string();
        let build_ref = uuid::Uuid::new_v4().simple().to_string();
        let dockerfile = job.context.dockerfile_name().to_string();
        let provided = crate::runner::session::Provided {
            context: job.context,
            shared_key: crate::runner::session::shared_key(job.context_key),
            auth: job
                .creds
                .map(|c| (job.target.registry.clone(), c))
                .into_iter()
                .collect(),
            secrets: job.secrets,
            http: job.http,
        };
        // dropped on return: the tunnel closes and buildkitd forgets the session
        let _session = session::start(self.control.clone(), &session_id, provided)
            .await
            .map_err(|s| self.unreachable(s))?;
        let tag_refs = job.target.tag_refs();
        let req = request::solve_request(&request::Solve {
            build_ref: &build_ref,
            session: &session_id,
            dockerfile: &dockerfile,
            spec: job.spec,
            labels: job.labels,
            tag_refs: &tag_refs,
        });
        debug!(build_ref, "solving on buildkitd");

        // the status stream, read alongside the solve; the task ends with the build
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        let mut control = self.control.clone();
        let status_ref = build_ref.clone();
        tasks.spawn(async move {
            let req = StatusRequest { r#ref: status_ref };
            let Ok(resp) = control.status(req).await else {
                return;
            };
            let mut stream = resp.into_inner();
            while let Ok(Some(m)) = stream.message().await {
                if tx.send(m).is_err() {
                    break;
                }
            }
        });
        let mut told = StagesOnDrop::new(events);
        let mut pushing = false;
        let mut feed = |status| {
            for ev in told.progress.update(&status) {
                if let BuildEvent::Step(s) | BuildEvent::Log(s) = &ev
                    && !pushing
                    && s.starts_with("exporting")
                {
                    pushing = true;
                    let _ = events.send(BuildEvent::Pushing {
                        tags: tag_refs.clone(),
                    });
                }
                let _ = events.send(ev);
            }
        };

        // Dropping this future (cancel, timeout) resets the Solve call, and buildkitd
        // cancels the build with it: its RUN processes stop (tests/it/buildkitd.rs).
        let mut control = self.control.clone();
        let solve = control.solve(req);
        tokio::pin!(solve);
        let solved = loop {
            tokio::select! {
                Some(m) = rx.recv() => feed(m),
                r = &mut solve => break r,
            }
        };
        let _ = tokio::time::timeout(STATUS_GRACE, async {
            while let Some(m) = rx.recv().await {
                feed(m);
            }
        })
        .await;
        let resp = match solved {
            Ok(r) => r.into_inner(),
            Err(s) => return Err(self.solve_error(&told.progress, s, &tag_refs)),
        };
        let digest = resp
            .exporter_response
            .get("containerimage.digest")
            .cloned()
            .ok_or_else(|| {
                told.progress
                    .failure("buildkitd reported no image digest for the pushed image")
            })?;
        for tag in tag_refs {
            let _ = events.send(BuildEvent::Pushed {
                tag,
                digest: digest.clone(),
            });
        }
        Ok((digest, told.list()))
    }
}

/// What buildkitd pushed (`pushed`), checked against what the registry serves, with
/// the index's platforms and attestations.
pub(crate) async fn outcome(
    http: &crate::tls::Clients,
    (pushed, stages): (String, Vec<StageStep>),
    target: &Resolved,
    creds: Option<&Credentials>,
    revision: Option<String>,
) -> Result<BuildOutcome> {
    let served = crate::registry::manifest_digest(
        http,
        &target.registry,
        &target.repository,
        &target.tags[0],
        creds,
    )
    .await?;
    if served != pushed {
        return Err(Error::Registry(
            format!(
                "buildkitd pushed {pushed} but the registry serves {served} for {}:{}",
                target.name(),
                target.tags[0]
            )
            .into(),
        ));
    }
    let (platforms, attestations) = index::read_index(http, target, &served, creds).await?;
    Ok(BuildOutcome {
        image: format!("{}@{served}", target.name()),
        digest: served,
        pushed_tags: target.tag_refs(),
        revision,
        platforms,
        attestations,
        stages,
        ..Default::default()
    })
}

/// Refuses a Dockerfile that mounts a secret the build was not given: BuildKit would
/// silently leave the file out (secrets are optional by default).
pub(crate) fn check_secrets(dockerfile: &str, secrets: &BuildSecrets) -> Result<()> {
    let missing: Vec<String> = request::mounted_secrets(dockerfile)
        .into_iter()
        .filter(|id| !secrets.0.contains_key(id))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidSpec(format!(
        "the Dockerfile mounts secret {} (RUN --mount=type=secret) but spec.secrets has no such id",
        missing
            .iter()
            .map(|m| format!("'{m}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// buildkitd (or the way to it) is down, as opposed to the build failing: tonic's
/// own transport error behind the status, never the words of buildkitd's answer.
fn is_transport(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::Unavailable
        || crate::find_cause::<tonic::transport::Error>(s).is_some()
}

/// A failed solve: the failing step named, with its output. A push the registry
/// refused is the credentials' fault (not retried); one it could not take is the
/// registry's (retried), as on the daemon route.
fn failure(progress: &Progress, message: &str, tag_refs: &[String]) -> Error {
    if message.to_lowercase().contains("failed to push") {
        return push_error(&tag_refs.join(", "), message);
    }
    progress.failure(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mounted_secret_nobody_gave_is_refused_by_id() {
        let df = "FROM x\nRUN --mount=type=secret,id=tok --mount=type=secret,id=npm make\n";
        let given = BuildSecrets([("tok".to_string(), b"v".to_vec())].into());
        let e = check_secrets(df, &given).unwrap_err();
        assert!(matches!(e, Error::InvalidSpec(_)), "{e:?}");
        assert!(e.to_string().contains("secret 'npm'"), "{e}");
        assert!(!e.to_string().contains("'tok'"), "{e}");
        let both = BuildSecrets([("tok".to_string(), vec![]), ("npm".to_string(), vec![])].into());
        check_secrets(df, &both).unwrap();
    }

    #[test]
    fn a_push_the_registry_could_not_take_is_retried_one_it_refused_is_not() {
        let p = Progress::default();
        let refs = ["r/a:1".to_string()];
        let down = failure(
            &p,
            "failed to push r/a:1: dial tcp: connection refused",
            &refs,
        );
        assert!(matches!(down, Error::Registry(_)), "{down:?}");
        let refused = failure(
            &p,
            "failed to push r/a:1: unexpected status from HEAD request: 401 Unauthorized",
            &refs,
        );
        assert!(matches!(refused, Error::InvalidSpec(_)), "{refused:?}");
        let step = failure(
            &p,
            "process \"/bin/sh -c make\" did not complete successfully: exit code: 2",
            &refs,
        );
        assert!(matches!(step, Error::BuildFailed(_)), "{step:?}");
    }

    #[tokio::test]
    async fn buildkitd_out_of_reach_is_told_by_the_transport_error_not_by_words() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("tcp://127.0.0.1:{port}");
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect_lazy();
        let bk = Buildkitd {
            control: ControlClient::new(channel),
            addr: addr.clone(),
        };
        let down = bk
            .control
            .clone()
            .status(StatusRequest { r#ref: "x".into() })
            .await
            .unwrap_err();
        let p = Progress::default();
        let e = bk.solve_error(&p, down, &[]);
        assert_eq!(e.metric_label(), "BuildkitError", "{e:?}");
        assert!(e.is_retryable());
        assert!(
            e.to_string()
                .starts_with(&format!("buildkitd: cannot reach buildkitd at {addr}: ")),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
        // buildkitd's own answer saying the words is the build's failure
        let said = tonic::Status::unknown("failed to solve: transport error: x509 expired");
        let e = bk.solve_error(&p, said, &[]);
        assert_eq!(e.metric_label(), "BuildFailed", "{e:?}");
        assert!(!e.is_retryable());
    }
}
