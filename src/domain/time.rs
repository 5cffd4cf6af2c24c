//! Wall-clock time as the service stores it, and the [`Clock`] every part of the service reads
//! it from: the system's in production, a manual one that tests move.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch, UTC. Microseconds keep change records of one batch in
/// order without a separate sequence, and fit an `i64` (PostgreSQL `BIGINT`) for 290,000 years.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Whole seconds since the epoch, as HTTP headers and the command line show it.
    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// The time `span` before this one: the cut-off of a retention period.
    pub fn minus(self, span: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(micros(span)))
    }

    /// The time `span` after this one.
    pub fn plus(self, span: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(micros(span)))
    }

    /// RFC 3339 in UTC with microseconds, for people reading the command line's output.
    pub fn to_rfc3339(self) -> String {
        let secs = self.as_secs();
        let micros = self.0.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", rem / 3600, rem / 60 % 60, rem % 60)
    }
}

/// A span in whole microseconds, saturating.
fn micros(span: Duration) -> i64 {
    i64::try_from(span.as_micros()).unwrap_or(i64::MAX)
}

/// Where the service reads the time: every timestamp it stores or compares (change times,
/// catalog times, orphan expiry, rate-limit windows) comes from one of these, so that tests can
/// move time instead of sleeping through it. Cloning is cheap and clones share the time: a
/// manual clock moved through one clone has moved for all.
#[derive(Debug, Clone)]
pub struct Clock(Arc<Source>);

#[derive(Debug)]
enum Source {
    /// The operating system's wall clock.
    System,
    /// A time that changes only when told to, in microseconds since the epoch.
    Manual(AtomicI64),
}

impl Clock {
    /// The operating system's wall clock: what a server runs on.
    pub fn system() -> Clock {
        Clock(Arc::new(Source::System))
    }

    /// A clock that stands at `start` until [`advance`](Clock::advance)d or
    /// [`set`](Clock::set): for tests of expiry, windows and ordering.
    pub fn manual(start: Timestamp) -> Clock {
        Clock(Arc::new(Source::Manual(AtomicI64::new(start.0))))
    }

    /// The current time. A system clock before 1970 is a broken machine, not an input: it
    /// reads as 0.
    pub fn now(&self) -> Timestamp {
        match &*self.0 {
            Source::System => {
                let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                Timestamp(since.as_micros() as i64)
            }
            Source::Manual(micros) => Timestamp(micros.load(Ordering::Acquire)),
        }
    }

    /// Moves a manual clock `span` forward.
    ///
    /// # Panics
    /// On the system clock, which nobody may move: that is a bug in the caller.
    pub fn advance(&self, span: Duration) {
        self.manual_source().fetch_add(micros(span), Ordering::AcqRel);
    }

    /// Sets a manual clock to `at` (backwards too: the wall clock can step back).
    ///
    /// # Panics
    /// On the system clock, as [`advance`](Clock::advance).
    pub fn set(&self, at: Timestamp) {
        self.manual_source().store(at.0, Ordering::Release);
    }

    fn manual_source(&self) -> &AtomicI64 {
        match &*self.0 {
            Source::Manual(micros) => micros,
            Source::System => panic!("only a manual clock can be moved; this is the system clock"),
        }
    }
}

impl Default for Clock {
    /// The system clock.
    fn default() -> Self {
        Clock::system()
    }
}

/// A clock that never goes back, for stamping changes in the order a writer applies them: the
/// wall clock can step backwards (NTP), and a history whose times disagree with its order is
/// not trustworthy.
#[derive(Debug)]
pub struct MonotonicClock {
    clock: Clock,
    last: Timestamp,
}

impl MonotonicClock {
    /// A monotonic reading of `clock`.
    pub fn new(clock: Clock) -> MonotonicClock {
        MonotonicClock { clock, last: Timestamp::default() }
    }

    /// The current time, or the last time handed out if the clock is behind it.
    pub fn now(&mut self) -> Timestamp {
        self.last = self.last.max(self.clock.now());
        self.last
    }
}

/// Howard Hinnant's days-to-civil algorithm: a date without pulling in a calendar crate.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
