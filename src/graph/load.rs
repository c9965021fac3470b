//! Where the graph's members come from: a watch folder (read with the folder
//! source's own parser) or a cluster (`Api<DockerBuild>`), and what each one's
//! Dockerfile says (read the way the controller orders builds).

use std::path::Path;

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use tracing::warn;

use super::Member;
use crate::api::DockerBuild;
use crate::reconciler::images_of;
use crate::runner;
use crate::sources::Resource;
use crate::sources::folder::{Doc, FolderSource, read_docs};
use crate::{Error, Result};

/// What `res` pushes and stands on. Its `FROM` lines count where its Dockerfile can
/// be read here (inline, or a `path` in a folder); otherwise its status does.
pub fn member(res: &Resource) -> Member {
    let spec = &res.build.spec;
    let images = images_of(res);
    let local = spec.source.inline.is_some()
        || (spec.source.path.is_some()
            && res.base_dir.is_some()
            && runner::local_dockerfile(spec, res.base_dir.as_deref()).is_some());
    Member {
        key: res.key(),
        pushes: images.pushes,
        from: local.then_some(images.needs),
        status: res.build.status.clone(),
    }
}

/// Every DockerBuild in the YAML files under `dir`, as `slipway watch DIR` reads
/// them. Documents that cannot be read are left out with a warning.
pub fn from_folder(dir: &Path) -> Result<Vec<Member>> {
    let source = FolderSource::new(dir);
    if !source.root().is_dir() {
        return Err(Error::Source {
            path: dir.display().to_string(),
            message: "not a directory".into(),
        });
    }
    let mut out = Vec::new();
    for path in source.yaml_files() {
        let origin = path
            .strip_prefix(source.root())
            .unwrap_or(&path)
            .display()
            .to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                warn!(file = %origin, "cannot read the file: {e}; not drawn");
                continue;
            }
        };
        for (doc, warnings) in read_docs(&text, &origin) {
            match doc {
                Doc::Build(build) => out.push(member(&Resource {
                    build: *build,
                    origin: origin.clone(),
                    base_dir: path.parent().map(Path::to_path_buf),
                    warnings,
                })),
                Doc::Invalid { message, .. } => warn!("{message}; not drawn"),
                Doc::Other { .. } => {}
            }
        }
    }
    Ok(out)
}

/// Every DockerBuild of `namespace` (all namespaces when `None`), with the default
/// kubeconfig (KUBECONFIG, ~/.kube/config or in-cluster).
pub async fn from_kube(namespace: Option<&str>) -> Result<Vec<Member>> {
    let client = crate::sources::kube::default_client().await?;
    let api: Api<DockerBuild> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("listing DockerBuilds", e))?;
    Ok(list
        .items
        .into_iter()
        .map(|build| {
            member(&Resource {
                origin: build.uid().unwrap_or_default(),
                build,
                // a `path` means nothing in a cluster: no Dockerfile is read from here
                base_dir: None,
                warnings: Vec::new(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn a_folder_reads_path_and_inline_dockerfiles_and_skips_broken_documents() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        write(d, "base/Dockerfile", "FROM debian:12\nREPOSITORY ex/base\n");
        write(
            d,
            "builds.yaml",
            "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\n\
             metadata: {name: base, namespace: ex}\n\
             spec:\n  source: {path: base}\n  output: {registry: 'r:5000'}\n\
             ---\n\
             apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\n\
             metadata: {name: leaf}\n\
             spec:\n  source: {inline: {dockerfile: \"ARG B=r:5000/ex/base\\nFROM $B\\n\"}}\n  \
             output: {registry: 'r:5000', repository: ex/leaf, tags: ['1']}\n\
             ---\n\
             apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\n\
             metadata: {name: remote}\n\
             spec:\n  source: {git: {url: 'https://example.org/x.git'}}\n  \
             output: {registry: 'r:5000', repository: ex/remote}\n\
             ---\n\
             kind: DockerBuild\nmetadata: {name: broken\n",
        );
        let members = from_folder(d).unwrap();
        let keys: Vec<&str> = members.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["ex/base", "default/leaf", "default/remote"]);
        // the REPOSITORY directive counts, as it does for the build
        assert_eq!(members[0].pushes, ["r:5000/ex/base:latest"]);
        assert_eq!(
            members[0].from.as_deref(),
            Some(&["debian:12".to_string()][..])
        );
        // ARG defaults are substituted in FROM, as Docker does
        assert_eq!(
            members[1].from.as_deref(),
            Some(&["r:5000/ex/base".to_string()][..])
        );
        assert_eq!(
            members[2].from, None,
            "a git source's Dockerfile is not here"
        );
        let g = crate::graph::build(&members);
        let e: Vec<(&str, &str)> = g
            .edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str()))
            .collect();
        assert_eq!(e, [("debian:12", "ex/base"), ("ex/base", "default/leaf")]);
    }

    #[test]
    fn a_missing_folder_is_an_error() {
        let err = from_folder(Path::new("/nonexistent/slipway-graph")).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
