//! Where builds run. `local` is this machine's Docker daemon; the Mesos backend
//! (a later piece) runs the same runner on a cluster agent.

mod local;
mod mesos;

use async_trait::async_trait;

pub use local::LocalBackend;
pub use mesos::{MesosBackend, MesosOptions};

use crate::Result;
use crate::runner::{BuildOutcome, BuildRequest, Cancel, Events};

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs one build to the end; `cancel` stops it.
    async fn run(&self, req: BuildRequest, events: Events, cancel: Cancel) -> Result<BuildOutcome>;

    /// Short name for logs and status messages.
    fn name(&self) -> &'static str;

    /// Builds wait for a remote placement after the queue starts them, so the phase
    /// stays Queued until the backend says the build runs.
    fn places_remotely(&self) -> bool {
        false
    }

    /// The final status of `key`'s build is written; a backend that holds results
    /// until then (Mesos acknowledgements) may let go of them.
    fn settled(&self, _key: &str) {}
}
