//! Failed authentications per client address: a caller guessing keys is answered 429 once it
//! has sent `limit` wrong keys within a window, until the window ends, whatever it sends then
//! (a right guess too, or the limit would not stop guessing).
//!
//! The counts live in this process's memory: on several nodes each counts what it sees, which
//! bounds guessing per node. No key is counted or logged, only the address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::time::{Clock, Timestamp};

/// Addresses remembered before expired windows are swept out, so that a scan from many
/// addresses cannot grow the map without bound.
const SWEEP_ABOVE: usize = 10_000;

/// The failures of each client address in its current window.
#[derive(Debug)]
pub struct FailedAuthentications {
    limit: u32,
    /// The window in microseconds, the unit of [`Timestamp`].
    window: i64,
    /// The server's clock, so that tests move past a window instead of waiting it out.
    clock: Clock,
    counts: Mutex<HashMap<IpAddr, (Timestamp, u32)>>,
}

impl FailedAuthentications {
    /// At most `limit` failures per `window` from one address, timed by `clock`.
    pub fn new(limit: u32, window: Duration, clock: Clock) -> Self {
        let window = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        FailedAuthentications { limit, window, clock, counts: Mutex::new(HashMap::new()) }
    }

    /// Whether a window that started at `start` is still running at `now`.
    fn running(&self, start: Timestamp, now: Timestamp) -> bool {
        now.0 < start.0.saturating_add(self.window)
    }

    /// `Err(seconds until the window ends)` when `ip` has used up its failures.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let now = self.clock.now();
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match counts.get(&ip) {
            Some(&(start, failures)) if failures >= self.limit && self.running(start, now) => {
                metrics::counter!(crate::telemetry::AUTH_FAILURE_LIMIT_REFUSALS).increment(1);
                let left = start.0.saturating_add(self.window) - now.0;
                // Whole seconds, rounded up: a client that waits that long is admitted again.
                Err((left as u64).div_ceil(1_000_000))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failure from `ip`.
    pub fn record(&self, ip: IpAddr) {
        metrics::counter!(crate::telemetry::AUTH_FAILURES).increment(1);
        let now = self.clock.now();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() > SWEEP_ABOVE {
            counts.retain(|_, (start, _)| self.running(*start, now));
        }
        let entry = counts.entry(ip).or_insert((now, 0));
        if !self.running(entry.0, now) {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}
