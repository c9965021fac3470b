//! Builds run in this process share two things with every other test of the binary:
//! the Docker daemon's build cache and the process-wide count of file-sync bytes
//! (`slipway::runner::context_bytes_sent`). Two tests need them to themselves: one
//! counts the bytes a rebuild sends, one empties the daemon's build cache. Each used
//! to be a test binary of its own for that; now they take [`daemon_alone`], and every
//! build in this process takes [`daemon_shared`] (`run_on` does).
//!
//! Shared users may nest (a test that holds one may call `run_on`), so a waiting
//! exclusive user does not hold up new shared ones: it gets its turn in the first gap.
//! Call `ensure_base` before [`daemon_alone`]: it may build.

use std::sync::Mutex;

use tokio::sync::Notify;

/// Shared users now, or -1 while one has it alone.
static USERS: Mutex<isize> = Mutex::new(0);
static RELEASED: Notify = Notify::const_new();

/// Held while a test uses the daemon (shared or alone); released on drop.
#[must_use = "the daemon is only held while the guard lives"]
pub struct DaemonGuard {
    alone: bool,
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let mut users = USERS.lock().unwrap();
        *users = if self.alone { 0 } else { *users - 1 };
        RELEASED.notify_waiters();
    }
}

async fn take(alone: bool) -> DaemonGuard {
    loop {
        // registered before the check, so a release in between is not missed
        let released = RELEASED.notified();
        {
            let mut users = USERS.lock().unwrap();
            if (alone && *users == 0) || (!alone && *users >= 0) {
                *users = if alone { -1 } else { *users + 1 };
                return DaemonGuard { alone };
            }
        }
        released.await;
    }
}

/// For a build in this process: waits while a test has the daemon alone.
pub async fn daemon_shared() -> DaemonGuard {
    take(false).await
}

/// For a test that must be the only one building in this process.
pub async fn daemon_alone() -> DaemonGuard {
    take(true).await
}
