//! The PostgreSQL store: the same operations as the embedded store, on a database that any
//! number of server processes may share.
//!
//! Every write is one SERIALIZABLE transaction through [`retry::transaction`]: it fetches the
//! facts the domain planner needs, calls the planner (the rules live there, once), and writes
//! the plan with one batched statement per table. Nothing is cached between requests, so
//! several nodes stay consistent through the database alone. The SQL is written for
//! CockroachDB and YugabyteDB too (see `ARCHITECTURE.md`, "Must hold").
//!
//! Everything, catalog changes included, runs on the pool's connections; only migrations and
//! the copy from an embedded store make connections of their own ([`connect`]), since they run
//! before a pool exists or without the request path's statement timeout.

pub mod catalog;
pub mod copy;
pub mod counters;
mod gauges;
pub mod history;
pub mod ledger;
pub mod migrations;
pub mod read;
pub mod retry;
pub mod tls;
pub mod write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{Client, IsolationLevel};

use super::{Policy, PostgresOptions, StoreError};
use crate::domain::change::{Contact, ContactKind, Subject};
use crate::domain::subscription::SubscriptionState;

/// The PostgreSQL store. Cloning is cheap: clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// What the inspection reads connect with (see [`PostgresStore::inspection_client`]).
    config: tokio_postgres::Config,
    connector: tls::Connector,
    /// The writers' time and how long orphaned states live.
    policy: Policy,
    /// Turns for write transactions: see [`PostgresStore::write_turn`].
    writes: tokio::sync::Semaphore,
    closed: AtomicBool,
}

impl PostgresStore {
    /// Connects to the database at `url`, applies the migrations it lacks and sets up the pool
    /// (whose connections open on first use). Writes take their time from `policy`'s clock.
    pub async fn open(url: &str, options: &PostgresOptions, policy: &Policy) -> Result<Self, StoreError> {
        let (config, connector) = connection_settings(url, options)?;
        apply_migrations(&config, &connector).await?;
        let manager = Manager::from_connect(
            config.clone(),
            connector.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        // Bounded waits, so that a request meets a 503 instead of hanging when the database
        // is gone or every connection is busy: for a free connection as long as one statement
        // may run, for a new one as long as a connection attempt.
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(options.statement_timeout.max(Duration::from_millis(1))))
            .create_timeout(Some(config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT)))
            .build()
            .map_err(|e| StoreError::Open(format!("cannot create the PostgreSQL pool: {e}")))?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                config,
                connector,
                policy: policy.clone(),
                writes: tokio::sync::Semaphore::new(options.max_concurrent_writes.max(1)),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// A pooled connection for the change stream (see `crate::stream::postgres`).
    pub(crate) async fn stream_client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.client().await
    }

    /// A pooled connection, unless the store is closed.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::ShuttingDown);
        }
        let waited = std::time::Instant::now();
        let client = self.inner.pool.get().await;
        metrics::histogram!(crate::telemetry::PG_POOL_WAIT).record(waited.elapsed());
        client.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(err) => retry::db_error(err),
            other => StoreError::Unavailable { reason: format!("no PostgreSQL connection: {other}"), source: None },
        })
    }

    /// Runs `attempt` through [`retry::run`] on a pooled connection. When the connection fails
    /// before COMMIT in a way another connection may not (lost, or to a demoted primary: see
    /// [`retry::is_connection_failure`]), the connection leaves the pool, so that nobody meets
    /// it again, and the transaction runs again on a new one, a few times: a failover moves the
    /// primary, and a new connection (the URL's `target_session_attrs=read-write`) finds it.
    /// While there is none, taking a connection fails and the request answers 503.
    async fn transaction<T, D, F>(&self, isolation: IsolationLevel, data: &D, attempt: F) -> Result<T, StoreError>
    where
        D: ?Sized + Sync,
        F: for<'c, 't> Fn(
            &'c tokio_postgres::Transaction<'t>,
            &'c D,
        ) -> retry::BoxFuture<'c, Result<T, retry::TxError>>,
    {
        let mut reconnects = 0;
        loop {
            let mut client = self.client().await?;
            match retry::run(&mut client, isolation, data, &attempt).await {
                Ok(value) => return Ok(value),
                Err(failure) if failure.reconnect => {
                    // Out of the pool: a connection to a demoted primary stays open and would
                    // fail every write that takes it.
                    drop(deadpool_postgres::Object::take(client));
                    metrics::counter!(crate::telemetry::PG_RECONNECTS).increment(1);
                    if reconnects == MAX_RECONNECTS {
                        return Err(failure.error);
                    }
                    reconnects += 1;
                    tracing::info!(
                        attempt = reconnects,
                        "the database connection failed before commit; retrying on a new one"
                    );
                    tokio::time::sleep(RECONNECT_PAUSE * reconnects).await;
                }
                Err(failure) => return Err(failure.error),
            }
        }
    }

    /// A turn to run a write transaction, waited for before taking a connection.
    ///
    /// Write transactions are SERIALIZABLE and each reads and writes about fifty rows: past
    /// PostgreSQL's predicate-lock limits their reads are tracked per index or table, so two
    /// that run at once abort one another, and the abort rate, not the machine, bounds the
    /// throughput (BENCHMARKS.md measured it falling from 16 writers at once to 32, and
    /// rollbacks per request rising from 0.10 with 2 writers to 0.68 with 8). A couple of
    /// writers per process keep the database busy while sparing most of those retries.
    async fn write_turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        self.inner.writes.acquire().await.map_err(|_| StoreError::ShuttingDown)
    }

    /// A connection of its own for the inspection reads ([`crate::store::Inspect`]), with the
    /// task that drives it: outside the pool, so that a test can read what a stopped server
    /// left in its closed store, and so that test reads never take a request's connection.
    async fn inspection_client(&self) -> Result<(Client, tokio::task::JoinHandle<()>), StoreError> {
        connect(&self.inner.config, &self.inner.connector).await
    }

    /// See [`super::Store::readiness`]: a pooled connection answers, on a primary.
    pub async fn readiness(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await.map_err(retry::db_error)?;
        if row.get::<_, bool>(0) {
            // A connection made before its server became a standby: drop it, so that the next
            // one is made to the primary.
            drop(deadpool_postgres::Object::take(client));
            return Err(StoreError::Unavailable {
                reason: "the database is a standby (in recovery), not a primary".into(),
                source: None,
            });
        }
        Ok(())
    }

    /// Stops taking work and closes the pool.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.writes.close();
        self.inner.pool.close();
    }
}

/// What every connection to the database at `url` is made with: the driver's settings (see
/// [`connection_config`]) and the connector of the URL's TLS parameters, whose
/// [`connect`](tls::Connector::connect) makes the connection. The pool, the side connections and
/// any command that connects all go through here.
pub fn connection_settings(
    url: &str,
    options: &PostgresOptions,
) -> Result<(tokio_postgres::Config, tls::Connector), StoreError> {
    let (driver_url, tls_params) = tls::split_url(url)?;
    let config = driver_config(&driver_url, options)?;
    Ok((config, tls::Connector::new(&tls_params)?))
}

/// The driver's settings of `url`, its TLS parameters taken out (they need
/// [`connection_settings`]'s connector), with the options' statement timeout.
pub fn connection_config(url: &str, options: &PostgresOptions) -> Result<tokio_postgres::Config, StoreError> {
    driver_config(&tls::split_url(url)?.0, options)
}

/// The driver's settings of a URL without TLS parameters.
fn driver_config(url: &str, options: &PostgresOptions) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e| StoreError::Open(format!("invalid PostgreSQL URL: {}", super::report(&e))))?;
    // The server-side limit of one statement, so that a stuck query frees its connection.
    let timeout_ms = options.statement_timeout.as_millis().max(1);
    config.options(format!("-c statement_timeout={timeout_ms}"));
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// Applies the pending migrations on a connection of its own.
async fn apply_migrations(config: &tokio_postgres::Config, connector: &tls::Connector) -> Result<Vec<i32>, StoreError> {
    let (mut client, driver) = connect(config, connector).await?;
    let applied = migrations::apply(&mut client).await;
    drop(client);
    let _ = driver.await;
    applied
}

/// Applies the pending migrations of the database at `url` (`consentry migrate`); returns the
/// versions applied.
pub async fn migrate(url: &str, options: &PostgresOptions) -> Result<Vec<i32>, StoreError> {
    let (config, connector) = connection_settings(url, options)?;
    apply_migrations(&config, &connector).await
}

/// Transactions run again on a new connection after their connection failed before commit
/// (see [`PostgresStore::transaction`]).
const MAX_RECONNECTS: u32 = 3;
/// The pause before the first of those, growing with each: a failover takes a moment.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// How long a connection attempt may take unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection of its own, outside the pool, made from `config` by `connector`, with the task
/// that drives it (it ends once the client is dropped). A failure says where the database was
/// looked for (never the password) and keeps the driver's error as its cause.
pub async fn connect(
    config: &tokio_postgres::Config,
    connector: &tls::Connector,
) -> Result<(Client, tokio::task::JoinHandle<()>), StoreError> {
    let (client, connection) =
        connector.connect(config).await.map_err(|source| StoreError::Connect { target: describe(config), source })?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, driver))
}

/// `host:port/database` of a config, for messages: never its password. A URL of several hosts
/// (a primary and its standbys) names them all, in order: `h1:p1,h2:p2/database`.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let hosts = config.get_hosts();
    let ports = config.get_ports();
    let host = |host: &tokio_postgres::config::Host| match host {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
    };
    // The driver's rule: one port for every host, or one per host.
    let port = |i: usize| ports.get(if ports.len() == 1 { 0 } else { i }).copied().unwrap_or(5432);
    let servers = if hosts.is_empty() {
        format!("localhost:{}", port(0))
    } else {
        hosts.iter().enumerate().map(|(i, h)| format!("{}:{}", host(h), port(i))).collect::<Vec<_>>().join(",")
    };
    format!("{servers}/{}", config.get_dbname().or(config.get_user()).unwrap_or("postgres"))
}

/// A state as stored.
fn state_code(state: SubscriptionState) -> i16 {
    i16::from(state.code())
}

/// A stored state code.
fn state_from(code: i16) -> Result<SubscriptionState, StoreError> {
    u8::try_from(code)
        .ok()
        .and_then(SubscriptionState::from_code)
        .ok_or_else(|| StoreError::Corrupt { what: "state", detail: format!("state code {code}") })
}

/// Contact kinds as `orphans.kind` and `changes.subject_kind` store them.
const EMAIL: i16 = ContactKind::Email.code() as i16;
const PHONE: i16 = ContactKind::Phone.code() as i16;
/// `changes.subject_kind` of a profile subject and of an erased one.
const SUBJECT_PROFILE: i16 = Subject::PROFILE_CODE as i16;
const SUBJECT_ERASED: i16 = Subject::ERASED_CODE as i16;

/// The stored kind of a contact.
fn contact_kind(contact: &Contact) -> i16 {
    i16::from(contact.kind().code())
}

impl PostgresStore {
    /// See [`crate::store::Store::verify_ledger`]. Runs on a connection of its own (a long walk
    /// must not hold a pooled one).
    pub async fn verify_ledger(
        &self,
        ws: Option<crate::domain::ids::WorkspaceId>,
        progress: &std::sync::atomic::AtomicU64,
    ) -> Result<crate::domain::ledger::LedgerCheck, StoreError> {
        let mut client = self.client().await?;
        ledger::verify(&mut client, ws, progress).await
    }
}
