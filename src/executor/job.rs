//! The one build this executor runs: the task's payload decoded into a build
//! request, run by the shared runner on a task of its own so the event loop stays
//! free to talk to the agent.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use super::engine::{self, EngineMode};
use crate::mesos::staging::{self, StagedBlob};
use crate::mesos::task::TaskPayload;
use crate::registry::DockerConfig;
use crate::runner::{BuildEvent, BuildOutcome, BuildRequest, Runner};
use crate::{Error, Result};

/// What the build tells the event loop.
#[derive(Debug)]
pub enum JobMsg {
    Event(BuildEvent),
    Done(Result<BuildOutcome>),
}

/// The build request in a task's data. Errors are the user's (InvalidSpec) and say
/// what is wrong without quoting the data, which holds credentials. A context staged
/// in the registry comes with it, to fetch before the build.
pub fn request(data: &[u8]) -> Result<(BuildRequest, Option<StagedBlob>)> {
    if data.is_empty() {
        return Err(Error::InvalidSpec(
            "the task carries no build (TaskInfo.data is empty)".into(),
        ));
    }
    let payload = TaskPayload::decode(data)?;
    let auth = match payload.docker_config.as_deref() {
        Some(text) => DockerConfig::parse(text)
            .map_err(|e| Error::InvalidSpec(format!("docker config in the task: {e}")))?,
        None => DockerConfig::default(),
    };
    let req = BuildRequest {
        key: payload.key,
        spec: payload.spec,
        // a remote build has no directory of its own: `path` sources arrive as URLs
        base_dir: None,
        auth: Arc::new(auth),
        previous: None,
        secrets: payload.secrets,
    };
    Ok((req, payload.staged))
}

/// Starts the build; its events and its end arrive on `tx`, the end always last.
pub fn spawn(
    (req, staged): (BuildRequest, Option<StagedBlob>),
    mut opts: super::ExecutorOptions,
    cancel: CancellationToken,
    tx: mpsc::UnboundedSender<JobMsg>,
) -> JoinHandle<()> {
    let span = info_span!("build", key = %req.key);
    tokio::spawn(
        async move {
            let result: crate::Result<_> = async {
                // the sandbox (the executor's working directory) holds a staged context
                let req = match staged {
                    Some(blob) => {
                        let sandbox = std::env::current_dir()?;
                        staging::fetch_staged(&blob, req, &sandbox).await?
                    }
                    None => req,
                };
                // read per build (one per executor): a bad file fails the build, named
                let tls = crate::tls::Tls::load(&opts.tls)?;
                let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
                let engine = match opts.engine.mode {
                    EngineMode::Shared => None,
                    EngineMode::Ephemeral => Some(engine::start_for(&mut opts, &ev_tx).await?),
                };
                let run = async {
                    let r = async {
                        Runner::connect_tls(
                            opts.docker_host.as_deref(),
                            &opts.docker_tls,
                            opts.builder,
                            &opts.buildkitd,
                        )
                        .await?
                        .with_tls(&tls)?
                        .run(req, ev_tx, cancel)
                        .await
                    }
                    .await;
                    // built and pushed (or not): the private daemon goes, with its children
                    if let Some(e) = engine {
                        e.stop().await;
                    }
                    r
                };
                tokio::pin!(run);
                loop {
                    tokio::select! {
                        Some(ev) = ev_rx.recv() => { let _ = tx.send(JobMsg::Event(ev)); }
                        r = &mut run => {
                            // events sent just before the end still go first
                            while let Ok(ev) = ev_rx.try_recv() {
                                let _ = tx.send(JobMsg::Event(ev));
                            }
                            break r;
                        }
                    }
                }
            }
            .await;
            let _ = tx.send(JobMsg::Done(result));
        }
        .instrument(span),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_empty_payloads_are_the_users_error() {
        for data in [&b""[..], b"\xff\xfe not json", b"{\"key\": 1}"] {
            let e = request(data).unwrap_err();
            assert_eq!(e.metric_label(), "InvalidSpec", "{e}");
        }
    }

    #[test]
    fn a_bad_docker_config_is_reported_without_its_content() {
        let data = serde_json::json!({
            "key": "a/b",
            "spec": {"source": {"inline": {"dockerfile": "FROM scratch"}}},
            "dockerConfig": "{\"auths\": {\"r\": {\"auth\": \"hunter2-not-base64!\"}}}"
        });
        let e = request(&serde_json::to_vec(&data).unwrap()).unwrap_err();
        assert_eq!(e.metric_label(), "InvalidSpec");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn secrets_ride_in_the_payload_into_the_request_and_debug_shows_ids_only() {
        let mut secrets = crate::runner::BuildSecrets::default();
        secrets
            .0
            .insert("npm".into(), b"tok-3f9a-never-shown".to_vec());
        let payload = TaskPayload {
            key: "a/b".into(),
            spec: serde_json::from_value(serde_json::json!({
                "source": {"inline": {"dockerfile": "FROM scratch"}},
                "secrets": [{"id": "npm", "secretRef": {"name": "s", "key": "k"}}]
            }))
            .unwrap(),
            docker_config: None,
            secrets,
            staged: None,
        };
        assert!(!format!("{payload:?}").contains("tok-3f9a"));
        let (req, _) = request(&payload.encode()).unwrap();
        assert_eq!(req.secrets.0["npm"], b"tok-3f9a-never-shown");
        let shown = format!("{req:?}");
        assert!(
            !shown.contains("tok-3f9a") && shown.contains("\"npm\""),
            "{shown}"
        );
    }
}
