//! Ledger retention: kept forever by default; a workspace set to N days loses records older
//! than that but the latest of each chain, and every chain still verifies and proves from the
//! anchor its deleted records leave.

use std::path::PathBuf;

use consentry::domain::catalog::{LedgerRetention, Workspace};
use consentry::domain::subscription::Channel;
use consentry::domain::time::Timestamp;
use consentry::server::expire_ledgers;
use consentry::store::Store;
use reqwest::StatusCode;
use serde_json::Value;

use crate::admin_cli::{cell, fails, ok, row, table};
use crate::consent_history::all_pages;
use crate::helpers::*;

/// Three days from now: records written by the test are then older than a day.
fn in_three_days() -> Timestamp {
    Timestamp(consentry::domain::time::Clock::system().now().0 + 3 * 86_400 * 1_000_000)
}

async fn verified(app: &TestApp) -> (u64, u64) {
    let check = app
        .store
        .verify_ledger(None, std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)))
        .await
        .expect("the walk reads the store");
    assert_eq!(check.first_bad, None, "every chain verifies");
    (check.chains, check.records)
}

#[tokio::test]
async fn retention_deletes_old_records_but_the_latest_of_each_chain_and_chains_still_verify_and_prove() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    for state in ["subscribed", "unsubscribed", "subscribed"] {
        assert_success(app.post_v2(&by_external_ids(news, state, &["u1"])).await).await;
    }
    assert_success(app.post_v2(&by_external_ids(news, "unsubscribed", &["u2"])).await).await;
    for state in ["unsubscribed", "subscribed"] {
        assert_success(app.post_v2(&one_entry(news, state, "emails", &["o@example.com"])).await).await;
    }
    assert_eq!(verified(&app).await, (3, 6));

    // Forever by default: nothing goes, however old.
    assert_eq!(expire_ledgers(&app.store, &app.catalog, in_three_days()).await.unwrap(), 0);

    app.catalog.set_ledger_retention("default", LedgerRetention::days(1).unwrap()).await.unwrap();
    assert_eq!(
        expire_ledgers(&app.store, &app.catalog, consentry::domain::time::Clock::system().now()).await.unwrap(),
        0,
        "nothing is a day old"
    );
    let deleted = expire_ledgers(&app.store, &app.catalog, in_three_days()).await.unwrap();
    assert_eq!(deleted, 3, "u1's first two and the orphan's first; u2's only record is its latest");
    assert_eq!(expire_ledgers(&app.store, &app.catalog, in_three_days()).await.unwrap(), 0, "the latest stay");
    assert_eq!(verified(&app).await, (3, 3), "each chain verifies from its anchor");

    let history = all_pages(&app, "external_id=u1", 100).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["state"], "subscribed");
    assert_ne!(history[0]["previous_hash"], "0".repeat(64), "it follows the deleted record, its anchor");
    let (status, proof) = status_and_json(app.get_query("/consent/proof", "external_id=u1").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(proof["verified"], true, "{proof}");
    assert_eq!(proof["chains"][0]["records"].as_array().unwrap().len(), 1);
    let (_, proof) = status_and_json(app.get_query("/consent/proof", "email=o@example.com").await).await;
    assert_eq!(proof["verified"], true, "{proof}");

    // The chain goes on from the kept record.
    assert_success(app.post_v2(&by_external_ids(news, "unsubscribed", &["u1"])).await).await;
    assert_eq!(verified(&app).await, (3, 4));
    let (_, proof) = status_and_json(app.get_query("/consent/proof", "external_id=u1").await).await;
    let records: &Vec<Value> = proof["chains"][0]["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["previous_hash"], records[0]["hash"]);
    assert_eq!(proof["verified"], true);
}

#[tokio::test]
async fn set_ledger_retention_is_stored_on_the_workspace_and_listed_and_refuses_bad_days() {
    let app = spawn_app().await;
    let target: PathBuf = match (&app.store, app.database_url()) {
        (_, Some(url)) => url.into(),
        (Store::Embedded(store), None) => store.path().to_path_buf(),
        (Store::Postgres(_), None) => unreachable!(),
    };
    // On a blocking thread: the server under test runs on this test's runtime and answers the
    // embedded store's commands through its admin socket.
    let run = |args: &'static [&'static str], good: bool| {
        let target = target.clone();
        tokio::task::spawn_blocking(move || if good { ok(&target, args) } else { fails(&target, args) })
    };
    let rows = table(&run(&["workspaces", "list"], true).await.unwrap());
    assert_eq!(cell(&rows, row(&rows, "name", "default"), "ledger_retention"), "forever");

    run(&["workspaces", "set-ledger-retention", "default", "--days", "30"], true).await.unwrap();
    let rows = table(&run(&["workspaces", "list"], true).await.unwrap());
    assert_eq!(cell(&rows, row(&rows, "name", "default"), "ledger_retention"), "30 days");

    let refused = run(&["workspaces", "set-ledger-retention", "default", "--days", "0"], false).await.unwrap();
    assert!(refused.contains("--days must be 1 to 36500 (or use --forever), got 0"), "{refused}");
    let refused = run(&["workspaces", "set-ledger-retention", "default"], false).await.unwrap();
    assert!(refused.contains("--days"), "{refused}");

    run(&["workspaces", "set-ledger-retention", "default", "--forever"], true).await.unwrap();
    let rows = table(&run(&["workspaces", "list"], true).await.unwrap());
    assert_eq!(cell(&rows, row(&rows, "name", "default"), "ledger_retention"), "forever");
}

#[test]
fn a_workspace_stored_before_ledger_retention_keeps_its_records_forever() {
    let stored = r#"{"id":"0190f0f0-0000-7000-8000-000000000001","name":"acme","created_at":1700000000000000}"#;
    let workspace: Workspace = serde_json::from_str(stored).expect("the previous release's workspace reads");
    assert_eq!(workspace.ledger_retention, LedgerRetention::Forever);
    let days: Workspace =
        serde_json::from_str(&stored.replace('}', r#","ledger_retention":{"days":30}}"#)).expect("reads");
    assert_eq!(days.ledger_retention, LedgerRetention::Days(30));
    assert_eq!(serde_json::to_string(&workspace).unwrap(), stored, "forever is written as before");
}
