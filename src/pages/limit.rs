//! The per-address rate limit of the public pages: they take no API key, so no workspace
//! budget applies, and a scanner or a flood from one address must not cost the writer more
//! than a person clicking would.
//!
//! The counts live in this process's memory, like the failed-authentication counts: on several
//! nodes each bounds what one address does to it, which is what protects that node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses remembered before ended windows are swept out, so that requests from many
/// addresses cannot grow the map without bound.
const SWEEP_ABOVE: usize = 10_000;

/// Requests per address per window on the public pages.
#[derive(Debug)]
pub struct PublicLimiter {
    limit: u32,
    window: Duration,
    counts: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl PublicLimiter {
    /// At most `limit` requests per `window` from one address.
    pub fn new(limit: u32, window: Duration) -> Self {
        PublicLimiter { limit, window, counts: Mutex::new(HashMap::new()) }
    }

    /// Counts a request from `ip`; `Err(seconds until its window ends)` when over the limit.
    pub fn admit(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() > SWEEP_ABOVE {
            let window = self.window;
            counts.retain(|_, (start, _)| now < *start + window);
        }
        let entry = counts.entry(ip).or_insert((now, 0));
        if now >= entry.0 + self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 > self.limit {
            let left = (entry.0 + self.window).saturating_duration_since(now);
            return Err(left.as_secs() + u64::from(left.subsec_nanos() > 0));
        }
        Ok(())
    }
}
