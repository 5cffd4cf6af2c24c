//! The rules of the per-workspace rate limits, without any counting: which bucket an endpoint
//! draws from, each bucket's default limit, what a workspace may set instead, and the fixed
//! clock-window arithmetic every counter (in memory today, shared between nodes later) must
//! agree on so that nodes sharing one budget also share one window.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::time::Timestamp;

/// The most requests a workspace may be allowed per window: far above any real need (Braze's
/// largest bucket is 250,000 an hour), low enough that a typo of a few extra zeros is caught.
pub const MAX_REQUESTS: u64 = 1_000_000_000;
/// The longest window: a day. Longer windows would mostly mean a budget spent early stays
/// spent for days, which is not what anyone setting a rate means.
pub const MAX_WINDOW_SECONDS: u32 = 86_400;

/// A budget that several endpoints share: Braze counts the two set endpoints against one limit
/// and the two GET endpoints against another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// `POST /v2/subscription/status/set` and `POST /subscription/status/set`.
    Set,
    /// `GET /subscription/status/get`, `GET /subscription/user/status`, `GET /consent/history`
    /// and `GET /consent/proof`.
    Get,
    /// `POST /users/track`.
    Track,
    /// `POST /users/delete`.
    Delete,
    /// `POST /consent/links`.
    Links,
    /// `POST /email/status` and `GET /email/unsubscribes`.
    Email,
}

impl Bucket {
    /// Every bucket, in the order the command line lists them.
    pub const ALL: [Bucket; 6] =
        [Bucket::Set, Bucket::Get, Bucket::Track, Bucket::Delete, Bucket::Links, Bucket::Email];

    /// Braze's limit for the bucket, which applies until a workspace sets its own.
    pub const fn default_limit(self) -> Limit {
        match self {
            Bucket::Set => Limit { requests: 5_000, window_seconds: 60 },
            Bucket::Get => Limit { requests: 250_000, window_seconds: 3_600 },
            Bucket::Track => Limit { requests: 3_000, window_seconds: 3 },
            Bucket::Delete => Limit { requests: 20_000, window_seconds: 60 },
            // Not a Braze endpoint: one request signs 50 links, so the set bucket's rate
            // signs a quarter of a million a minute; bulk senders mint offline anyway.
            Bucket::Links => Limit { requests: 5_000, window_seconds: 60 },
            // Braze's default limit, which its documentation applies to both email endpoints.
            Bucket::Email => Limit { requests: 250_000, window_seconds: 3_600 },
        }
    }

    /// The name the command line and messages use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Bucket::Set => "set",
            Bucket::Get => "get",
            Bucket::Track => "track",
            Bucket::Delete => "delete",
            Bucket::Links => "links",
            Bucket::Email => "email",
        }
    }

    /// Parses the command line's name of a bucket.
    pub fn parse(raw: &str) -> Option<Bucket> {
        Self::ALL.into_iter().find(|b| b.as_str() == raw)
    }

    /// The endpoints that draw from the bucket, for people reading a 429.
    pub const fn endpoints(self) -> &'static str {
        match self {
            Bucket::Set => "the subscription status set endpoints",
            Bucket::Get => "the subscription status GET endpoints",
            Bucket::Track => "/users/track",
            Bucket::Delete => "/users/delete",
            Bucket::Links => "/consent/links",
            Bucket::Email => "the /email endpoints",
        }
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many requests a bucket admits per fixed clock window. Only valid limits exist: the
/// constructor and deserialization both check the bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawLimit")]
pub struct Limit {
    requests: u64,
    window_seconds: u32,
}

/// A limit as stored, before its bounds are checked.
#[derive(Deserialize)]
struct RawLimit {
    requests: u64,
    window_seconds: u64,
}

impl TryFrom<RawLimit> for Limit {
    type Error = String;

    fn try_from(raw: RawLimit) -> Result<Limit, String> {
        Limit::new(raw.requests, raw.window_seconds)
    }
}

impl Limit {
    /// A limit of `requests` per `window_seconds`, or why not: each message names the value.
    pub fn new(requests: u64, window_seconds: u64) -> Result<Limit, String> {
        if requests == 0 {
            return Err("limit 0 would refuse every request; a bucket admits at least 1 request per window".into());
        }
        if requests > MAX_REQUESTS {
            return Err(format!("limit {requests} is more than the {MAX_REQUESTS} requests per window allowed"));
        }
        if window_seconds == 0 {
            return Err("window of 0 seconds: a window lasts at least 1 second".into());
        }
        let window_seconds =
            u32::try_from(window_seconds).ok().filter(|&w| w <= MAX_WINDOW_SECONDS).ok_or_else(|| {
                format!("window of {window_seconds} seconds is longer than a day ({MAX_WINDOW_SECONDS} seconds)")
            })?;
        Ok(Limit { requests, window_seconds })
    }

    /// Requests admitted per window.
    pub const fn requests(self) -> u64 {
        self.requests
    }

    /// The window's length in seconds.
    pub const fn window_seconds(self) -> u32 {
        self.window_seconds
    }

    /// The clock window `now` falls in: windows start at multiples of their length since the
    /// epoch, so every node computes the same window without talking to the others.
    pub fn window_at(self, now: Timestamp) -> Window {
        let length = i64::from(self.window_seconds);
        Window { start: now.as_secs().div_euclid(length) * length, seconds: self.window_seconds }
    }

    /// The verdict for the `count`-th request of the window `window` (counting this one).
    /// The count may exceed the limit (rejected requests are counted too, as a shared counter
    /// increments before it compares); `remaining` never goes below zero.
    pub fn decide(self, count: u64, window: Window) -> Decision {
        Decision {
            allowed: count <= self.requests,
            limit: self.requests,
            remaining: self.requests.saturating_sub(count),
            reset_at: window.end(),
        }
    }
}

impl fmt::Display for Limit {
    /// `5000/60s`, as `workspaces list` shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.requests, self.window_seconds)
    }
}

/// One fixed clock window of a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// Its start, in UTC epoch seconds; a multiple of `seconds`.
    pub start: i64,
    /// Its length. Part of the window's identity: after a workspace changes its window length,
    /// the new windows count from zero instead of inheriting a count from a differently sized
    /// window that happens to start at the same second.
    pub seconds: u32,
}

impl Window {
    /// Its end (the start of the next window), in UTC epoch seconds.
    pub fn end(self) -> i64 {
        self.start + i64::from(self.seconds)
    }
}

/// What a counter answered for one request: whether it may proceed, and what the
/// `x-ratelimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is within the limit.
    pub allowed: bool,
    /// The bucket's limit per window (`x-ratelimit-limit`).
    pub limit: u64,
    /// Requests left in this window after this one (`x-ratelimit-remaining`), never negative.
    pub remaining: u64,
    /// When the window ends and the budget refills, UTC epoch seconds (`x-ratelimit-reset`).
    pub reset_at: i64,
}

impl Decision {
    /// Whole seconds from `now` until the window ends, rounded up and at least 1, for
    /// `retry-after`: a client that waits that long lands in the next window.
    pub fn retry_after(&self, now: Timestamp) -> u64 {
        let micros = self.reset_at.saturating_mul(1_000_000).saturating_sub(now.0);
        u64::try_from(micros.div_euclid(1_000_000) + i64::from(micros.rem_euclid(1_000_000) != 0)).unwrap_or(0).max(1)
    }
}
