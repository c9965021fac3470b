//! DockerBuilds from the Kubernetes API: a watch over the CRD (one namespace or
//! all), status written to the status subresource by server-side apply, a finalizer
//! so a deleted resource's build is stopped first, Events, and push credentials from
//! `kubernetes.io/dockerconfigjson` Secrets.

mod known;
mod lease;
mod secrets;
mod store;
mod watched;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use known::Known;
pub use lease::{Lease, LeaseConfig};
pub use store::ConfigMapStore;
use watched::Watched;

use super::{Notice, Resource, Source, SourceEvent};
use crate::api::{API_VERSION, DockerBuild, DockerBuildStatus, KIND};
use crate::registry::DockerConfig;
use crate::runner::BuildSecrets;
use crate::{Error, Kind, Result};

/// Held on every DockerBuild until its build has stopped.
pub const FINALIZER: &str = "slipway.dev/build";
/// The field manager of every status slipway writes.
pub const MANAGER: &str = "slipway";
/// How long a status write keeps trying through API errors before it gives up.
const WRITE_PATIENCE: Duration = Duration::from_secs(120);

/// A client from the default kubeconfig (KUBECONFIG, ~/.kube/config or in-cluster).
pub async fn default_client() -> Result<Client> {
    Client::try_default().await.map_err(|e| {
        Error::kube(
            "no cluster to talk to (KUBECONFIG, ~/.kube/config or the pod's service account)",
            e,
        )
    })
}

pub struct KubeSource {
    client: Client,
    /// Watch this namespace only; all namespaces when unset.
    namespace: Option<String>,
    recorder: Recorder,
}

impl KubeSource {
    /// `instance` names this replica in Events (the pod name).
    pub fn new(client: Client, namespace: Option<String>, instance: String) -> Self {
        let reporter = Reporter {
            controller: "slipway".into(),
            instance: Some(instance),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            namespace,
        }
    }

    /// Untyped, so that one object the types cannot read does not stop the watch.
    fn dynamic(&self, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = ApiResource::erase::<DockerBuild>(&());
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    /// Turns one watched object into what the reconciler hears.
    async fn seen(&self, obj: Watched, events: &mpsc::Sender<SourceEvent>) -> bool {
        let key = key_of(&obj);
        let origin = obj.uid().unwrap_or_default();
        if obj.metadata.deletion_timestamp.is_some() {
            return events
                .send(SourceEvent::Deleted { key, origin })
                .await
                .is_ok();
        }
        let has_finalizer = obj.finalizers().iter().any(|f| f == FINALIZER);
        if !has_finalizer && let Err(e) = self.set_finalizer(&obj, true).await {
            warn!(build = %key, "cannot add the finalizer: {e}");
        }
        let ev = match obj.into_build() {
            Ok(build) => SourceEvent::Applied(Box::new(Resource {
                build,
                origin,
                base_dir: None,
                // the API server does its own field validation
                warnings: Vec::new(),
            })),
            Err(e) => SourceEvent::Invalid {
                message: format!("cannot read {key}: {e}"),
                key,
                origin,
            },
        };
        events.send(ev).await.is_ok()
    }

    /// Adds or removes our finalizer, guarded by the object's resourceVersion so a
    /// concurrent change of the list is never overwritten.
    async fn set_finalizer(&self, obj: &impl kube::Resource, on: bool) -> kube::Result<()> {
        let mut list: Vec<String> = obj
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        if on {
            list.push(FINALIZER.into());
        }
        let patch = json!({
            "metadata": {
                "finalizers": list,
                "resourceVersion": obj.resource_version(),
            }
        });
        let api = self.dynamic(obj.namespace().as_deref());
        api.patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map(|_| ())
    }

    fn reference(key: &str, uid: &str) -> ObjectReference {
        let (ns, name) = split_key(key);
        ObjectReference {
            api_version: Some(API_VERSION.into()),
            kind: Some(KIND.into()),
            namespace: Some(ns.into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..Default::default()
        }
    }
}

/// The watch over DockerBuilds. `streaming`: the first listing comes as watch events
/// from the API server's cache, not as pages of a list; at 100,000 objects it is
/// served in half the time (benches/kube_sync.rs). The `WatchList` feature gate is
/// on by default in Kubernetes 1.32 and from 1.34; others refuse it (below).
fn watch(
    api: Api<Watched>,
    streaming: bool,
) -> BoxStream<'static, watcher::Result<Event<Watched>>> {
    let cfg = watcher::Config::default();
    let cfg = if streaming {
        cfg.streaming_lists()
    } else {
        cfg.page_size(500)
    };
    watcher::watcher(api, cfg).default_backoff().boxed()
}

/// An API server too old for streaming lists, or with them turned off (the
/// `WatchList` feature gate), refuses the request as malformed: what it said.
fn refuses_streaming(e: &watcher::Error) -> Option<&str> {
    let status = match e {
        watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s,
        watcher::Error::WatchError(s) => s,
        _ => return None,
    };
    matches!(status.code, 400 | 422).then_some(status.message.as_str())
}

#[async_trait]
impl Source for KubeSource {
    async fn run(&self, events: mpsc::Sender<SourceEvent>) -> Result<()> {
        let api: Api<Watched> = match self.namespace.as_deref() {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut streaming = true;
        let mut stream = watch(api.clone(), streaming);
        // a relist after a lost watch must report the deletions it missed
        let mut known = Known::default();
        let mut synced = false;
        while let Some(ev) = stream.next().await {
            let ok = match ev {
                Err(ref e) if streaming && let Some(why) = refuses_streaming(e) => {
                    info!("the API server does not stream lists ({why}); listing in pages");
                    streaming = false;
                    stream = watch(api.clone(), streaming);
                    true
                }
                Ok(Event::Init) => {
                    known.listing();
                    true
                }
                Ok(Event::InitApply(obj)) | Ok(Event::Apply(obj)) => {
                    let deleting = obj.metadata.deletion_timestamp.is_some();
                    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
                    known.applied(&key_of(&obj), uid, deleting);
                    self.seen(obj, &events).await
                }
                Ok(Event::InitDone) => {
                    let mut ok = true;
                    for (key, origin) in known.listed() {
                        ok &= events
                            .send(SourceEvent::Deleted { key, origin })
                            .await
                            .is_ok();
                    }
                    if !synced {
                        synced = true;
                        info!(resources = known.len(), "listed DockerBuilds");
                        ok &= events.send(SourceEvent::Synced).await.is_ok();
                    }
                    ok
                }
                Ok(Event::Delete(obj)) => {
                    let key = key_of(&obj);
                    known.deleted(&key);
                    let origin = obj.uid().unwrap_or_default();
                    events
                        .send(SourceEvent::Deleted { key, origin })
                        .await
                        .is_ok()
                }
                Err(e) => {
                    // the watcher backs off and retries by itself
                    warn!("watching DockerBuilds: {e}");
                    true
                }
            };
            if !ok {
                break; // the controller stopped
            }
        }
        Ok(())
    }

    async fn write_status(
        &self,
        key: &str,
        origin: &str,
        status: &DockerBuildStatus,
    ) -> Result<()> {
        let (ns, name) = split_key(key);
        let api: Api<DockerBuild> = Api::namespaced(self.client.clone(), ns);
        // the uid makes a write meant for a deleted object fail on a namesake
        let patch = json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": { "name": name, "uid": origin },
            "status": status,
        });
        let params = PatchParams::apply(MANAGER).force();
        let started = Instant::now();
        let mut backoff =
            crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            match api.patch_status(name, &params, &Patch::Apply(&patch)).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    debug!(build = %key, "status not written: the resource is gone");
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.code == 409 && self.replaced(key, origin).await => {
                    debug!(build = %key, "status not written: the resource was replaced");
                    return Ok(());
                }
                Err(e) if transient(&e) && started.elapsed() < WRITE_PATIENCE => {
                    let delay = backoff.next_delay();
                    warn!(build = %key, "writing status failed, retrying in {delay:?}: {e}");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(Error::kube(format!("writing the status of {key}"), e)),
            }
        }
    }

    async fn auth(&self, res: &Resource) -> Result<DockerConfig> {
        let Some(r) = res
            .build
            .spec
            .output
            .as_ref()
            .and_then(|o| o.push_secret_ref.as_ref())
        else {
            return Ok(DockerConfig::default());
        };
        let Some(name) = r.name.as_deref() else {
            return Err(Error::InvalidSpec(
                "spec.output.pushSecretRef.path is for watch folders; in Kubernetes set pushSecretRef.name to a kubernetes.io/dockerconfigjson Secret".into(),
            ));
        };
        let ns = res.namespace();
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        let what = format!("Secret {ns}/{name} (spec.output.pushSecretRef)");
        let secret = match api.get_opt(name).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(Error::new(Kind::Kube, format!("{what} does not exist"))),
            Err(e) => return Err(Error::kube(format!("cannot read {what}"), e)),
        };
        let type_ = secret.type_.as_deref().unwrap_or("Opaque");
        if type_ != "kubernetes.io/dockerconfigjson" {
            return Err(Error::InvalidSpec(format!(
                "{what} is of type {type_}; it must be a kubernetes.io/dockerconfigjson Secret (kubectl create secret docker-registry)"
            )));
        }
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(".dockerconfigjson"))
            .ok_or_else(|| Error::InvalidSpec(format!("{what} has no .dockerconfigjson key")))?;
        let text = std::str::from_utf8(&data.0)
            .map_err(|_| Error::InvalidSpec(format!("{what}: .dockerconfigjson is not UTF-8")))?;
        // the parser's message names what is wrong, never the content
        DockerConfig::parse(text)
            .map_err(|e| Error::InvalidSpec(format!("{what}: .dockerconfigjson: {e}")))
    }

    async fn secrets(&self, res: &Resource) -> Result<BuildSecrets> {
        if res.build.spec.secrets.is_empty() {
            return Ok(BuildSecrets::default());
        }
        secrets::read(&self.client, &res.namespace(), &res.build.spec.secrets).await
    }

    async fn notify(&self, key: &str, origin: &str, notice: &Notice) {
        let ev = KubeEvent {
            type_: if notice.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: notice.reason.into(),
            note: Some(truncate(&notice.message, 1000)),
            action: "Build".into(),
            secondary: None,
        };
        if let Err(e) = self
            .recorder
            .publish(&ev, &Self::reference(key, origin))
            .await
        {
            warn!(build = %key, reason = notice.reason, "cannot publish an event: {e}");
        }
    }

    async fn released(&self, key: &str, origin: &str) -> Result<()> {
        let (ns, name) = split_key(key);
        let api = self.dynamic(Some(ns));
        for _ in 0..5 {
            let obj = match api.get_opt(name).await {
                Ok(Some(o)) => o,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Error::kube(format!("reading {key}"), e)),
            };
            if obj.uid().as_deref() != Some(origin)
                || !obj.finalizers().iter().any(|f| f == FINALIZER)
            {
                return Ok(());
            }
            match self.set_finalizer(&obj, false).await {
                Ok(()) => {
                    info!(build = %key, "finalizer removed");
                    return Ok(());
                }
                // someone changed the object meanwhile: read it again
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(Error::kube(format!("removing the finalizer of {key}"), e)),
            }
        }
        Err(Error::new(
            Kind::Kube,
            format!("{key}: the finalizer could not be removed (the object kept changing)"),
        ))
    }
}

impl KubeSource {
    /// The object under `key` is gone or is another object now.
    async fn replaced(&self, key: &str, origin: &str) -> bool {
        let (ns, name) = split_key(key);
        match self.dynamic(Some(ns)).get_opt(name).await {
            Ok(Some(o)) => o.uid().as_deref() != Some(origin),
            Ok(None) => true,
            Err(_) => false,
        }
    }
}

/// Errors worth trying again: the API server busy, restarting or unreachable. A
/// restarted server answers 401/403 until its authentication and RBAC caches have
/// synced, so those are retried too (a real lack of permission shows up as the
/// same warning, repeated, and then as the error).
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 401 | 403 | 409 | 429) || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

fn key_of(obj: &impl kube::Resource) -> String {
    format!(
        "{}/{}",
        obj.namespace().unwrap_or_else(|| "default".into()),
        obj.name_any()
    )
}

fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("default", key))
}

/// Event notes are limited to 1 kB.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_namespace_and_name() {
        assert_eq!(split_key("team-a/app"), ("team-a", "app"));
        assert_eq!(split_key("app"), ("default", "app"));
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let s = "é".repeat(600);
        let t = truncate(&s, 1000);
        assert!(t.len() <= 1000, "{}", t.len());
        assert!(t.ends_with("..."));
        assert_eq!(truncate("short", 1000), "short");
    }

    #[test]
    fn api_errors_that_pass_are_retried_and_others_are_not() {
        let api = |code| {
            kube::Error::Api(
                kube::core::Status::failure("x", "y")
                    .with_code(code)
                    .boxed(),
            )
        };
        assert!(transient(&api(409)));
        assert!(transient(&api(503)));
        assert!(
            transient(&api(403)),
            "a restarted server forbids until RBAC syncs"
        );
        assert!(!transient(&api(404)));
        assert!(!transient(&api(422)));
    }
}

#[cfg(test)]
mod streaming_tests {
    use super::*;

    fn status(code: u16, message: &str) -> Box<kube::core::Status> {
        kube::core::Status::failure(message, "Invalid")
            .with_code(code)
            .boxed()
    }

    /// What kube-apiserver 1.34 answers with `--feature-gates=WatchList=false`.
    const FORBIDDEN: &str = "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: \
        Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled";

    #[test]
    fn a_server_that_refuses_streaming_lists_is_listed_in_pages_and_nothing_else_is() {
        let refused = watcher::Error::WatchStartFailed(kube::Error::Api(status(422, FORBIDDEN)));
        assert_eq!(refuses_streaming(&refused), Some(FORBIDDEN));
        let old = watcher::Error::WatchError(status(400, "resourceVersionMatch is forbidden"));
        assert!(refuses_streaming(&old).is_some());
        // not a refusal of streaming: the watcher retries these as they are
        for code in [403, 410, 500, 503] {
            let e = watcher::Error::WatchStartFailed(kube::Error::Api(status(code, "x")));
            assert_eq!(refuses_streaming(&e), None, "{code}");
        }
        assert_eq!(refuses_streaming(&watcher::Error::NoResourceVersion), None);
    }
}
