//! The `SolveRequest` for one build: pure, so what buildkitd is asked for is tested
//! without one.

use std::collections::{BTreeMap, HashMap};

use bollard_buildkit_proto::moby::buildkit::v1::{
    CacheOptions, CacheOptionsEntry, Exporter, SolveRequest,
};

use crate::api::{CacheMode, DockerBuildSpec, ProvenanceMode, PullPolicy};

/// What a build asks buildkitd for, besides the spec.
pub(super) struct Solve<'a> {
    /// The build's id, for `Control.Status`.
    pub build_ref: &'a str,
    /// The session serving the context, credentials and secrets.
    pub session: &'a str,
    /// The Dockerfile's name in the session's `dockerfile` directory; the context is
    /// the session's `context` directory (no `context` attribute: the frontend then
    /// syncs both from the session).
    pub dockerfile: &'a str,
    pub spec: &'a DockerBuildSpec,
    pub labels: &'a BTreeMap<String, String>,
    /// Every `registry/repository:tag` to push.
    pub tag_refs: &'a [String],
}

/// The Dockerfile frontend buildkitd ships (its current syntax: heredocs and all),
/// exporting an image pushed under every tag.
pub(super) fn solve_request(s: &Solve) -> SolveRequest {
    let spec = s.spec;
    let mut attrs = HashMap::from([("filename".to_string(), s.dockerfile.to_string())]);
    for (k, v) in &spec.build_args {
        attrs.insert(format!("build-arg:{k}"), v.clone());
    }
    for (k, v) in s.labels {
        attrs.insert(format!("label:{k}"), v.clone());
    }
    if let Some(t) = &spec.target {
        attrs.insert("target".into(), t.clone());
    }
    if spec.no_cache {
        // empty: no step of any stage comes from the cache
        attrs.insert("no-cache".into(), String::new());
    }
    // the Dockerfile frontend's name for `docker build --pull`
    let resolve = match spec.pull {
        PullPolicy::Always => "pull",
        PullPolicy::IfNotPresent => "default",
    };
    attrs.insert("image-resolve-mode".into(), resolve.into());
    if !spec.platforms.is_empty() {
        attrs.insert("platform".into(), spec.platforms.join(","));
    }
    if let Some(mode) = spec.attest.as_ref().and_then(|a| a.provenance) {
        let mode = match mode {
            ProvenanceMode::Min => "min",
            ProvenanceMode::Max => "max",
        };
        attrs.insert("attest:provenance".into(), format!("mode={mode}"));
    }
    let mut cache = CacheOptions::default();
    if let Some(c) = &spec.cache {
        let mode = match c.mode {
            CacheMode::Min => "min",
            CacheMode::Max => "max",
        };
        cache.exports.push(CacheOptionsEntry {
            r#type: "registry".into(),
            attrs: HashMap::from([
                ("ref".into(), c.reference.clone()),
                ("mode".into(), mode.into()),
            ]),
        });
        let import = CacheOptionsEntry {
            r#type: "registry".into(),
            attrs: HashMap::from([("ref".into(), c.reference.clone())]),
        };
        // The frontend resolves the imports itself, from this attribute: without it
        // buildkitd fetches the cache manifest but no step ever matches it.
        attrs.insert(
            "cache-imports".into(),
            serde_json::json!([{"Type": import.r#type, "Attrs": import.attrs}]).to_string(),
        );
        cache.imports.push(import);
    }
    SolveRequest {
        r#ref: s.build_ref.into(),
        session: s.session.into(),
        frontend: "dockerfile.v0".into(),
        frontend_attrs: attrs,
        cache: Some(cache),
        exporters: vec![Exporter {
            r#type: "image".into(),
            attrs: HashMap::from([
                ("name".into(), s.tag_refs.join(",")),
                ("push".into(), "true".into()),
            ]),
        }],
        ..Default::default()
    }
}

/// The ids of the secrets the Dockerfile mounts (`RUN --mount=type=secret,id=ID`;
/// without `id`, BuildKit uses the target's file name).
pub(super) fn mounted_secrets(dockerfile: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for mount in crate::runner::directives::run_mounts(dockerfile) {
        let kv = mount_options(&mount);
        if !kv
            .get("type")
            .is_some_and(|t| t.eq_ignore_ascii_case("secret"))
        {
            continue;
        }
        let id = kv.get("id").cloned().or_else(|| {
            kv.get("target")
                .or(kv.get("dst"))
                .or(kv.get("destination"))
                .and_then(|t| t.rsplit('/').next())
                .map(str::to_string)
        });
        if let Some(id) = id.filter(|i| !ids.contains(i)) {
            ids.push(id);
        }
    }
    ids
}

/// A mount's `key=value` options (keys lower-cased, later ones win), read as BuildKit's
/// `parseMount` does: one CSV record, so a field in CSV quotes may hold a `,`
/// (`--mount='type=secret,"target=/run/a,b"'`). Unreadable CSV yields no options:
/// BuildKit refuses that Dockerfile itself, with its own message.
fn mount_options(mount: &str) -> HashMap<String, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(mount.as_bytes());
    let mut record = csv::StringRecord::new();
    if !reader.read_record(&mut record).unwrap_or(false) {
        return HashMap::new();
    }
    record
        .iter()
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> DockerBuildSpec {
        crate::yaml::from_str(&format!("source: {{path: .}}\n{yaml}")).unwrap()
    }

    fn request(spec: &DockerBuildSpec) -> SolveRequest {
        let labels = BTreeMap::from([("org.opencontainers.image.revision".into(), "abc".into())]);
        let tags = ["r:5000/a:1".to_string(), "r:5000/a:latest".to_string()];
        solve_request(&Solve {
            build_ref: "ref1",
            session: "sess1",
            dockerfile: "Dockerfile.app",
            spec,
            labels: &labels,
            tag_refs: &tags,
        })
    }

    #[test]
    fn a_plain_build_pushes_every_tag_from_the_dockerfile_frontend() {
        let r = request(&spec(
            "buildArgs: {V: '1.2'}\ntarget: runtime\nnoCache: true",
        ));
        assert_eq!(r.r#ref, "ref1");
        assert_eq!(r.session, "sess1");
        assert_eq!(r.frontend, "dockerfile.v0");
        let a = &r.frontend_attrs;
        // the context and the Dockerfile come from the session by file sync
        assert!(!a.contains_key("context"));
        assert_eq!(a["filename"], "Dockerfile.app");
        assert_eq!(a["build-arg:V"], "1.2");
        assert_eq!(a["label:org.opencontainers.image.revision"], "abc");
        assert_eq!(a["target"], "runtime");
        assert_eq!(a["no-cache"], "");
        for absent in ["platform", "attest:provenance", "cache-imports"] {
            assert!(!a.contains_key(absent), "{absent}");
        }
        assert_eq!(r.exporters.len(), 1);
        assert_eq!(r.exporters[0].r#type, "image");
        assert_eq!(r.exporters[0].attrs["name"], "r:5000/a:1,r:5000/a:latest");
        assert_eq!(r.exporters[0].attrs["push"], "true");
        let c = r.cache.unwrap();
        assert!(c.exports.is_empty() && c.imports.is_empty());
        // cached steps are allowed unless asked otherwise
        assert!(!request(&spec("")).frontend_attrs.contains_key("no-cache"));
        // base images come from buildkitd's store unless asked to pull
        assert_eq!(a["image-resolve-mode"], "default");
        let always = request(&spec("pull: Always"));
        assert_eq!(always.frontend_attrs["image-resolve-mode"], "pull");
    }

    #[test]
    fn a_registry_cache_is_exported_and_imported_by_the_frontend_too() {
        let r = request(&spec("cache: {ref: 'r:5000/a:buildcache', mode: max}"));
        let c = r.cache.unwrap();
        assert_eq!(c.exports.len(), 1);
        assert_eq!(c.exports[0].r#type, "registry");
        assert_eq!(c.exports[0].attrs["ref"], "r:5000/a:buildcache");
        assert_eq!(c.exports[0].attrs["mode"], "max");
        assert_eq!(c.imports[0].attrs["ref"], "r:5000/a:buildcache");
        let imports: serde_json::Value =
            serde_json::from_str(&r.frontend_attrs["cache-imports"]).unwrap();
        assert_eq!(
            imports,
            serde_json::json!([{"Type": "registry", "Attrs": {"ref": "r:5000/a:buildcache"}}])
        );
        let min = request(&spec("cache: {ref: 'r:5000/a:c'}")).cache.unwrap();
        assert_eq!(min.exports[0].attrs["mode"], "min");
    }

    #[test]
    fn platforms_and_provenance_are_frontend_attributes() {
        let r = request(&spec(
            "platforms: [linux/amd64, linux/386]\nattest: {provenance: max}",
        ));
        assert_eq!(r.frontend_attrs["platform"], "linux/amd64,linux/386");
        assert_eq!(r.frontend_attrs["attest:provenance"], "mode=max");
        let min = request(&spec("attest: {provenance: min}"));
        assert_eq!(min.frontend_attrs["attest:provenance"], "mode=min");
    }

    #[test]
    fn mounted_secret_ids_are_found() {
        let df = "FROM x\nRUN --mount=type=secret,id=tok sha256sum /run/secrets/tok\n\
RUN --mount=type=cache,target=/c --mount=type=secret,target=/root/.netrc make\n\
RUN --mount=type=secret,id=tok true\n";
        assert_eq!(mounted_secrets(df), ["tok", ".netrc"]);
        assert!(mounted_secrets("FROM x\nRUN echo --mount\n").is_empty());
    }

    #[test]
    fn mount_options_are_read_as_buildkit_reads_them() {
        // CSV quotes (kept through shell quotes or escaped) let a value hold a comma;
        // shell quotes let it hold a blank; keys are case-insensitive.
        let df = "FROM x\n\
RUN --mount='type=secret,\"target=/run/a,b\"' cat /run/a,b\n\
RUN --mount=type=secret,\\\"id=x,y\\\" true\n\
RUN --mount=\"type=secret,id=my tok\" true\n\
RUN --network=none \\\n  --mount=TYPE=secret,ID=cont true\n";
        assert_eq!(mounted_secrets(df), ["a,b", "x,y", "my tok", "cont"]);
        // A `--mount=` the command is given is not the step's mount: nothing to refuse.
        let df = "FROM x\nRUN docker build --mount=type=secret,id=ghost .\n";
        assert!(mounted_secrets(df).is_empty(), "{:?}", mounted_secrets(df));
    }
}
