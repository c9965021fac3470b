//! A DockerBuild as the watch reads it: of its metadata only what the watch and the
//! reconciler use, its spec and status typed, or why they cannot be. Managed fields,
//! annotations (kubectl's last-applied copy), labels and the like are skipped while
//! parsing, never held: with 100,000 objects they would be most of the controller's
//! memory and of its time to start (benches/kube_sync.rs).

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::api::{DockerBuild, DockerBuildSpec, DockerBuildStatus};

#[derive(Clone, Debug)]
pub(super) struct Watched {
    /// Name, namespace, uid, generation; resourceVersion (the watch resumes from
    /// it), finalizers and deletionTimestamp (the source acts on them).
    pub metadata: ObjectMeta,
    /// Spec and status as the types read them, or why they cannot: one object the
    /// types cannot read must not stop the watch.
    pub read: Result<Box<(DockerBuildSpec, Option<DockerBuildStatus>)>, String>,
}

impl Watched {
    /// The resource the reconciler keeps for as long as the object lives: of the
    /// metadata only what it reads (name, namespace, uid, generation).
    pub fn into_build(self) -> Result<DockerBuild, String> {
        let (spec, status) = *self.read?;
        let m = self.metadata;
        Ok(DockerBuild {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                generation: m.generation,
                ..Default::default()
            },
            spec,
            status,
        })
    }
}

/// The fields read of an object; serde skips the others without keeping them.
#[derive(Deserialize)]
struct Wire {
    metadata: Meta,
    #[serde(default)]
    spec: Option<Value>,
    #[serde(default)]
    status: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    generation: Option<i64>,
    resource_version: Option<String>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for Watched {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Wire {
            metadata: m,
            spec,
            status,
        } = Wire::deserialize(d)?;
        let read = match spec {
            None => Err("missing field `spec`".to_string()),
            Some(spec) => serde_json::from_value::<DockerBuildSpec>(spec)
                .map_err(|e| format!("spec: {e}"))
                .and_then(|spec| {
                    let status = status
                        .map(serde_json::from_value::<DockerBuildStatus>)
                        .transpose()
                        .map_err(|e| format!("status: {e}"))?;
                    Ok(Box::new((spec, status)))
                }),
        };
        Ok(Self {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                generation: m.generation,
                resource_version: m.resource_version,
                deletion_timestamp: m.deletion_timestamp,
                finalizers: m.finalizers,
                ..Default::default()
            },
            read,
        })
    }
}

impl kube::Resource for Watched {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        DockerBuild::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        DockerBuild::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        DockerBuild::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        DockerBuild::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(spec: Value, status: Value) -> Value {
        json!({
            "apiVersion": "slipway.dev/v1alpha1",
            "kind": "DockerBuild",
            "metadata": {
                "name": "app", "namespace": "team", "uid": "u-1", "generation": 3,
                "resourceVersion": "42", "finalizers": ["slipway.dev/build"],
                "labels": {"team": "a"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": spec,
            "status": status,
        })
    }

    fn spec(tag: &str) -> Value {
        json!({
            "source": {"inline": {"dockerfile": "FROM scratch\n"}},
            "output": {"registry": "r:5000", "repository": "app", "tags": [tag]},
        })
    }

    #[test]
    fn the_reconciler_gets_spec_status_and_identity_and_nothing_else() {
        let status = json!({"phase": "Succeeded", "specHash": "sha256:abc", "observedGeneration": 3,
            "history": [{"number": 1, "digest": "sha256:1"}]});
        let w: Watched = serde_json::from_value(object(spec("v2"), status.clone())).unwrap();
        assert_eq!(w.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(
            w.metadata.finalizers,
            Some(vec!["slipway.dev/build".into()])
        );
        let b = w.into_build().unwrap();
        assert_eq!(b.key(), "team/app");
        assert_eq!(b.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(b.metadata.generation, Some(3));
        // the spec as written: a changed tag is a changed hash
        let want: DockerBuildSpec = serde_json::from_value(spec("v2")).unwrap();
        assert_eq!(b.spec, want);
        assert_ne!(
            b.spec.hash(),
            serde_json::from_value::<DockerBuildSpec>(spec("v1"))
                .unwrap()
                .hash()
        );
        // the whole status: the next one is derived from it and replaces it
        let want: DockerBuildStatus = serde_json::from_value(status).unwrap();
        assert_eq!(b.status, Some(want));
        assert_eq!(b.status.as_ref().unwrap().history.len(), 1);
        let m = &b.metadata;
        assert!(m.labels.is_none() && m.annotations.is_none() && m.managed_fields.is_none());
        assert!(m.resource_version.is_none() && m.finalizers.is_none());
        assert!(m.creation_timestamp.is_none());
    }

    #[test]
    fn an_unreadable_spec_or_status_is_reported_with_the_object_still_known() {
        let bad_spec = json!({"source": {"inline": {"dockerfile": 7}}});
        let w: Watched = serde_json::from_value(object(bad_spec, Value::Null)).unwrap();
        assert_eq!(w.metadata.name.as_deref(), Some("app"));
        let e = w.into_build().unwrap_err();
        assert!(e.starts_with("spec: invalid type"), "{e}");

        let bad_status = json!({"phase": "Sleeping"});
        let w: Watched = serde_json::from_value(object(spec("v1"), bad_status)).unwrap();
        let e = w.into_build().unwrap_err();
        assert!(e.starts_with("status: unknown variant `Sleeping`"), "{e}");

        let mut o = object(spec("v1"), Value::Null);
        o.as_object_mut().unwrap().remove("spec");
        let w: Watched = serde_json::from_value(o).unwrap();
        assert_eq!(w.into_build().unwrap_err(), "missing field `spec`");
    }

    #[test]
    fn an_object_without_status_reads() {
        let mut o = object(spec("v1"), Value::Null);
        o.as_object_mut().unwrap().remove("status");
        let w: Watched = serde_json::from_value(o).unwrap();
        assert_eq!(w.into_build().unwrap().status, None);
    }
}
