//! Registry credentials and build secrets, read off the event loop (a Secret GET
//! may hang on a slow API server). The result comes back to the loop as a message;
//! the resource is then reconciled again and takes it, if its spec is still the one
//! the credentials were read for.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::context::Context;
use crate::Result;
use crate::registry::DockerConfig;
use crate::runner::BuildSecrets;
use crate::sources::Resource;

/// What a read found, for the spec of hash `hash`.
pub struct Fetched {
    pub key: String,
    pub hash: String,
    pub auth: Result<DockerConfig>,
    /// Read only once the registry credentials are there.
    pub secrets: Result<BuildSecrets>,
}

impl Context {
    /// The credentials read for this version of `res`, taken; None while they are
    /// being read (a read is started unless one is under way).
    pub(super) async fn credentials(&self, res: &Resource, hash: &str) -> Option<Fetched> {
        let key = res.key();
        let mut st = self.state.lock().await;
        if let Some(f) = st.fetched.remove(&key)
            && f.hash == hash
        {
            return Some(f);
        }
        if st.fetching.get(&key).is_some_and(|h| h == hash) {
            return None;
        }
        st.fetching.insert(key.clone(), hash.to_string());
        drop(st);
        let (source, tx, res) = (self.source.clone(), self.fetched.clone(), res.clone());
        let hash = hash.to_string();
        tokio::spawn(async move {
            let auth = source.auth(&res).await;
            let secrets = match &auth {
                Ok(_) => source.secrets(&res).await,
                Err(_) => Ok(BuildSecrets::default()),
            };
            let _ = tx.send(Fetched {
                key,
                hash,
                auth,
                secrets,
            });
        });
        None
    }
}

/// Keeps a read's result if it is for the spec last asked about; true when the
/// resource should be reconciled again to take it.
pub(super) async fn arrived(f: Fetched, ctx: &Arc<Context>) -> bool {
    let mut st = ctx.state.lock().await;
    if st.fetching.get(&f.key) != Some(&f.hash) {
        return false; // the spec changed meanwhile: a newer read is under way
    }
    st.fetching.remove(&f.key);
    st.fetched.insert(f.key.clone(), f);
    true
}

pub(super) type Sender = mpsc::UnboundedSender<Fetched>;
