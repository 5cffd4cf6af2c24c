//! What only the PostgreSQL store has: its retry helper, its migrations and its `migrate`
//! command. These tests need a database, so they run in the PostgreSQL pass of the suite
//! (`CONSENTRY_TEST_STORE=postgres`) and return at once in the embedded one.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use consentry::store::postgres::retry::{self, BoxFuture, TxError, MAX_ATTEMPTS};
use consentry::store::StoreError;
use tokio::sync::Barrier;
use tokio_postgres::{Client, IsolationLevel, NoTls, Transaction};

use crate::helpers::{test_store, TestDatabase, TestStore};

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("the test database answers");
    tokio::spawn(connection);
    client
}

/// One side of a write skew: reads both rows, then writes its own. Two of these at once,
/// each having read before the other wrote, cannot both commit under SERIALIZABLE.
struct Skew {
    row: i32,
    attempts: AtomicU32,
    /// Both first attempts meet here after their read, so that they really overlap.
    barrier: Arc<Barrier>,
}

fn skew_attempt<'c>(tx: &'c Transaction<'_>, skew: &'c Skew) -> BoxFuture<'c, Result<i64, TxError>> {
    Box::pin(async move {
        let first = skew.attempts.fetch_add(1, Ordering::SeqCst) == 0;
        let total: i64 = tx.query_one("SELECT SUM(v)::INT8 FROM skew", &[]).await?.get(0);
        if first {
            skew.barrier.wait().await;
        }
        tx.execute("UPDATE skew SET v = v + 1 WHERE k = $1", &[&skew.row]).await?;
        Ok(total)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_helper_runs_a_transaction_again_after_a_real_serialization_failure() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let database = TestDatabase::create();
    let setup = connect(&database.url).await;
    setup
        .batch_execute(
            "CREATE TABLE skew (k INT4 PRIMARY KEY, v INT4 NOT NULL); INSERT INTO skew VALUES (1, 0), (2, 0)",
        )
        .await
        .unwrap();

    let barrier = Arc::new(Barrier::new(2));
    let sides: Vec<Arc<Skew>> = [1, 2]
        .into_iter()
        .map(|row| Arc::new(Skew { row, attempts: AtomicU32::new(0), barrier: Arc::clone(&barrier) }))
        .collect();
    let mut tasks = Vec::new();
    for side in &sides {
        let side = Arc::clone(side);
        let url = database.url.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = connect(&url).await;
            retry::transaction(&mut client, IsolationLevel::Serializable, &*side, skew_attempt).await
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap().expect("both transactions commit in the end"));
    }

    let attempts: Vec<u32> = sides.iter().map(|s| s.attempts.load(Ordering::SeqCst)).collect();
    assert_eq!(attempts.iter().sum::<u32>(), 3, "exactly one side was aborted with 40001 and retried: {attempts:?}");
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1], "the retried side read the other's committed write");
    let total: i64 = setup.query_one("SELECT SUM(v)::INT8 FROM skew", &[]).await.unwrap().get(0);
    assert_eq!(total, 2, "each side's write landed once");
}

fn always_conflicting<'c>(_: &'c Transaction<'_>, attempts: &'c AtomicU32) -> BoxFuture<'c, Result<(), TxError>> {
    Box::pin(async move {
        attempts.fetch_add(1, Ordering::SeqCst);
        Err(TxError::Conflict("an injected conflict"))
    })
}

fn failing_for_good<'c>(_: &'c Transaction<'_>, attempts: &'c AtomicU32) -> BoxFuture<'c, Result<(), TxError>> {
    Box::pin(async move {
        attempts.fetch_add(1, Ordering::SeqCst);
        Err(TxError::Store(StoreError::Internal("not a conflict".into())))
    })
}

fn conflicting_twice<'c>(tx: &'c Transaction<'_>, attempts: &'c AtomicU32) -> BoxFuture<'c, Result<(), TxError>> {
    Box::pin(async move {
        // Written on every attempt: only the successful attempt's row may remain.
        tx.execute("INSERT INTO attempts (n) VALUES ($1)", &[&(attempts.load(Ordering::SeqCst) as i32)]).await?;
        if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
            return Err(TxError::Conflict("an injected conflict"));
        }
        Ok(())
    })
}

#[tokio::test]
async fn the_retry_helper_retries_injected_conflicts_up_to_its_bound_and_never_other_errors() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let database = TestDatabase::create();
    let mut client = connect(&database.url).await;
    client.batch_execute("CREATE TABLE attempts (n INT4 NOT NULL)").await.unwrap();

    let attempts = AtomicU32::new(0);
    retry::transaction(&mut client, IsolationLevel::Serializable, &attempts, conflicting_twice).await.unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let rows: Vec<i32> = client.query("SELECT n FROM attempts", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(rows, vec![2], "the failed attempts were rolled back");

    let attempts = AtomicU32::new(0);
    let outcome = retry::transaction(&mut client, IsolationLevel::Serializable, &attempts, always_conflicting).await;
    assert!(matches!(outcome, Err(StoreError::Internal(ref m)) if m.starts_with("gave up")), "{outcome:?}");
    assert_eq!(attempts.load(Ordering::SeqCst), MAX_ATTEMPTS, "bounded");

    let attempts = AtomicU32::new(0);
    let outcome = retry::transaction(&mut client, IsolationLevel::Serializable, &attempts, failing_for_good).await;
    assert!(matches!(outcome, Err(StoreError::Internal(ref m)) if m == "not a conflict"), "{outcome:?}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "an error that is not a conflict is not retried");
}

#[test]
fn migrate_applies_the_schema_once_and_then_reports_it_up_to_date() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let database = TestDatabase::create();
    let migrate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_consentry"))
            .env_remove("CONSENTRY_DATABASE_URL")
            .args(["--database", &database.url, "migrate"])
            .output()
            .expect("the binary runs")
    };
    let first = migrate();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).contains("applied migrations 1"), "{first:?}");
    let second = migrate();
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(String::from_utf8_lossy(&second.stdout).contains("up to date"), "{second:?}");
}

#[test]
fn migrate_on_the_embedded_store_says_it_needs_none() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_consentry"))
        .env_remove("CONSENTRY_DATABASE_URL")
        .arg("--database")
        .arg(dir.path())
        .arg("migrate")
        .output()
        .expect("the binary runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs no migrations"), "{output:?}");
}

#[tokio::test]
async fn the_statement_timeout_option_cancels_a_statement_that_runs_longer() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let database = TestDatabase::create();
    let options = consentry::store::PostgresOptions {
        statement_timeout: std::time::Duration::from_millis(100),
        ..consentry::store::PostgresOptions::default()
    };
    let config = consentry::store::postgres::connection_config(&database.url, &options).unwrap();
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client.query_one("SELECT pg_sleep(0.01)", &[]).await.expect("a short statement runs");
    let err = client.query_one("SELECT pg_sleep(2)", &[]).await.expect_err("a long statement is cancelled");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::QUERY_CANCELED), "{err}");
}

#[tokio::test]
async fn migration_7_keeps_the_outbox_rows_written_before_it_as_change_records() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let database = TestDatabase::create();
    let (mut client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let applied = consentry::store::postgres::migrations::apply_up_to(&mut client, 6).await.unwrap();
    assert_eq!(applied.last(), Some(&6));
    let (destination, change) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    client
        .execute(
            "INSERT INTO stream_outbox (destination_id, at, change_id) VALUES ($1, 1, $2)",
            &[&destination, &change],
        )
        .await
        .unwrap();

    let applied = consentry::store::postgres::migrations::apply(&mut client).await.unwrap();
    assert!(applied.contains(&7), "{applied:?}");
    let row = client
        .query_one("SELECT change_id, deleted_profile FROM stream_outbox WHERE destination_id = $1", &[&destination])
        .await
        .unwrap();
    assert_eq!(row.get::<_, uuid::Uuid>(0), change);
    assert_eq!(row.get::<_, Option<uuid::Uuid>>(1), None, "a row from before is a change record's");
}
