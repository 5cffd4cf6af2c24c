//! The rate-limit counters: one count per (workspace, bucket, clock window).
//!
//! Counting is "increment, then compare with the limit", which is exactly what a counter shared
//! between nodes does in one round trip (Redis `INCR` + `EXPIRE`, or PostgreSQL
//! `INSERT … ON CONFLICT DO UPDATE SET n = n + 1 RETURNING n`). So a shared backend is one more
//! variant of [`RateLimiter`] with the same [`RateLimiter::acquire`], and the rules (buckets,
//! limits, windows, what the headers say) stay in [`crate::domain::rate_limit`], written once.
//! The embedded store runs on one node, so its counters live in process memory by default;
//! nodes that share a PostgreSQL database share their counters in it ([`postgres`]) or, when
//! given one, in Redis ([`redis`]).

pub mod postgres;
pub mod redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use crate::domain::ids::WorkspaceId;
use crate::domain::rate_limit::{Bucket, Decision, Limit, Window};
use crate::domain::time::Timestamp;

/// Where the counters live.
pub enum RateLimiter {
    /// In this process: right for the embedded store, which one node serves.
    Memory(MemoryLimiter),
    /// In Redis: one budget for every node pointed at it.
    Redis(redis::RedisLimiter),
    /// In the PostgreSQL database: one budget for every node on it.
    Postgres(postgres::PostgresLimiter),
}

impl RateLimiter {
    /// Counters in process memory.
    pub fn in_memory() -> RateLimiter {
        RateLimiter::Memory(MemoryLimiter::default())
    }

    /// Counters in the Redis at `url` (`redis://` or `rediss://`, credentials allowed); fails
    /// if the URL is malformed or Redis refuses the credentials, not if it is unreachable.
    pub async fn in_redis(url: &str) -> Result<RateLimiter, redis::RedisError> {
        redis::RedisLimiter::connect(url).await.map(RateLimiter::Redis)
    }

    /// Counters in the database of a PostgreSQL store.
    pub fn in_postgres(store: crate::store::postgres::PostgresStore) -> RateLimiter {
        RateLimiter::Postgres(postgres::PostgresLimiter::new(store))
    }

    /// Counters in the database of a PostgreSQL store that wait up to `timeout` before
    /// admitting a request uncounted (the server's own wait is 250 ms): for tests that count
    /// exactly on a loaded machine.
    #[doc(hidden)]
    pub fn in_postgres_waiting(
        store: crate::store::postgres::PostgresStore,
        timeout: std::time::Duration,
    ) -> RateLimiter {
        RateLimiter::Postgres(postgres::PostgresLimiter::waiting(store, timeout))
    }

    /// Counts one request of `workspace` against `bucket`'s `limit` in the window `now` falls
    /// in, and answers whether it may proceed. A rejected request is counted too (a shared
    /// counter cannot compare before it increments without a second round trip), which only
    /// ever makes the count larger within a window that resets anyway.
    ///
    /// Infallible by design: a backend that can fail (a shared counter) decides its own policy
    /// (typically admitting the request and logging), so that callers never need one.
    pub async fn acquire(&self, workspace: WorkspaceId, bucket: Bucket, limit: Limit, now: Timestamp) -> Decision {
        match self {
            RateLimiter::Memory(memory) => memory.acquire(workspace, bucket, limit, now),
            RateLimiter::Redis(redis) => redis.acquire(workspace, bucket, limit, now).await,
            RateLimiter::Postgres(postgres) => postgres.acquire(workspace, bucket, limit, now).await,
        }
    }
}

/// Logs a shared counter's failures at most once a minute: while it is down, every request
/// fails to count, and one line a minute says so as well as thousands would.
#[derive(Debug)]
struct OutageLog {
    /// The second of the last logged failure.
    logged_at: AtomicI64,
}

impl Default for OutageLog {
    fn default() -> Self {
        OutageLog { logged_at: AtomicI64::new(i64::MIN) }
    }
}

impl OutageLog {
    /// Logs `detail` unless a failure was logged less than a minute before `now`.
    fn report(&self, now: Timestamp, detail: &str) {
        let second = now.as_secs();
        let last = self.logged_at.load(Ordering::Relaxed);
        if second.saturating_sub(last) >= 60
            && self.logged_at.compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::error!(error = %detail, "rate limits not enforced: the shared counter is unreachable");
        }
    }
}

/// Counters in a map behind one mutex: the critical section is a hash lookup and an addition,
/// far shorter than anything else a request does, so one lock does not contend at the rates
/// one node serves.
#[derive(Default)]
pub struct MemoryLimiter {
    counters: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    counts: HashMap<(WorkspaceId, Bucket, Window), u64>,
    /// The second of the last eviction of ended windows.
    swept_at: i64,
}

impl MemoryLimiter {
    /// [`RateLimiter::acquire`] for counters in memory, which never wait for anything.
    pub fn acquire(&self, workspace: WorkspaceId, bucket: Bucket, limit: Limit, now: Timestamp) -> Decision {
        let window = limit.window_at(now);
        let mut counters = self.counters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Ended windows are dropped at most once a second, so the map holds only the current
        // window of each (workspace, bucket) plus at most a second's worth of ended ones, and
        // the sweep costs nothing on the other requests of that second.
        let second = now.as_secs();
        if second != counters.swept_at {
            counters.swept_at = second;
            counters.counts.retain(|(_, _, window), _| window.end() > second);
        }
        let count = counters.counts.entry((workspace, bucket, window)).or_insert(0);
        *count = count.saturating_add(1);
        limit.decide(*count, window)
    }

    /// How many windows are counted, for tests of the eviction.
    pub fn tracked_windows(&self) -> usize {
        self.counters.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).counts.len()
    }
}
