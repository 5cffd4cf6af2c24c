//! The one retry helper every PostgreSQL transaction goes through.
//!
//! Under SERIALIZABLE isolation (and on CockroachDB and YugabyteDB at any isolation) a
//! transaction may be aborted with SQLSTATE 40001 (serialization failure) or 40P01 (deadlock
//! detected); the cure is to run it again from the start. An attempt therefore must have no
//! side effect outside its transaction: it reads, plans and writes, and everything it decided
//! (ids, times) is decided again on the next attempt. Backoff is jittered so that two
//! transactions that collided do not collide again in lockstep, and bounded so that a request
//! under permanent contention fails with a 500 instead of hanging.
//!
//! A failover is the other failure worth a second attempt, on another connection: the
//! connection was lost, or it is to a server that no longer takes writes (a demoted primary:
//! SQLSTATE 25006). [`run`] says when a transaction failed so before its COMMIT was sent, hence
//! certainly did not commit; `PostgresStore::transaction` then drops the connection from the
//! pool and runs the transaction again on a new one, which the URL's
//! `target_session_attrs=read-write` makes on the current primary. A connection lost during
//! COMMIT is never retried: the commit may have happened, and only the client, told 503, may
//! decide to send the request again.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, IsolationLevel, Transaction};

use crate::store::StoreError;

/// A boxed, sendable future borrowing for `'a`: what an attempt returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Attempts made before giving up on a transaction that keeps failing to serialize.
pub const MAX_ATTEMPTS: u32 = 40;
/// Backoff before the second attempt; it doubles on each further attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(1);
/// The longest backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Why one attempt failed.
#[derive(Debug)]
pub enum TxError {
    /// The database refused a statement (retried if it is a serialization failure).
    Db(tokio_postgres::Error),
    /// Another transaction committed a row this attempt expected to insert (two requests
    /// creating the same external id): the next attempt reads the winner's row.
    Conflict(&'static str),
    /// Anything else: not retried.
    Store(StoreError),
}

impl From<tokio_postgres::Error> for TxError {
    fn from(err: tokio_postgres::Error) -> Self {
        TxError::Db(err)
    }
}

impl From<StoreError> for TxError {
    fn from(err: StoreError) -> Self {
        TxError::Store(err)
    }
}

impl TxError {
    /// Whether running the transaction again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            TxError::Db(err) => is_serialization_failure(err),
            TxError::Conflict(_) => true,
            TxError::Store(_) => false,
        }
    }

    /// The store error a failed transaction answers with.
    pub fn into_store_error(self) -> StoreError {
        match self {
            TxError::Db(err) => db_error(err),
            TxError::Conflict(what) => StoreError::Internal(format!("gave up after repeated conflicts on {what}")),
            TxError::Store(err) => err,
        }
    }
}

/// Whether `err` is SQLSTATE 40001 or 40P01.
pub fn is_serialization_failure(err: &tokio_postgres::Error) -> bool {
    matches!(err.code(), Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED)
}

/// A driver error as a store error, keeping it as the cause (the driver never puts the
/// connection string in its errors).
///
/// A lost connection, a server shutting down or starting up, and a statement cut by the
/// statement timeout are [`StoreError::Unavailable`]: the database, not the request, is at
/// fault, and the same request may succeed in a moment.
pub fn db_error(err: tokio_postgres::Error) -> StoreError {
    let reason = match err.as_db_error() {
        Some(db) if is_unavailability(db.code()) => format!("PostgreSQL error {}", db.code().code()),
        Some(_) => return StoreError::Postgres(err),
        // No server error: the socket failed or the connection was closed.
        None => "PostgreSQL connection lost".to_string(),
    };
    StoreError::Unavailable { reason, source: Some(err) }
}

/// Whether a server error says the database cannot serve right now (class 08, connection
/// exception; 57P01–57P03, shut down or starting; 57014, the statement timeout; 53300, too
/// many connections; 25006, a server that takes no writes, as a standby or a demoted primary).
fn is_unavailability(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::QUERY_CANCELED,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ]
        .contains(code)
}

/// Whether `err` is SQLSTATE 25006: the server takes no writes (a standby, or a demoted primary),
/// so the statement changed nothing.
pub fn is_read_only(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
}

/// Whether `err` says that this connection, not the database, can no longer serve writes: it
/// is lost (no server error, or class 08), its server is shutting down or restarting
/// (57P01–57P03), or its server takes no writes (25006, a demoted primary). Another connection,
/// to the current primary, may succeed.
pub fn is_connection_failure(err: &tokio_postgres::Error) -> bool {
    match err.as_db_error() {
        Some(db) => {
            let code = db.code();
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::READ_ONLY_SQL_TRANSACTION,
                ]
                .contains(code)
        }
        None => err.is_closed() || std::error::Error::source(err).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// Runs `attempt` in a transaction at `isolation` on `client` and commits it, again from the
/// start (after a jittered backoff) whenever the attempt or the commit fails with a retryable
/// error, at most [`MAX_ATTEMPTS`] times. `data` is what the attempt works on; it is passed
/// rather than captured so that the attempt can be a plain function borrowing it.
pub async fn transaction<T, D, F>(
    client: &mut Client,
    isolation: IsolationLevel,
    data: &D,
    attempt: F,
) -> Result<T, StoreError>
where
    D: ?Sized + Sync,
    F: for<'c, 't> Fn(&'c Transaction<'t>, &'c D) -> BoxFuture<'c, Result<T, TxError>>,
{
    run(client, isolation, data, attempt).await.map_err(|failure| failure.error)
}

/// A transaction that [`run`] gave up on.
#[derive(Debug)]
pub struct Failure {
    /// What the request answers with.
    pub error: StoreError,
    /// Whether the connection failed (see [`is_connection_failure`]) before COMMIT was sent:
    /// nothing was committed, and another connection may succeed.
    pub reconnect: bool,
}

/// [`transaction`], saying in its failure whether another connection may succeed.
pub async fn run<T, D, F>(client: &mut Client, isolation: IsolationLevel, data: &D, attempt: F) -> Result<T, Failure>
where
    D: ?Sized + Sync,
    F: for<'c, 't> Fn(&'c Transaction<'t>, &'c D) -> BoxFuture<'c, Result<T, TxError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        // Whether COMMIT was sent: from then on a lost connection leaves the outcome unknown.
        let mut committing = false;
        let outcome = async {
            let tx = client.build_transaction().isolation_level(isolation).start().await?;
            let value = attempt(&tx, data).await?;
            committing = true;
            let commit_started = std::time::Instant::now();
            let committed = tx.commit().await;
            crate::telemetry::commit(commit_started.elapsed(), committed.is_ok(), None);
            committed?;
            Ok::<T, TxError>(value)
        }
        .await;
        if let Err(TxError::Db(err)) = &outcome {
            if is_serialization_failure(err) {
                metrics::counter!(crate::telemetry::PG_SERIALIZATION_FAILURES).increment(1);
            }
        }
        match outcome {
            Ok(value) => return Ok(value),
            Err(err) if err.is_retryable() && tries < MAX_ATTEMPTS => {
                tracing::debug!(attempt = tries, error = ?err, "transaction conflict; retrying");
                metrics::counter!(crate::telemetry::PG_TRANSACTION_RETRIES).increment(1);
                tokio::time::sleep(backoff(tries)).await;
            }
            Err(err) => {
                if err.is_retryable() {
                    tracing::warn!(attempts = tries, "transaction still conflicting after every attempt; giving up");
                }
                let reconnect = !committing && matches!(&err, TxError::Db(db) if is_connection_failure(db));
                return Err(Failure { error: err.into_store_error(), reconnect });
            }
        }
    }
}

/// The pause after failed attempt number `tries`: exponential, capped, with full jitter over
/// its upper half. The randomness comes from a v4 UUID, which the crate already draws.
fn backoff(tries: u32) -> Duration {
    let ceiling = FIRST_BACKOFF.saturating_mul(1 << tries.min(16)).min(MAX_BACKOFF);
    let random = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().expect("8 bytes"));
    let half = ceiling / 2;
    half + Duration::from_micros(random % (half.as_micros() as u64).max(1))
}
