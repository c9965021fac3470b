//! `--staging s3`: the packed context is written to `s3://bucket/prefix/<id>.tar`
//! through the `object_store` crate, with endpoint, region and credentials from the
//! usual AWS variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, …) read by slipway only. The executor gets a presigned
//! GET URL as its `url` source, so it needs no credentials and none is in the task.
//! The object is deleted once the build ended.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use super::Packed;
use crate::{Error, Result};

/// How long a presigned URL works: a build may wait for an offer long after staging.
const PRESIGN_TTL: Duration = Duration::from_secs(12 * 3600);

/// A bucket and key prefix, with the client that writes there.
pub struct S3Stage {
    store: Arc<AmazonS3>,
    prefix: String,
    shown: String,
}

/// A written context; [`Written::remove`] deletes it.
pub struct Written {
    /// The presigned GET URL the executor downloads.
    pub url: String,
    store: Arc<AmazonS3>,
    key: ObjectPath,
}

/// `s3://bucket/prefix` → `(bucket, prefix)`; the prefix may be empty.
pub fn parse_uri(uri: &str) -> Result<(String, String)> {
    let rest = uri.strip_prefix("s3://").ok_or_else(|| {
        Error::InvalidSpec(format!(
            "--staging-uri must be s3://bucket/prefix, not '{uri}'"
        ))
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::InvalidSpec(format!(
            "--staging-uri '{uri}' names no bucket"
        )));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

fn s3_error(what: &str, e: impl std::fmt::Display) -> Error {
    // infrastructure (retried): the store may be down for a while
    Error::Mesos(format!("s3 staging: {what}: {e}"))
}

impl S3Stage {
    /// The bucket of `uri`, with everything else from the AWS environment variables.
    pub fn from_env(uri: &str) -> Result<Self> {
        let (bucket, prefix) = parse_uri(uri)?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .unwrap_or_default();
        if endpoint.starts_with("http://") {
            // an S3 server on plain HTTP (a loopback test server, say) was asked for
            builder = builder.with_allow_http(true);
        }
        let store = builder
            .build()
            .map_err(|e| Error::InvalidSpec(format!("--staging s3: {e}")))?;
        info!(uri, "staging path-source contexts in S3");
        Ok(Self {
            store: Arc::new(store),
            prefix,
            shown: uri.trim_end_matches('/').to_string(),
        })
    }

    /// Writes `packed` under the prefix and presigns a GET of it.
    pub async fn put(&self, packed: &Packed) -> Result<Written> {
        let name = format!("{}.tar", uuid::Uuid::new_v4().simple());
        let key = if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        };
        let shown = format!("{}/{}", self.shown, key.filename().unwrap_or_default());
        let mut file = tokio::fs::File::open(&packed.path).await?;
        // multipart above its buffer, one PUT below: large contexts never sit in memory
        let mut out = BufWriter::new(self.store.clone(), key.clone());
        let copied = tokio::io::copy(&mut file, &mut out).await;
        if let Err(e) = copied {
            out.abort().await.ok();
            return Err(s3_error(&format!("writing {shown}"), e));
        }
        out.shutdown()
            .await
            .map_err(|e| s3_error(&format!("writing {shown}"), e))?;
        let url = self
            .store
            .signed_url(reqwest::Method::GET, &key, PRESIGN_TTL)
            .await
            .map_err(|e| s3_error("presigning", e))?;
        info!(object = %shown, bytes = packed.size, "context staged in S3");
        Ok(Written {
            url: url.to_string(),
            store: self.store.clone(),
            key,
        })
    }
}

impl Written {
    pub async fn remove(self) {
        match self.store.delete(&self.key).await {
            Ok(()) => info!(key = %self.key, "staged context removed from S3"),
            Err(e) => warn!(key = %self.key, "removing the staged context from S3: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_uris_name_a_bucket_and_a_prefix() {
        assert_eq!(
            parse_uri("s3://b/p/q/").unwrap(),
            ("b".into(), "p/q".into())
        );
        assert_eq!(parse_uri("s3://b").unwrap(), ("b".into(), "".into()));
        for bad in ["http://b/p", "s3:///p", "b/p"] {
            assert_eq!(parse_uri(bad).unwrap_err().metric_label(), "InvalidSpec");
        }
    }
}
