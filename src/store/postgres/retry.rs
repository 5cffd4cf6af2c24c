//! The one retry helper every PostgreSQL transaction goes through.
//!
//! Under SERIALIZABLE isolation (and on CockroachDB and YugabyteDB at any isolation) a
//! transaction may be aborted with SQLSTATE 40001 (serialization failure) or 40P01 (deadlock
//! detected); the cure is to run it again from the start. An attempt therefore must have no
//! side effect outside its transaction: it reads, plans and writes, and everything it decided
//! (ids, times) is decided again on the next attempt. Backoff is jittered so that two
//! transactions that collided do not collide again in lockstep, and bounded so that a request
//! under permanent contention fails with a 500 instead of hanging.

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
/// many connections).
fn is_unavailability(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::QUERY_CANCELED,
            SqlState::TOO_MANY_CONNECTIONS,
        ]
        .contains(code)
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
    let mut tries = 0;
    loop {
        tries += 1;
        let outcome = async {
            let tx = client.build_transaction().isolation_level(isolation).start().await?;
            let value = attempt(&tx, data).await?;
            tx.commit().await?;
            Ok::<T, TxError>(value)
        }
        .await;
        match outcome {
            Ok(value) => return Ok(value),
            Err(err) if err.is_retryable() && tries < MAX_ATTEMPTS => {
                tracing::debug!(attempt = tries, error = ?err, "transaction conflict; retrying");
                tokio::time::sleep(backoff(tries)).await;
            }
            Err(err) => {
                if err.is_retryable() {
                    tracing::warn!(attempts = tries, "transaction still conflicting after every attempt; giving up");
                }
                return Err(err.into_store_error());
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
