//! Failed authentications per client address: a caller guessing keys is answered 429 once it
//! has sent `limit` wrong keys within a window, until the window ends, whatever it sends then
//! (a right guess too, or the limit would not stop guessing).
//!
//! The counts live in this process's memory: on several nodes each counts what it sees, which
//! bounds guessing per node. No key is counted or logged, only the address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses remembered before expired windows are swept out, so that a scan from many
/// addresses cannot grow the map without bound.
const SWEEP_ABOVE: usize = 10_000;

/// The failures of each client address in its current window.
#[derive(Debug)]
pub struct FailedAuthentications {
    limit: u32,
    window: Duration,
    counts: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailedAuthentications {
    /// At most `limit` failures per `window` from one address.
    pub fn new(limit: u32, window: Duration) -> Self {
        FailedAuthentications { limit, window, counts: Mutex::new(HashMap::new()) }
    }

    /// `Err(seconds until the window ends)` when `ip` has used up its failures.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match counts.get(&ip) {
            Some(&(start, failures)) if failures >= self.limit && now < start + self.window => {
                let left = (start + self.window).saturating_duration_since(now);
                Err(left.as_secs() + u64::from(left.subsec_nanos() > 0))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failure from `ip`.
    pub fn record(&self, ip: IpAddr) {
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
        entry.1 += 1;
    }
}
