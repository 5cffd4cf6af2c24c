//! Counters in Redis, shared by every node that points at the same Redis: a workspace's budget
//! is then one budget however many nodes serve it.
//!
//! One request costs one round trip: `INCR` of the window's key and `EXPIRE` of it, pipelined.
//! Only those two commands are needed, so this speaks RESP2 over a plain TCP stream instead of
//! pulling in a Redis client crate and its dependency tree.
//!
//! If Redis cannot be reached, requests are admitted and the failure is logged (at most once a
//! minute): a consent service that refuses unsubscribes because its throttle is down would do
//! more harm than one that briefly does not throttle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::OutageLog;
use crate::domain::ids::WorkspaceId;
use crate::domain::rate_limit::{Bucket, Decision, Limit};
use crate::domain::time::Timestamp;

/// Connections kept open: a request holds one for a single round trip.
const CONNECTIONS: usize = 4;
/// How long a round trip may take before the request is admitted without counting.
const TIMEOUT: Duration = Duration::from_millis(250);

/// Why Redis could not count a request.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL is not `redis://host:port`.
    #[error("{0}")]
    Url(String),
    /// Connecting, writing or reading failed.
    #[error("redis at {address}: {detail}")]
    Io {
        /// `host:port`.
        address: String,
        /// What failed.
        detail: String,
    },
    /// Redis answered with an error or something unexpected.
    #[error("redis at {address} answered {reply:?}")]
    Reply {
        /// `host:port`.
        address: String,
        /// The first line of the answer.
        reply: String,
    },
}

/// Rate-limit counters in Redis.
pub struct RedisLimiter {
    address: String,
    connections: Vec<Mutex<Option<BufReader<TcpStream>>>>,
    next: AtomicUsize,
    outage: OutageLog,
}

impl RedisLimiter {
    /// A limiter for `redis://host:port` (a database number or credentials are not supported).
    /// Connections are opened on first use, so a server starts even while Redis is down.
    pub fn new(url: &str) -> Result<RedisLimiter, RedisError> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| RedisError::Url(format!("{url:?} is not a redis:// URL")))?
            .trim_end_matches('/');
        if rest.is_empty() || rest.contains(['@', '/', '?']) {
            return Err(RedisError::Url(format!(
                "{url:?}: only redis://host:port is supported (no credentials, database or options)"
            )));
        }
        let address = if rest.contains(':') { rest.to_string() } else { format!("{rest}:6379") };
        Ok(RedisLimiter {
            address,
            connections: (0..CONNECTIONS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            outage: OutageLog::default(),
        })
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
                    Ok(Err(err)) => err.to_string(),
                    _ => format!("redis at {} did not answer within {TIMEOUT:?}", self.address),
                };
                self.outage.report(now, &detail);
                limit.decide(0, window)
            }
        }
    }

    /// `INCR key` and `EXPIRE key ttl` in one round trip; returns the count.
    async fn count(&self, key: &str, ttl: i64) -> Result<u64, RedisError> {
        let slot = &self.connections[self.next.fetch_add(1, Ordering::Relaxed) % CONNECTIONS];
        let mut guard = slot.lock().await;
        let io = |e: std::io::Error| RedisError::Io { address: self.address.clone(), detail: e.to_string() };
        if guard.is_none() {
            let stream = TcpStream::connect(&self.address).await.map_err(io)?;
            stream.set_nodelay(true).map_err(io)?;
            *guard = Some(BufReader::new(stream));
        }
        let connection = guard.as_mut().expect("connected above");
        let result = self.round_trip(connection, key, ttl).await;
        if result.is_err() {
            // A connection that failed mid-exchange may hold half an answer: never reuse it.
            *guard = None;
        }
        result
    }

    async fn round_trip(&self, connection: &mut BufReader<TcpStream>, key: &str, ttl: i64) -> Result<u64, RedisError> {
        let io = |e: std::io::Error| RedisError::Io { address: self.address.clone(), detail: e.to_string() };
        let mut request = Vec::with_capacity(128);
        command(&mut request, &["INCR", key]);
        command(&mut request, &["EXPIRE", key, &ttl.to_string()]);
        connection.get_mut().write_all(&request).await.map_err(io)?;
        let count = self.integer_reply(connection).await?;
        self.integer_reply(connection).await?;
        u64::try_from(count).map_err(|_| RedisError::Reply { address: self.address.clone(), reply: count.to_string() })
    }

    /// Reads one `:<integer>\r\n` reply.
    async fn integer_reply(&self, connection: &mut BufReader<TcpStream>) -> Result<i64, RedisError> {
        let mut line = String::new();
        let read = connection
            .read_line(&mut line)
            .await
            .map_err(|e| RedisError::Io { address: self.address.clone(), detail: e.to_string() })?;
        if read == 0 {
            return Err(RedisError::Io { address: self.address.clone(), detail: "connection closed".into() });
        }
        let line = line.trim_end();
        line.strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| RedisError::Reply { address: self.address.clone(), reply: line.chars().take(200).collect() })
    }
}

/// Appends one RESP2 command (an array of bulk strings).
fn command(out: &mut Vec<u8>, parts: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}
