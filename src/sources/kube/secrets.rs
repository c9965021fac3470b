//! Build secrets in Kubernetes: each `spec.secrets[].secretRef` read by name (`get`,
//! never `list`) from the resource's namespace. Messages name the Secret and the key,
//! never a value.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::api::{BuildSecret, SECRET_FILE_IN_KUBERNETES};
use crate::runner::BuildSecrets;
use crate::sources::folder::secrets::check_size;
use crate::{Error, Kind, Result};

/// The values of `secrets`, by id. A Secret that does not exist (yet) is retryable
/// (`Error::Kube`: it may be applied after the build); a missing key is the user's.
pub(super) async fn read(
    client: &Client,
    ns: &str,
    secrets: &[BuildSecret],
) -> Result<BuildSecrets> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    // a Secret named by several ids is read once
    let mut fetched: BTreeMap<String, Secret> = BTreeMap::new();
    let mut out = BuildSecrets::default();
    for s in secrets {
        let id = &s.id;
        let Some(r) = &s.secret_ref else {
            return Err(Error::InvalidSpec(format!(
                "spec.secrets '{id}': {SECRET_FILE_IN_KUBERNETES}"
            )));
        };
        let what = format!("Secret {ns}/{} (spec.secrets '{id}')", r.name);
        if !fetched.contains_key(&r.name) {
            let secret = match api.get_opt(&r.name).await {
                Ok(Some(x)) => x,
                Ok(None) => return Err(Error::new(Kind::Kube, format!("{what} does not exist"))),
                Err(e) => return Err(Error::kube(format!("cannot read {what}"), e)),
            };
            fetched.insert(r.name.clone(), secret);
        }
        let data = fetched[&r.name].data.clone().unwrap_or_default();
        let Some(value) = data.get(&r.key) else {
            let keys: Vec<&str> = data.keys().map(String::as_str).collect();
            let has = if keys.is_empty() {
                "it has no keys".to_string()
            } else {
                format!("its keys: {}", keys.join(", "))
            };
            return Err(Error::InvalidSpec(format!(
                "{what} has no key '{}' ({has})",
                r.key
            )));
        };
        check_size(id, value.0.len() as u64)?;
        out.0.insert(id.clone(), value.0.clone());
    }
    Ok(out)
}
