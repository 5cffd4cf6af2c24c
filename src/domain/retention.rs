//! How long orphaned identifier state lives: the rule every write, read and sweep applies, here
//! once.
//!
//! An orphaned state (an email or phone that no profile carries, with a state set on it)
//! counts for the retention period after its last change; after that it is absent, whether or
//! not the sweep has deleted it yet.

use std::time::Duration;

use super::time::Timestamp;

/// The retention period of orphaned identifier state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(Duration);

impl Retention {
    /// 30 days, as Braze keeps them.
    pub const DEFAULT: Retention = Retention(Duration::from_secs(30 * 24 * 3600));

    /// A retention period of `period`.
    pub const fn new(period: Duration) -> Retention {
        Retention(period)
    }

    /// The period.
    pub fn period(self) -> Duration {
        self.0
    }

    /// The oldest last change that is still live at `now`: a state changed at or after it
    /// counts, one changed before it has expired.
    pub fn cutoff(self, now: Timestamp) -> Timestamp {
        now.minus(self.0)
    }

    /// Whether a state last changed at `updated_at` still counts at `now`.
    pub fn is_live(self, updated_at: Timestamp, now: Timestamp) -> bool {
        updated_at >= self.cutoff(now)
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention::DEFAULT
    }
}
