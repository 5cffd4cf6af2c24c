//! Counters in Redis, shared by every node that points at the same Redis: a workspace's budget
//! is then one budget however many nodes serve it.
//!
//! One request costs one round trip: `INCR` of the window's key and `EXPIRE` of it, pipelined
//! over the `redis` crate's connection manager (one multiplexed connection that reconnects by
//! itself). The URL is the crate's: `redis://[user][:password]@host[:port][/db]`, and
//! `rediss://` for TLS verified against the platform's CA bundle, as managed Redis services
//! require.
//!
//! If Redis cannot be reached, requests are admitted and the failure is logged (at most once a
//! minute): a consent service that refuses unsubscribes because its throttle is down would do
//! more harm than one that briefly does not throttle. A Redis that answers but refuses the
//! credentials is a configuration error, and the server refuses to start.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::OutageLog;
use crate::domain::ids::WorkspaceId;
use crate::domain::rate_limit::{Bucket, Decision, Limit};
use crate::domain::time::Timestamp;

/// How long a round trip may take before the request is admitted without counting.
const TIMEOUT: Duration = Duration::from_millis(250);
/// How long the start-up check waits for Redis before starting without it.
const STARTUP_CHECK: Duration = Duration::from_secs(2);

/// Why Redis cannot be used for the counters.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL is not one the client understands. The URL itself is not repeated: it may hold
    /// a password.
    #[error("not a redis:// or rediss:// URL ({0})")]
    Url(String),
    /// Redis answered but refused this client (wrong credentials, a TLS failure, …).
    #[error("redis at {address} refused the connection: {detail}")]
    Refused {
        /// `host:port`, without credentials.
        address: String,
        /// The reason Redis or the TLS layer gave.
        detail: String,
    },
}

/// Rate-limit counters in Redis.
pub struct RedisLimiter {
    /// `host:port`, for the log: the URL may hold a password.
    address: String,
    connection: ConnectionManager,
    outage: OutageLog,
}

impl RedisLimiter {
    /// A limiter for `url`, checked once: credentials Redis refuses are an error, while a Redis
    /// that cannot be reached yet is not (the server starts, admits requests while Redis is
    /// down, and the connection manager keeps trying).
    pub async fn connect(url: &str) -> Result<RedisLimiter, RedisError> {
        let client = redis::Client::open(url).map_err(|e| RedisError::Url(e.to_string()))?;
        let address = client.get_connection_info().addr().to_string();
        // No retries inside a request: the request is admitted after TIMEOUT anyway, and the
        // next one starts a fresh attempt; a long backoff would only delay recovery.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(STARTUP_CHECK))
            .set_response_timeout(Some(TIMEOUT));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| RedisError::Refused { address: address.clone(), detail: e.to_string() })?;
        let limiter = RedisLimiter { address, connection, outage: OutageLog::default() };
        let mut ping = limiter.connection.clone();
        let unreachable =
            match tokio::time::timeout(STARTUP_CHECK, redis::cmd("PING").query_async::<()>(&mut ping)).await {
                Ok(Ok(())) => return Ok(limiter),
                Ok(Err(err)) if !is_outage(&err) => {
                    return Err(RedisError::Refused { address: limiter.address, detail: err.to_string() })
                }
                Ok(Err(err)) => err.to_string(),
                Err(_) => format!("no answer within {STARTUP_CHECK:?}"),
            };
        tracing::warn!(address = %limiter.address, error = %unreachable,
            "redis is not reachable yet; rate limits are not enforced until it is");
        Ok(limiter)
    }

    /// See [`super::RateLimiter::acquire`]. A failure to count admits the request.
    pub async fn acquire(&self, workspace: WorkspaceId, bucket: Bucket, limit: Limit, now: Timestamp) -> Decision {
        let window = limit.window_at(now);
        let key = format!("consentry:ratelimit:{workspace}:{}:{}:{}", bucket.as_str(), window.seconds, window.start);
        // The key outlives its window by a little, so that a node whose clock runs slightly
        // behind still finds the count; after that Redis forgets it by itself.
        let ttl = (window.end() - now.as_secs()).max(1) + 5;
        match tokio::time::timeout(TIMEOUT, self.count(&key, ttl)).await {
            Ok(Ok(count)) => limit.decide(count, window),
            failed => {
                let detail = match failed {
                    Ok(Err(err)) => format!("redis at {}: {err}", self.address),
                    _ => format!("redis at {} did not answer within {TIMEOUT:?}", self.address),
                };
                self.outage.report(now, &detail);
                limit.decide(0, window)
            }
        }
    }

    /// `INCR key` and `EXPIRE key ttl` in one round trip; returns the count.
    async fn count(&self, key: &str, ttl: i64) -> redis::RedisResult<u64> {
        let mut connection = self.connection.clone();
        let (count,): (u64,) = redis::pipe()
            .cmd("INCR")
            .arg(key)
            .cmd("EXPIRE")
            .arg(key)
            .arg(ttl)
            .ignore()
            .query_async(&mut connection)
            .await?;
        Ok(count)
    }
}

/// Whether `err` says that Redis could not be reached (worth waiting out) rather than that it
/// refused this client (a configuration to fix).
fn is_outage(err: &redis::RedisError) -> bool {
    err.is_io_error() || err.is_timeout() || err.is_connection_refusal() || err.is_connection_dropped()
}
