//! Prometheus metrics, served at `/metrics` on a listener of their own (`serve
//! --metrics-listen ADDR`, off by default), so that the scrape endpoint is never reachable
//! through the public one and needs no key.
//!
//! Code everywhere records through the `metrics` facade's macros with the names below; until a
//! recorder is installed (no `--metrics-listen`), each of those is a load of an unset global
//! and nothing more. Gauges that read a state (the engine's memtables, the pool's connections)
//! are set when Prometheus scrapes, by the callback [`router`] is given, rather than by a
//! timer: they are then exactly as fresh as the scrape.
//!
//! Names follow Prometheus conventions: a `consentry_` prefix, base units in the name
//! (`_seconds`, `_bytes`), `_total` on counters. Label values come from small fixed sets (route
//! templates, [`method_label`], status codes, bucket names), never from what a client sends, so
//! a client cannot grow the number of series.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency of each HTTP request, from its head read to its answer; labels `method`, `route`
/// (the template, never the path sent) and `status`. Its `_count` is the request counter.
pub const HTTP_REQUEST_DURATION: &str = "consentry_http_request_duration_seconds";
/// HTTP requests running now.
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "consentry_http_requests_in_flight";
/// Connections open now; label `listener`: `api` (the cap is `--max-connections`) or
/// `metrics`.
pub const HTTP_CONNECTIONS_OPEN: &str = "consentry_http_connections_open";
/// Connections closed for passing a deadline; labels `listener` and `phase`: `header` (a head
/// sent too slowly) or `idle`.
pub const HTTP_CONNECTIONS_TIMED_OUT: &str = "consentry_http_connections_timed_out_total";
/// Requests that sent an unknown or revoked API key.
pub const AUTH_FAILURES: &str = "consentry_auth_failures_total";
/// Requests refused 429 because their address sent too many wrong keys.
pub const AUTH_FAILURE_LIMIT_REFUSALS: &str = "consentry_auth_failure_limit_refusals_total";
/// Requests refused 429 by a workspace's rate limit; label `bucket`.
pub const RATE_LIMIT_REFUSALS: &str = "consentry_rate_limit_refusals_total";
/// Requests answered 503 because the database could not serve them.
pub const STORE_UNAVAILABLE_ANSWERS: &str = "consentry_store_unavailable_answers_total";
/// Commits of the store (a batch of the embedded writer, a PostgreSQL transaction); label
/// `result`: `ok` or `error`.
pub const STORE_COMMITS: &str = "consentry_store_commits_total";
/// How long one commit took: on the embedded store the journal write and, with `--durability
/// sync`, its fsync; on PostgreSQL the `COMMIT` statement, whose WAL flush is the fsync.
pub const STORE_COMMIT_DURATION: &str = "consentry_store_commit_duration_seconds";
/// Write requests in each batch the embedded writer commits.
pub const STORE_BATCH_REQUESTS: &str = "consentry_store_batch_requests";
/// Write requests waiting for the embedded writer.
pub const STORE_WRITE_QUEUE_DEPTH: &str = "consentry_store_write_queue_depth";
/// Bytes in the embedded engine's memtables (active and sealed).
pub const FJALL_WRITE_BUFFER_BYTES: &str = "consentry_fjall_write_buffer_bytes";
/// Sealed memtables waiting to be flushed, over every keyspace.
pub const FJALL_SEALED_MEMTABLES: &str = "consentry_fjall_sealed_memtables";
/// Memtable flushes queued.
pub const FJALL_FLUSHES_QUEUED: &str = "consentry_fjall_flushes_queued";
/// Compactions running now.
pub const FJALL_COMPACTIONS_RUNNING: &str = "consentry_fjall_compactions_running";
/// Compactions completed since the process started.
pub const FJALL_COMPACTIONS: &str = "consentry_fjall_compactions_total";
/// Table files (SSTs) over every keyspace.
pub const FJALL_TABLES: &str = "consentry_fjall_tables";
/// Journal files on disk; many means flushes are behind.
pub const FJALL_JOURNALS: &str = "consentry_fjall_journals";
/// How long a request waited for a PostgreSQL connection from the pool.
pub const PG_POOL_WAIT: &str = "consentry_pg_pool_wait_seconds";
/// The pool's connections; label `state`: `idle` or `busy`.
pub const PG_POOL_CONNECTIONS: &str = "consentry_pg_pool_connections";
/// Requests waiting for a pooled connection now.
pub const PG_POOL_WAITERS: &str = "consentry_pg_pool_waiters";
/// PostgreSQL transactions run again after a serialization failure or a conflict.
pub const PG_TRANSACTION_RETRIES: &str = "consentry_pg_transaction_retries_total";
/// PostgreSQL connections dropped from the pool because they failed before a commit (lost,
/// or to a demoted primary), their transaction run again on a new one: failovers.
pub const PG_RECONNECTS: &str = "consentry_pg_reconnects_total";
/// SQLSTATE 40001 and 40P01 answers, retried or not.
pub const PG_SERIALIZATION_FAILURES: &str = "consentry_pg_serialization_failures_total";
/// Runs of the orphaned-state sweep; label `result`: `ok` or `error`.
pub const ORPHAN_SWEEPS: &str = "consentry_orphan_sweeps_total";
/// Orphaned identifier states the sweep deleted.
pub const ORPHAN_STATES_EXPIRED: &str = "consentry_orphan_states_expired_total";

/// Upper bounds of the latency buckets, in seconds: a fsync on a fast disk is under a
/// millisecond, a request queued behind a slow database several seconds.
const SECONDS_BUCKETS: [f64; 15] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Upper bounds of the batch-size buckets: powers of two up to `--max-batch`'s ceiling.
const BATCH_BUCKETS: [f64; 13] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0];

/// How often histogram samples are folded into their buckets when nobody scrapes: they are
/// kept one by one until then.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder.
#[derive(Clone)]
pub struct Exporter {
    handle: PrometheusHandle,
}

impl Exporter {
    /// Installs the Prometheus recorder as the process's metrics recorder, the first time;
    /// later calls (several servers in one test process) share it.
    pub fn install() -> Exporter {
        static INSTALLED: OnceLock<Exporter> = OnceLock::new();
        INSTALLED
            .get_or_init(|| {
                let recorder = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                    .and_then(|b| b.set_buckets_for_metric(Matcher::Full(STORE_BATCH_REQUESTS.into()), &BATCH_BUCKETS))
                    .expect("the bucket lists are not empty")
                    .build_recorder();
                let handle = recorder.handle();
                // Nothing else installs a recorder; if something ever did, its metrics win
                // and ours stay empty, which the scrape shows.
                if metrics::set_global_recorder(recorder).is_err() {
                    tracing::warn!("another metrics recorder is installed; /metrics will be empty");
                }
                describe();
                start_at_zero();
                let upkeep = handle.clone();
                std::thread::Builder::new()
                    .name("consentry-metrics".into())
                    .spawn(move || loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    })
                    .expect("a thread for the metrics upkeep starts");
                Exporter { handle }
            })
            .clone()
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// The router of the metrics listener: `GET /metrics`, after `collect` has set the gauges
/// read at scrape time.
pub fn router(exporter: Exporter, collect: Arc<dyn Fn() + Send + Sync>) -> Router {
    let scrape = move || {
        let (exporter, collect) = (exporter.clone(), Arc::clone(&collect));
        async move {
            collect();
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], exporter.render())
        }
    };
    Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "only /metrics is served here\n").into_response() })
}

/// The `method` label: one of HTTP's standard methods, else `other`, so that a client sending
/// made-up methods cannot create series.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Counts one up in a gauge for as long as it lives (a request in flight, an open connection),
/// however the future holding it ends.
pub struct GaugeGuard(&'static str);

impl GaugeGuard {
    /// Increments `gauge` until the guard is dropped.
    pub fn new(gauge: &'static str) -> GaugeGuard {
        metrics::gauge!(gauge).increment(1.0);
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// Records one store commit: its duration, whether it succeeded, and (embedded writer) how
/// many write requests its batch held.
pub fn commit(elapsed: Duration, ok: bool, batch: Option<usize>) {
    metrics::counter!(STORE_COMMITS, "result" => if ok { "ok" } else { "error" }).increment(1);
    metrics::histogram!(STORE_COMMIT_DURATION).record(elapsed);
    if let Some(requests) = batch {
        metrics::histogram!(STORE_BATCH_REQUESTS).record(requests as f64);
    }
}

/// Creates the counters that may stay at zero for a long time, so that they are in every
/// scrape from the start: an absent series cannot be told from a broken exporter, and `rate()`
/// needs the zero. (The PostgreSQL ones are created by that store's gauges.)
fn start_at_zero() {
    for name in [AUTH_FAILURES, AUTH_FAILURE_LIMIT_REFUSALS, STORE_UNAVAILABLE_ANSWERS, ORPHAN_STATES_EXPIRED] {
        metrics::counter!(name).increment(0);
    }
    for bucket in crate::domain::rate_limit::Bucket::ALL {
        metrics::counter!(RATE_LIMIT_REFUSALS, "bucket" => bucket.as_str()).increment(0);
    }
    for result in ["ok", "error"] {
        metrics::counter!(STORE_COMMITS, "result" => result).increment(0);
        metrics::counter!(ORPHAN_SWEEPS, "result" => result).increment(0);
    }
    for phase in ["header", "idle"] {
        metrics::counter!(HTTP_CONNECTIONS_TIMED_OUT, "listener" => "api", "phase" => phase).increment(0);
    }
    metrics::gauge!(HTTP_REQUESTS_IN_FLIGHT).increment(0.0);
}

/// The HELP and unit of every metric, shown in the exposition.
fn describe() {
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP requests by method, route template and status, and their latency"
    );
    describe_gauge!(HTTP_REQUESTS_IN_FLIGHT, "HTTP requests running now");
    describe_gauge!(HTTP_CONNECTIONS_OPEN, "Client connections open now");
    describe_counter!(
        HTTP_CONNECTIONS_TIMED_OUT,
        "Connections closed for sending a head too slowly (header) or staying idle too long (idle)"
    );
    describe_counter!(AUTH_FAILURES, "Requests with an unknown or revoked API key");
    describe_counter!(
        AUTH_FAILURE_LIMIT_REFUSALS,
        "Requests refused because their address sent too many wrong API keys"
    );
    describe_counter!(RATE_LIMIT_REFUSALS, "Requests refused by a workspace's rate limit, by bucket");
    describe_counter!(STORE_UNAVAILABLE_ANSWERS, "Requests answered 503 because the database could not serve them");
    describe_counter!(STORE_COMMITS, "Store commits (embedded writer batches, PostgreSQL transactions) by result");
    describe_histogram!(STORE_COMMIT_DURATION, Unit::Seconds, "Duration of one store commit, its fsync included");
    describe_histogram!(STORE_BATCH_REQUESTS, "Write requests per embedded writer batch");
    describe_gauge!(STORE_WRITE_QUEUE_DEPTH, "Write requests waiting for the embedded writer");
    describe_gauge!(FJALL_WRITE_BUFFER_BYTES, Unit::Bytes, "Bytes in the embedded engine's memtables");
    describe_gauge!(FJALL_SEALED_MEMTABLES, "Sealed memtables waiting to be flushed");
    describe_gauge!(FJALL_FLUSHES_QUEUED, "Memtable flushes queued");
    describe_gauge!(FJALL_COMPACTIONS_RUNNING, "Compactions running now");
    describe_counter!(FJALL_COMPACTIONS, "Compactions completed since start");
    describe_gauge!(FJALL_TABLES, "Table files of the embedded engine");
    describe_gauge!(FJALL_JOURNALS, "Journal files of the embedded engine");
    describe_histogram!(PG_POOL_WAIT, Unit::Seconds, "Wait for a PostgreSQL connection from the pool");
    describe_gauge!(PG_POOL_CONNECTIONS, "PostgreSQL pool connections by state");
    describe_gauge!(PG_POOL_WAITERS, "Requests waiting for a PostgreSQL connection");
    describe_counter!(
        PG_TRANSACTION_RETRIES,
        "PostgreSQL transactions run again after a serialization failure or conflict"
    );
    describe_counter!(
        PG_RECONNECTS,
        "PostgreSQL connections dropped after failing before a commit (lost, or to a demoted primary)"
    );
    describe_counter!(
        PG_SERIALIZATION_FAILURES,
        "PostgreSQL serialization failures and deadlocks (SQLSTATE 40001, 40P01)"
    );
    describe_counter!(ORPHAN_SWEEPS, "Orphaned-state sweeps by result");
    describe_counter!(ORPHAN_STATES_EXPIRED, "Orphaned identifier states deleted by the sweep");
}
