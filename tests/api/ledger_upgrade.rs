//! The PostgreSQL upgrade to the ledger: a database at the previous release's schema
//! (migrations 1 to 3), holding records written the way that release wrote them, opened by
//! the current store. The embedded counterpart is the fixture test in `ledger_write`.
//!
//! Runs on PostgreSQL whatever `CONSENTRY_TEST_STORE` says (the schema under test is
//! PostgreSQL's); PostgreSQL on 127.0.0.1:5432 is part of the machine, so an unreachable one
//! fails the test.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use consentry::domain::change::{Source, Subject};
use consentry::domain::ledger::ChainHash;
use consentry::domain::subscription::{Channel, SubscriptionState::*};
use consentry::store::{DatabaseLocation, Store};
use serde_json::Value;
use uuid::Uuid;

use crate::consent_history::all_pages;
use crate::helpers::*;

/// Opens a client on `url`, its connection driven by a task of the test's runtime.
async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("PostgreSQL is up");
    tokio::spawn(connection);
    client
}

/// One record as the previous release inserted it: no source, actor, subject id or hashes.
#[allow(clippy::too_many_arguments)]
async fn old_record(
    db: &tokio_postgres::Client,
    ws: Uuid,
    at: i64,
    group: Uuid,
    subject: (i16, Option<Uuid>, Option<&str>),
    old: Option<i16>,
    new: i16,
    key: Uuid,
) {
    db.execute(
        "INSERT INTO changes (workspace_id, change_id, at, group_id, subject_kind, profile_id, identifier, \
         old_state, new_state, api_key_id, endpoint, request_id, use_double_opt_in_logic) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, false)",
        &[&ws, &Uuid::now_v7(), &at, &group, &subject.0, &subject.1, &subject.2, &old, &new, &key, &Uuid::new_v4()],
    )
    .await
    .expect("an old record is inserted");
}

#[tokio::test]
async fn a_postgres_database_at_the_previous_schema_opens_with_its_records_sourced_api_and_sealed() {
    // A current server made the catalog (workspace, key, group): its rows are the same at
    // schema 3, the `catalog` table being unchanged since migration 1.
    let donor = spawn_app_on(TestStore::Postgres, |_| {}).await;
    let news = donor.create_group("news", Channel::Email).await;
    let (key, workspace) = (donor.key.clone(), donor.workspace);
    let donor_db = connect(&donor.database_url().expect("a PostgreSQL app")).await;
    let catalog = donor_db.query("SELECT kind, id, body FROM catalog", &[]).await.expect("the catalog reads");
    drop(donor_db);
    donor.shutdown().await;

    let database = TestDatabase::create();
    let mut db = connect(&database.url).await;
    let applied = consentry::store::postgres::migrations::apply_up_to(&mut db, 3).await.expect("schema 3");
    assert_eq!(applied, [1, 2, 3]);
    for row in &catalog {
        let (kind, id, body): (i16, Uuid, String) = (row.get(0), row.get(1), row.get(2));
        db.execute("INSERT INTO catalog (kind, id, body) VALUES ($1, $2, $3)", &[&kind, &id, &body]).await.unwrap();
    }
    let (ws, group, api_key) = (workspace.0, news.0, Uuid::new_v4());
    // An hour ago: recent enough that the orphaned state has not expired.
    let t = consentry::domain::time::Clock::system().now().0 - 3_600_000_000;
    let u1 = Uuid::now_v7();
    db.execute(
        "INSERT INTO profiles (workspace_id, profile_id, external_id, email) VALUES ($1, $2, 'u1', 'a@example.com')",
        &[&ws, &u1],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO states (workspace_id, profile_id, group_id, state, updated_at) VALUES ($1, $2, $3, 1, $4)",
        &[&ws, &u1, &group, &(t + 3000)],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO orphans (workspace_id, kind, identifier, group_id, state, updated_at) \
         VALUES ($1, 1, 'orphan@example.com', $2, 1, $3)",
        &[&ws, &group, &(t + 2500)],
    )
    .await
    .unwrap();
    // u1: subscribed, unsubscribed, subscribed again; the orphaned address unsubscribed then
    // subscribed; one record of an address erased before the ledger.
    let profile = (0, Some(u1), None);
    old_record(&db, ws, t + 1000, group, profile, None, 1, api_key).await;
    old_record(&db, ws, t + 2000, group, profile, Some(1), 2, api_key).await;
    old_record(&db, ws, t + 3000, group, profile, Some(2), 1, api_key).await;
    let orphan = (1, None, Some("orphan@example.com"));
    old_record(&db, ws, t + 1500, group, orphan, None, 2, api_key).await;
    old_record(&db, ws, t + 2500, group, orphan, Some(2), 1, api_key).await;
    old_record(&db, ws, t + 1200, group, (3, None, None), None, 2, api_key).await;
    drop(db);

    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut settings = consentry::config::Settings::for_tests(dir.path());
    settings.database = DatabaseLocation::Postgres(database.url.clone());
    settings.store.postgres.pool_size = 4;
    let app = spawn_app_on_existing(settings, key, Some(database), dir).await;

    assert_eq!(app.state_of("u1", news).await, Some(Subscribed));
    assert_eq!(app.orphan_state(&email("orphan@example.com"), news).await, Some(Subscribed));
    let changes = app.changes().await;
    assert_eq!(changes.len(), 6, "{changes:?}");
    assert!(changes.iter().all(|c| c.kind == Source::Api && c.seq >= 1 && c.hash != ChainHash::ZERO));
    assert!(changes.iter().any(|c| matches!(c.subject, Subject::Erased(_))), "the erased record stays erased");
    let orphan: Vec<_> = changes.iter().filter(|c| c.subject.contact() == Some(&email("orphan@example.com"))).collect();
    assert_eq!(orphan.len(), 2);
    assert_eq!(orphan[0].subject.internal_id(), orphan[1].subject.internal_id(), "one id per address");
    assert_eq!((orphan[0].seq, orphan[1].seq), (1, 2));
    assert_eq!(orphan[0].previous_hash, ChainHash::ZERO);
    assert_eq!(orphan[1].previous_hash, orphan[0].hash);
    let check = app.store.verify_ledger(None, Arc::new(AtomicU64::new(0))).await.expect("the walk reads");
    assert_eq!(check.first_bad, None);
    assert_eq!(check.records, 6);

    // The history endpoint reads the upgraded records: sourced `api`, in time order, linked.
    let history = all_pages(&app, "external_id=u1", 2).await;
    let states: Vec<&str> = history.iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["subscribed", "unsubscribed", "subscribed"]);
    assert!(history.iter().all(|r| r["source"] == "api" && r["external_id"] == "u1"), "{history:?}");
    assert_eq!(history[0]["previous_hash"], Value::String("0".repeat(64)));
    for pair in history.windows(2) {
        assert_eq!(pair[1]["previous_hash"], pair[0]["hash"]);
    }
    let by_email = all_pages(&app, "email=orphan@example.com", 100).await;
    assert_eq!(by_email.len(), 2, "{by_email:?}");
    assert!(by_email.iter().all(|r| r["source"] == "api" && r["email"] == "orphan@example.com"));

    // Writes after the upgrade continue the upgraded chains.
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "external_ids", &["u1"])).await).await;
    let history = all_pages(&app, "external_id=u1", 100).await;
    assert_eq!(history.len(), 4);
    assert_eq!(history[3]["previous_hash"], history[2]["hash"]);
    let check = app.store.verify_ledger(None, Arc::new(AtomicU64::new(0))).await.expect("the walk reads");
    assert_eq!((check.first_bad, check.records), (None, 7));
    assert!(matches!(app.store, Store::Postgres(_)));
    app.shutdown().await;
}
