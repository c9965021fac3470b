//! Where builds run. `local` is this machine's Docker daemon; the Mesos backend
//! (a later piece) runs the same runner on a cluster agent.

mod local;

use async_trait::async_trait;

pub use local::LocalBackend;

use crate::Result;
use crate::runner::{BuildOutcome, BuildRequest, Cancel, Events};

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs one build to the end; `cancel` stops it.
    async fn run(&self, req: BuildRequest, events: Events, cancel: Cancel) -> Result<BuildOutcome>;

    /// Short name for logs and status messages.
    fn name(&self) -> &'static str;
}
