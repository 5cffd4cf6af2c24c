//! The PostgreSQL store's gauges, set when Prometheus scrapes (see [`crate::telemetry`]): the
//! pool's connections and the requests waiting for one.

use metrics::{counter, gauge};

use super::PostgresStore;
use crate::telemetry as t;

impl PostgresStore {
    /// Sets the gauges from the pool's current state.
    pub(crate) fn record_gauges(&self) {
        let status = self.inner.pool.status();
        let idle = status.available.min(status.size);
        gauge!(t::PG_POOL_CONNECTIONS, "state" => "idle").set(idle as f64);
        gauge!(t::PG_POOL_CONNECTIONS, "state" => "busy").set((status.size - idle) as f64);
        gauge!(t::PG_POOL_WAITERS).set(status.waiting as f64);
        // Created at zero, so that a scrape shows them before the first conflict.
        counter!(t::PG_TRANSACTION_RETRIES).increment(0);
        counter!(t::PG_SERIALIZATION_FAILURES).increment(0);
        counter!(t::PG_RECONNECTS).increment(0);
    }
}
