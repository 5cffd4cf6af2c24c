//! The PostgreSQL store: the same operations as the embedded store, on a database that any
//! number of server processes may share.
//!
//! Every write is one SERIALIZABLE transaction through [`retry::transaction`]: it fetches the
//! facts the domain planner needs, calls the planner (the rules live there, once), and writes
//! the plan with one batched statement per table. Nothing is cached between requests, so
//! several nodes stay consistent through the database alone. The SQL is written for
//! CockroachDB and YugabyteDB too (see `ARCHITECTURE.md`, "Must hold").
//!
//! The seam's synchronous methods (the catalog, and the reads tests use) may be called from
//! inside a Tokio runtime, even a current-thread one, where blocking on a future panics. They
//! therefore run on a short-lived thread of their own, with its own current-thread runtime and
//! its own connection (the pool's connections are driven by tasks of the main runtime, which
//! that thread cannot use). They are rare (catalog changes) or test-only, so the connection
//! per call costs nothing that matters.

pub mod catalog;
pub mod copy;
pub mod counters;
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
use tokio_postgres::Client;

use self::retry::BoxFuture;
use super::{StoreError, StoreOptions};
use crate::domain::change::{Contact, ContactKind, Subject};
use crate::domain::subscription::SubscriptionState;

/// The PostgreSQL store. Cloning is cheap: clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// For the side connections of the synchronous methods.
    config: tokio_postgres::Config,
    connector: tls::Connector,
    orphan_retention: Duration,
    /// Turns for write transactions: see [`PostgresStore::write_turn`].
    writes: tokio::sync::Semaphore,
    closed: AtomicBool,
}

impl PostgresStore {
    /// Connects to the database at `url`, applies the migrations it lacks and sets up the pool
    /// (whose connections open on first use, on the runtime that uses them).
    pub fn open(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let (config, connector) = connection_settings(url, options)?;
        apply_migrations(&config, &connector)?;
        let manager = Manager::from_connect(
            config.clone(),
            connector.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        // Bounded waits, so that a request meets a 503 instead of hanging when the database
        // is gone or every connection is busy: for a free connection as long as one statement
        // may run, for a new one as long as a connection attempt.
        let pool = Pool::builder(manager)
            .max_size(options.pg_pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(options.pg_statement_timeout.max(Duration::from_millis(1))))
            .create_timeout(Some(config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT)))
            .build()
            .map_err(|e| StoreError::Open(format!("cannot create the PostgreSQL pool: {e}")))?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                config,
                connector,
                orphan_retention: options.orphan_retention,
                writes: tokio::sync::Semaphore::new(options.pg_max_concurrent_writes.max(1)),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// A pooled connection, unless the store is closed.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::ShuttingDown);
        }
        self.inner.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(err) => retry::db_error(&err),
            other => StoreError::Unavailable(format!("no PostgreSQL connection: {other}")),
        })
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

    /// Runs `work` on a side connection, synchronously (see the module's documentation).
    fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Client) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        blocking(&self.inner.config, &self.inner.connector, work)
    }

    /// See [`super::Store::readiness`]: a pooled connection answers, on a primary.
    pub async fn readiness(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await.map_err(|e| retry::db_error(&e))?;
        if row.get::<_, bool>(0) {
            return Err(StoreError::Unavailable("the database is a standby (in recovery), not a primary".into()));
        }
        Ok(())
    }

    /// Stops taking work and closes the pool.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.writes.close();
        self.inner.pool.close();
    }

    /// Bytes the database occupies.
    pub fn disk_space(&self) -> Result<u64, StoreError> {
        self.blocking(|client| {
            Box::pin(async move {
                let row = client
                    .query_one("SELECT pg_database_size(current_database())", &[])
                    .await
                    .map_err(|e| retry::db_error(&e))?;
                Ok(row.get::<_, i64>(0).max(0) as u64)
            })
        })
    }
}

/// What every connection to the database at `url` is made with: the driver's settings (see
/// [`connection_config`]) and the connector of the URL's TLS parameters, whose
/// [`connect`](tls::Connector::connect) makes the connection. The pool, the side connections and
/// any command that connects all go through here.
pub fn connection_settings(
    url: &str,
    options: &StoreOptions,
) -> Result<(tokio_postgres::Config, tls::Connector), StoreError> {
    let (driver_url, tls_params) = tls::split_url(url)?;
    let config = driver_config(&driver_url, options)?;
    Ok((config, tls::Connector::new(&tls_params)?))
}

/// The driver's settings of `url`, its TLS parameters taken out (they need
/// [`connection_settings`]'s connector), with the options' statement timeout.
pub fn connection_config(url: &str, options: &StoreOptions) -> Result<tokio_postgres::Config, StoreError> {
    driver_config(&tls::split_url(url)?.0, options)
}

/// The driver's settings of a URL without TLS parameters.
fn driver_config(url: &str, options: &StoreOptions) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e| StoreError::Open(format!("invalid PostgreSQL URL: {}", connect_reason(&e))))?;
    // The server-side limit of one statement, so that a stuck query frees its connection.
    let timeout_ms = options.pg_statement_timeout.as_millis().max(1);
    config.options(format!("-c statement_timeout={timeout_ms}"));
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// Applies the pending migrations; an unreachable database is reported with where it was
/// looked for (never the password) and why.
fn apply_migrations(config: &tokio_postgres::Config, connector: &tls::Connector) -> Result<Vec<i32>, StoreError> {
    let target = describe(config);
    blocking(config, connector, |client| Box::pin(migrations::apply(client))).map_err(|e| match e {
        StoreError::Open(message) if message.starts_with(CANNOT_CONNECT) => {
            StoreError::Open(format!("cannot connect to PostgreSQL at {target}: {}", &message[CANNOT_CONNECT.len()..]))
        }
        other => other,
    })
}

/// Applies the pending migrations of the database at `url` (`consentry migrate`); returns the
/// versions applied.
pub fn migrate(url: &str, options: &StoreOptions) -> Result<Vec<i32>, StoreError> {
    let (config, connector) = connection_settings(url, options)?;
    apply_migrations(&config, &connector)
}

/// How long a connection attempt may take unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How [`blocking`] begins the message of a failed connection.
const CANNOT_CONNECT: &str = "cannot connect: ";

/// Runs `work` on a new connection made from `config` by `connector`, on a thread of its own
/// with its own runtime, and waits for it.
fn blocking<T, F>(config: &tokio_postgres::Config, connector: &tls::Connector, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut Client) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
{
    let config = config.clone();
    let connector = connector.clone();
    let thread = std::thread::Builder::new()
        .name("consentry-pg-sync".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Engine(format!("cannot start a runtime: {e}")))?;
            runtime.block_on(async move {
                let (mut client, connection) = connector
                    .connect(&config)
                    .await
                    .map_err(|e| StoreError::Open(format!("{CANNOT_CONNECT}{}", connect_reason(&e))))?;
                let driver = tokio::spawn(connection);
                let result = work(&mut client).await;
                drop(client);
                let _ = driver.await;
                result
            })
        })
        .map_err(|e| StoreError::Engine(format!("cannot start a thread: {e}")))?;
    thread.join().map_err(|_| StoreError::Engine("a PostgreSQL side thread panicked".into()))?
}

/// Why a connection failed or a URL was refused, with its cause (the driver's own text says
/// only "error connecting" or "invalid connection string").
fn connect_reason(err: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    match err.source() {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}

/// `host:port/database` of a config, for messages: never its password.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().or(config.get_user()).unwrap_or("postgres"))
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
