//! Counters in the PostgreSQL database the nodes share: the default for the PostgreSQL store,
//! so that a workspace's budget is one budget however many nodes serve it, with nothing more to
//! run. Redis (`--rate-limit-redis`) does the same for less: see the README for the costs.
//!
//! As with Redis, a database that cannot count a request admits it and the failure is logged
//! at most once a minute (the write that follows meets the same outage and answers 503).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::OutageLog;
use crate::domain::ids::WorkspaceId;
use crate::domain::rate_limit::{Bucket, Decision, Limit};
use crate::domain::time::Timestamp;
use crate::store::postgres::PostgresStore;

/// How long counting may take before the request is admitted without counting.
const TIMEOUT: Duration = Duration::from_millis(250);
/// How often a node deletes the counters of ended windows.
const FORGET_EVERY_SECS: i64 = 60;

/// Rate-limit counters in PostgreSQL.
pub struct PostgresLimiter {
    store: PostgresStore,
    outage: OutageLog,
    /// How long counting may take before the request is admitted uncounted.
    timeout: Duration,
    /// The second of this node's last deletion of ended windows.
    forgot_at: AtomicI64,
}

impl PostgresLimiter {
    /// Counters in the database of `store`, over its pool.
    pub fn new(store: PostgresStore) -> PostgresLimiter {
        PostgresLimiter::waiting(store, TIMEOUT)
    }

    /// Counters that wait up to `timeout` for the database before admitting uncounted.
    pub fn waiting(store: PostgresStore, timeout: Duration) -> PostgresLimiter {
        PostgresLimiter { store, outage: OutageLog::default(), timeout, forgot_at: AtomicI64::new(i64::MIN) }
    }

    /// See [`super::RateLimiter::acquire`]. A failure to count admits the request.
    pub async fn acquire(&self, workspace: WorkspaceId, bucket: Bucket, limit: Limit, now: Timestamp) -> Decision {
        let window = limit.window_at(now);
        self.forget_ended_windows(now);
        match tokio::time::timeout(self.timeout, self.store.count_request(workspace, bucket, window)).await {
            Ok(Ok(count)) => limit.decide(count, window),
            Ok(Err(err)) => {
                self.outage.report(now, &err.to_string());
                limit.decide(0, window)
            }
            Err(_) => {
                self.outage.report(now, &format!("the database did not count within {:?}", self.timeout));
                limit.decide(0, window)
            }
        }
    }

    /// Once a minute, deletes in the background the counters of windows that ended over a
    /// minute ago (a node whose clock runs a little behind may still count in them until then).
    fn forget_ended_windows(&self, now: Timestamp) {
        let second = now.as_secs();
        let last = self.forgot_at.load(Ordering::Relaxed);
        if second.saturating_sub(last) < FORGET_EVERY_SECS
            || self.forgot_at.compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.forget_windows_ended_before(second - FORGET_EVERY_SECS).await {
                tracing::warn!(error = %err, "deleting ended rate-limit windows failed; the next minute tries again");
            }
        });
    }
}
