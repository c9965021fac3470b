//! `spec.cache` on the Docker daemon's BuildKit. The daemon cannot export a registry
//! cache, but it can embed min-mode cache metadata in the image itself (inline cache)
//! and import it from an image named in `cache-from`. So the built image is also
//! pushed under the cache ref, and every build names that ref in `cache-from`: a
//! daemon that never built the spec takes its unchanged steps from the registry.

use std::collections::HashMap;

use bollard::query_parameters::BuildImageOptions;

use crate::api::{CacheSpec, split_cache_ref};
use crate::registry::{Credentials, DockerConfig};

/// The cache ref as (registry, `registry/repository`, tag), once validated.
pub(super) fn target(cache: &CacheSpec) -> Option<(String, String, String)> {
    let (host, repo, tag) = split_cache_ref(&cache.reference)?;
    Some((host.into(), format!("{host}/{repo}"), tag.into()))
}

/// The build asks for inline cache metadata and imports the cache ref.
pub(super) fn options(cache: &CacheSpec, options: BuildImageOptions) -> BuildImageOptions {
    let mut args = options.buildargs.unwrap_or_default();
    args.insert("BUILDKIT_INLINE_CACHE".into(), "1".into());
    BuildImageOptions {
        buildargs: Some(args),
        cachefrom: Some(vec![cache.reference.clone()]),
        ..options
    }
}

/// Registry credentials the session offers the daemon: the target's, and the cache
/// registry's when it is another one.
pub(super) async fn credentials(
    auth: &DockerConfig,
    cache: &CacheSpec,
    creds: &mut HashMap<String, Credentials>,
) -> crate::Result<()> {
    if let Some((host, _, _)) = split_cache_ref(&cache.reference)
        && !creds.contains_key(host)
        && let Some(c) = auth.credentials_for(host).await?
    {
        creds.insert(host.to_string(), c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_embeds_cache_metadata_and_imports_the_cache_ref() {
        let cache = CacheSpec {
            reference: "r:5000/app:buildcache".into(),
            ..Default::default()
        };
        let o = options(&cache, BuildImageOptions::default());
        assert_eq!(o.buildargs.unwrap()["BUILDKIT_INLINE_CACHE"], "1");
        assert_eq!(o.cachefrom.unwrap(), ["r:5000/app:buildcache"]);
        assert_eq!(
            target(&cache).unwrap(),
            ("r:5000".into(), "r:5000/app".into(), "buildcache".into())
        );
    }
}
