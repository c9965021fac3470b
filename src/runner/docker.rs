//! The runner proper: context → builder (Docker through bollard, or a standalone
//! buildkitd) → registry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptions, TagImageOptions};
use futures::StreamExt;
use tracing::{debug, instrument, warn};

use super::fetch::UrlLimits;
use super::{BuildEvent, BuildOutcome, BuildRequest, Cancel, Events, bases, context, directives};
use crate::api::PullPolicy;
use crate::registry;
use crate::tls::{Clients, GitTls, Tls};

mod buildkit;
mod classic;
mod daemon;
mod inline_cache;
mod push;
mod tls;
mod workspace;
use super::buildkitd::{self, Buildkitd};
use super::engine::{self, Builder, BuildkitdArgs, Engine};
use super::errors::blame_context;
use super::filesync::LocalDirs;
use super::session;
use crate::{Error, Result};
pub use tls::DockerTls;

/// Runs builds against one Docker daemon or one buildkitd.
#[derive(Clone)]
pub struct Runner {
    /// None with buildkitd, which needs no Docker daemon.
    docker: Option<Docker>,
    /// Where to open build sessions on the daemon (its BuildKit then takes the
    /// context by file sync); None when we cannot, and builds send a tar.
    daemon: Option<daemon::Addr>,
    buildkitd: Option<Buildkitd>,
    /// The builder every build of this runner uses, chosen once at connect.
    engine: Engine,
    /// Registry calls, by host (certs.d): short, so a total timeout suits them.
    http: Clients,
    /// `url` sources: no total timeout (the build's own bounds them), see [`UrlLimits`].
    downloads: reqwest::Client,
    /// `git` sources over https: the same roots and `--ca-file`.
    git_tls: GitTls,
    url_limits: UrlLimits,
    /// `--default-cache-ref`: the cache tag for builds without `spec.cache`.
    default_cache: Option<String>,
}

impl Runner {
    /// Connects to `docker_host` (`unix://...`, `tcp://...`) or `DOCKER_HOST` or the
    /// local socket, agrees on an API version with the daemon, and picks the builder
    /// `builder` asks for (see [`engine::choose`]).
    pub async fn connect(docker_host: Option<&str>, builder: Builder) -> Result<Self> {
        Self::connect_with(docker_host, builder, &BuildkitdArgs::default()).await
    }

    /// [`Runner::connect`], with a standalone buildkitd to build on: chosen when
    /// `builder` is buildkitd, or auto with an address; then no Docker daemon is
    /// contacted at all.
    pub async fn connect_with(
        docker_host: Option<&str>,
        builder: Builder,
        buildkitd: &BuildkitdArgs,
    ) -> Result<Self> {
        Self::connect_tls(docker_host, &DockerTls::from_env(), builder, buildkitd).await
    }

    /// [`Runner::connect_with`], reaching a `tcp://` daemon over TLS as `tls` says.
    pub async fn connect_tls(
        docker_host: Option<&str>,
        tls: &DockerTls,
        builder: Builder,
        buildkitd: &BuildkitdArgs,
    ) -> Result<Self> {
        let (docker, engine) = match engine::without_docker(builder, buildkitd.addr.as_deref())? {
            Some(Engine::Buildkitd) => (None, Engine::Buildkitd),
            Some(engine) => (Some(connect_docker(docker_host, tls).await?), engine),
            None => {
                let docker = connect_docker(docker_host, tls).await?;
                let v = docker
                    .version()
                    .await
                    .map_err(|e| Error::docker(format!("cannot reach the daemon: {e}"), e))?;
                let (engine, fallback) =
                    engine::choose(builder, v.os.as_deref(), v.api_version.as_deref())?;
                if let Some(why) = fallback {
                    warn!("{why}");
                }
                (Some(docker), engine)
            }
        };
        let default_cache = buildkitd.default_cache_ref.clone();
        let buildkitd = match engine {
            Engine::Buildkitd => Some(Buildkitd::connect(buildkitd)?),
            _ => None,
        };
        debug!(?engine, "builder");
        let (http, downloads) = http_clients(&Tls::default())?;
        let git_tls = GitTls::default();
        Ok(Self {
            daemon: docker
                .as_ref()
                .and_then(|_| daemon::Addr::resolve(docker_host, tls.docker_tls_verify)),
            docker,
            buildkitd,
            engine,
            http,
            downloads,
            git_tls,
            url_limits: UrlLimits::default(),
            default_cache,
        })
    }

    /// The builder this runner uses.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Trusts and client certificates for registries and `url` sources
    /// (`--ca-file`, `--certs-dir`) beyond the compiled-in roots.
    pub fn with_tls(mut self, tls: &Tls) -> Result<Self> {
        (self.http, self.downloads) = http_clients(tls)?;
        self.git_tls = tls.git();
        Ok(self)
    }

    /// Caps and stall timeout for `url` sources (`--max-context-bytes`).
    pub fn with_url_limits(mut self, limits: UrlLimits) -> Self {
        self.url_limits = limits;
        self
    }

    /// Runs one build to the end, or until `cancel` fires or the spec's timeout passes.
    #[instrument(skip_all, fields(build = %req.key))]
    pub async fn run(
        &self,
        req: BuildRequest,
        events: Events,
        cancel: Cancel,
    ) -> Result<BuildOutcome> {
        let timeout = req.spec.timeout_seconds;
        let work = self.run_inner(req, events);
        tokio::select! {
            _ = cancel.cancelled() => Err(Error::Cancelled("build cancelled".into())),
            r = async {
                match timeout {
                    Some(s) => tokio::time::timeout(Duration::from_secs(s), work)
                        .await
                        .unwrap_or(Err(Error::timed_out(s))),
                    None => work.await,
                }
            } => r,
        }
    }

    async fn run_inner(&self, req: BuildRequest, events: Events) -> Result<BuildOutcome> {
        let spec = &req.spec;
        crate::api::validate_spec(spec)?;
        engine::check_spec(self.engine, spec)?;
        let ws = self.workspace(&req).await?;
        let dockerfile = spec.dockerfile.as_deref().unwrap_or("Dockerfile");
        context::check_relative(dockerfile, "dockerfile")?;
        // plan first: it refuses a Dockerfile that is a symlink leading outside
        let plan = {
            let dir = ws.dir.clone();
            let df = dockerfile.to_string();
            tokio::task::spawn_blocking(move || context::plan(&dir, &df))
                .await
                .map_err(|e| Error::context(e.to_string(), e))??
        };
        let text = plan.read_dockerfile()?;
        let (d, stripped) = directives::parse(&text)?;
        let images = directives::from_images(&text, &spec.build_args);
        let bases = bases::Lookup::start(self.http.clone(), images, req.auth.clone());
        let target = super::resolve(spec, &d)?;
        let with_cache;
        let spec = match engine::default_cache(
            self.engine,
            spec,
            self.default_cache.as_deref(),
            &target,
        ) {
            Some(cache) => {
                with_cache = crate::api::DockerBuildSpec {
                    cache: Some(cache),
                    ..spec.clone()
                };
                &with_cache
            }
            None => spec,
        };
        let creds = req.auth.credentials_for(&target.registry).await?;
        if self.buildkitd.is_some() {
            buildkitd::check_secrets(&stripped, &req.secrets)?;
        }

        // fail fast (and retryably) before a long build when the registry is down, and
        // at once (not retried) when it wants credentials nobody gave
        let wants_auth = self.ping_registry(&target.registry).await?;
        if wants_auth && creds.is_none() {
            return Err(Error::InvalidSpec(
                req.auth.missing_credentials(&target.registry),
            ));
        }

        let _ = events.send(BuildEvent::Building {
            context_bytes: plan.total_bytes,
            files: plan.files,
        });
        // the event above is what people see; this is for debugging
        debug!(
            files = plan.files,
            bytes = plan.total_bytes,
            "sending build context"
        );
        let mut labels: BTreeMap<String, String> = spec.labels.clone();
        if let Some(u) = &ws.source_url {
            labels
                .entry("org.opencontainers.image.source".into())
                .or_insert_with(|| strip_userinfo(u));
        }
        if let Some(r) = &ws.revision {
            labels
                .entry("org.opencontainers.image.revision".into())
                .or_insert_with(|| r.clone());
        }
        let refs = target.tag_refs();
        let docker = match (&self.docker, &self.buildkitd) {
            (_, Some(bk)) => {
                let dirs = LocalDirs::read(plan, stripped.into_bytes()).await?;
                let context_failure = dirs.failure();
                let job = buildkitd::Job {
                    spec,
                    context: dirs,
                    context_key: &req.key,
                    labels: &labels,
                    target: &target,
                    creds: creds.clone(),
                    secrets: req.secrets.clone(),
                    http: self.http.clone(),
                };
                let built = bk.build(job, &events).await.map_err(|e| {
                    // a context that broke while being read explains the failure
                    match context_failure.get() {
                        Some(f) => Error::Context(f.into()),
                        None => e,
                    }
                })?;
                let out =
                    buildkitd::outcome(&self.http, built, &target, creds.as_ref(), ws.revision)
                        .await?;
                return Ok(BuildOutcome {
                    base_images: bases.finish().await,
                    source_version: ws.source_version,
                    ..out
                });
            }
            (Some(d), None) => d,
            (None, None) => return Err(Error::Docker("no Docker daemon connected".into())),
        };
        let options = BuildImageOptions {
            dockerfile: dockerfile.to_string(),
            t: refs.first().cloned(),
            nocache: spec.no_cache,
            // both the classic builder and the daemon's BuildKit read it
            pull: (spec.pull == PullPolicy::Always).then(|| "1".into()),
            rm: true,
            forcerm: true,
            buildargs: (!spec.build_args.is_empty())
                .then(|| spec.build_args.clone().into_iter().collect()),
            labels: (!labels.is_empty()).then(|| labels.into_iter().collect()),
            target: spec.target.clone().unwrap_or_default(),
            ..Default::default()
        };
        let inline = spec
            .cache
            .as_ref()
            .filter(|_| self.engine == Engine::BuildkitDaemon);
        let mut build_creds: HashMap<_, _> = creds
            .as_ref()
            .map(|c| (target.registry.clone(), c.clone()))
            .into_iter()
            .collect();
        let options = match inline {
            Some(cache) => {
                inline_cache::credentials(&req.auth, cache, &mut build_creds).await?;
                inline_cache::options(cache, options)
            }
            None => options,
        };
        let built = if let (Engine::BuildkitDaemon, Some(addr)) = (self.engine, &self.daemon) {
            let dirs = LocalDirs::read(plan, stripped.into_bytes()).await?;
            let context_failure = dirs.failure();
            let provided = session::Provided {
                context: dirs,
                shared_key: session::shared_key(&req.key),
                auth: build_creds,
                secrets: req.secrets.clone(),
                http: self.http.clone(),
            };
            let built = buildkit::build_synced(docker, addr, options, provided, &events).await;
            built.map_err(|e| blame_context(e, context_failure.get()))
        } else {
            // What went wrong reading the context, if anything: the daemon only sees a
            // broken upload, which alone would pass for a daemon failure and be retried.
            let context_failure = Arc::new(Mutex::new(None::<String>));
            let body = {
                let failure = context_failure.clone();
                context::stream(plan, dockerfile, stripped.into_bytes()).inspect(move |item| {
                    if let Err(e) = item {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    }
                })
            };
            let build_creds: HashMap<_, _> = build_creds
                .iter()
                .map(|(host, c)| (host.clone(), c.to_docker()))
                .collect();
            let build_creds = (!build_creds.is_empty()).then_some(build_creds);
            let built = match self.engine {
                Engine::BuildkitDaemon => {
                    buildkit::build(docker, options, build_creds, body, &events).await
                }
                Engine::Classic | Engine::Buildkitd => {
                    classic::build(docker, options, build_creds, body, &events)
                        .await
                        .map(|id| (id, Vec::new()))
                }
            };
            built.map_err(|e| {
                let failure = context_failure.lock().unwrap_or_else(|p| p.into_inner());
                blame_context(e, failure.clone())
            })
        };
        let (image_id, stages) = built?;

        for tag in &target.tags {
            docker
                .tag_image(
                    &image_id,
                    Some(TagImageOptions {
                        repo: Some(target.name()),
                        tag: Some(tag.clone()),
                    }),
                )
                .await
                .map_err(|e| Error::docker(format!("tagging {}:{tag}: {e}", target.name()), e))?;
        }

        let _ = events.send(BuildEvent::Pushing { tags: refs.clone() });
        let mut digest = None;
        for tag in &target.tags {
            let d = self
                .push(docker, &target.name(), tag, creds.as_ref(), &events)
                .await
                .map_err(|e| match e {
                    // the registry let the ping through but wants credentials to push
                    Error::InvalidSpec(m) if creds.is_none() => Error::InvalidSpec(format!(
                        "{m}; {}",
                        req.auth.missing_credentials(&target.registry)
                    )),
                    e => e,
                })?;
            if digest.as_ref().is_some_and(|prev| prev != &d) {
                warn!(
                    tag,
                    digest = d,
                    "tags of one image pushed with different digests"
                );
            }
            digest.get_or_insert(d);
        }
        let pushed = digest.ok_or_else(|| Error::Registry("no tag was pushed".into()))?;
        if let Some((host, name, tag)) = inline.and_then(inline_cache::target) {
            // the image carries its cache metadata: the cache ref is the image itself
            docker
                .tag_image(
                    &image_id,
                    Some(TagImageOptions {
                        repo: Some(name.clone()),
                        tag: Some(tag.clone()),
                    }),
                )
                .await
                .map_err(|e| Error::docker(format!("tagging the cache {name}:{tag}: {e}"), e))?;
            let cache_creds = req.auth.credentials_for(&host).await?;
            self.push(docker, &name, &tag, cache_creds.as_ref(), &events)
                .await?;
        }
        // what the daemon said must be what the registry serves
        let served = registry::manifest_digest(
            &self.http,
            &target.registry,
            &target.repository,
            &target.tags[0],
            creds.as_ref(),
        )
        .await?;
        if served != pushed {
            return Err(Error::Registry(
                format!(
                    "the daemon pushed {pushed} but the registry serves {served} for {}",
                    refs[0]
                )
                .into(),
            ));
        }
        Ok(BuildOutcome {
            image: format!("{}@{served}", target.name()),
            digest: served,
            pushed_tags: refs,
            revision: ws.revision,
            stages,
            base_images: bases.finish().await,
            source_version: ws.source_version,
            ..Default::default()
        })
    }
}

/// The Docker daemon at `docker_host`, `DOCKER_HOST` or the local socket, with an
/// agreed API version.
pub(crate) async fn connect_docker(docker_host: Option<&str>, tls: &DockerTls) -> Result<Docker> {
    let env_host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
    let host = docker_host.map(str::to_string).or(env_host);
    let docker = match &host {
        Some(h) if tls.docker_tls_verify && !h.starts_with("unix://") => tls.connect(h)?,
        Some(h) => Docker::connect_with_host(h).map_err(|e| Error::docker(e.to_string(), e))?,
        None => Docker::connect_with_defaults().map_err(|e| Error::docker(e.to_string(), e))?,
    };
    let mut docker = match docker.negotiate_version().await {
        Ok(docker) => docker,
        Err(e) => {
            return Err(match &host {
                Some(h) if tls.docker_tls_verify && !h.starts_with("unix://") => {
                    tls.request_error(h, e).await
                }
                _ => Error::docker(format!("cannot reach the daemon: {e}"), e),
            });
        }
    };
    // the default 2 minutes would cut off a large context upload
    docker.set_timeout(Duration::from_secs(24 * 3600));
    Ok(docker)
}

fn strip_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) if !userinfo.contains('/') => format!("{scheme}://{host}"),
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Registry clients (short total timeout) and the `url` source client (none: the
/// build's own bounds it, see [`UrlLimits`]; `--ca-file` applies, certs.d does not).
fn http_clients(tls: &Tls) -> Result<(Clients, reqwest::Client)> {
    let connect = Duration::from_secs(10);
    let http = tls.clients(|b| b.connect_timeout(connect).timeout(Duration::from_secs(60)))?;
    let downloads = tls.client(|b| b.connect_timeout(connect))?;
    Ok((http, downloads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_in_source_label() {
        assert_eq!(
            strip_userinfo("https://bob:pw@git.example.org/a.git"),
            "https://git.example.org/a.git"
        );
        assert_eq!(
            strip_userinfo("https://git.example.org/a.git"),
            "https://git.example.org/a.git"
        );
    }
}
