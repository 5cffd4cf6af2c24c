//! The write side of the ledger: one record per net change, chains sealed by both stores,
//! `ledger verify` naming a tampered record, erasure keeping chains verifiable, and the upgrade
//! of a store written by the previous release.

use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use consentry::domain::change::{Source, Subject};
use consentry::domain::ledger::{self, Break, ChainHash};
use consentry::domain::subscription::{Channel, SubscriptionState::*};
use consentry::store::Store;
use serde_json::json;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_consentry");

async fn verify(store: &Store) -> ledger::LedgerCheck {
    store.verify_ledger(None, Arc::new(AtomicU64::new(0))).await.expect("the walk reads the store")
}

#[tokio::test]
async fn entries_that_flip_a_state_back_and_forth_record_only_the_net_change() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let entry = |state: &str| json!({"subscription_group_id": group.to_string(), "subscription_state": state, "external_ids": ["u1"]});

    let body = json!({"subscription_groups": [entry("subscribed"), entry("unsubscribed"), entry("subscribed")]});
    assert_success(app.post_v2(&body).await).await;
    let changes = app.changes().await;
    assert_eq!(changes.len(), 1, "one record for the net change: {changes:?}");
    assert_eq!((changes[0].old, changes[0].new), (None, Subscribed));

    let body = json!({"subscription_groups": [entry("unsubscribed"), entry("subscribed")]});
    assert_success(app.post_v2(&body).await).await;
    assert_eq!(app.changes().await.len(), 1, "a request that ends where it began records nothing");
    assert_eq!(app.state_of("u1", group).await, Some(Subscribed));

    let body = json!({"subscription_groups": [entry("unsubscribed"), entry("subscribed"), entry("unsubscribed")]});
    assert_success(app.post_v2(&body).await).await;
    let changes = app.changes().await;
    assert_eq!(changes.len(), 2);
    assert_eq!((changes[1].old, changes[1].new), (Some(Subscribed), Unsubscribed));
    assert_eq!(changes[1].previous_hash, changes[0].hash, "the second record follows the first in its chain");
    assert_eq!(changes[0].previous_hash, ChainHash::ZERO);
    assert_eq!((changes[0].seq, changes[1].seq), (1, 2));
    assert_eq!(changes[1].kind, Source::Api);
    assert!(changes[1].actor.is_none());
    assert_eq!(verify(&app.store).await.first_bad, None);
    app.shutdown().await;
}

#[tokio::test]
async fn users_track_objects_that_flip_a_group_back_record_nothing() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let object = |state: &str| json!({"external_id": "u1", "subscription_groups": [{"subscription_group_id": group.to_string(), "subscription_state": state}]});
    let response = app.post_json("/users/track", &json!({"attributes": [object("subscribed")]})).await;
    assert_eq!(response.status(), 201);
    let before = app.profile("u1").await.expect("created").states;
    let response =
        app.post_json("/users/track", &json!({"attributes": [object("unsubscribed"), object("subscribed")]})).await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.changes().await.len(), 1, "the flip and its undoing record nothing");
    assert_eq!(app.profile("u1").await.expect("kept").states, before, "the state and its time are left as they were");
    app.shutdown().await;
}

#[tokio::test]
async fn erasing_an_address_keeps_every_chain_verifying() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(group, "unsubscribed", "emails", &["gone@example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(group, "subscribed", "emails", &["gone@example.com"])).await).await;
    let response = app
        .post_json("/users/track", &json!({"attributes": [{"external_id": "u1", "email": "gone@example.com"}]}))
        .await;
    assert_eq!(response.status(), 201);
    assert_success(app.post_v2(&one_entry(group, "unsubscribed", "external_ids", &["u1"])).await).await;
    let before = app.changes().await;
    let response = app.post_json("/users/delete", &json!({"external_ids": ["u1"]})).await;
    assert_eq!(response.status(), 201);

    let after = app.changes().await;
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|c| c.subject.contact().is_none()), "no record names the address any more");
    assert!(matches!(after[0].subject, Subject::Erased(_)));
    assert_eq!(after[0].subject.internal_id(), before[0].subject.internal_id(), "the internal id stays");
    let check = verify(&app.store).await;
    assert_eq!(check.first_bad, None);
    assert_eq!(check.records, after.len() as u64);
    app.shutdown().await;
}

/// Flips one byte of a stored change record, directly in the store the server left.
fn tamper(dir: &std::path::Path, victim: &consentry::domain::change::ChangeRecord) {
    let db = fjall::Database::builder(dir.join("engine")).open().expect("the engine opens");
    let changes = db.keyspace("changes", fjall::KeyspaceCreateOptions::default).expect("the keyspace opens");
    let key = consentry::bench_support::change_key(victim.workspace_id, victim.id);
    let mut value = changes.get(&key).expect("reads").expect("the record is there").to_vec();
    // The double-opt-in flag byte lives in the flags byte; flipping it keeps the record readable.
    let mut tampered = victim.clone();
    tampered.use_double_opt_in_logic = !tampered.use_double_opt_in_logic;
    let rewritten = consentry::bench_support::encode_change(&tampered);
    let differing: Vec<usize> = (0..value.len()).filter(|&i| value[i] != rewritten[i]).collect();
    assert_eq!(differing.len(), 1, "exactly one byte differs");
    value[differing[0]] = rewritten[differing[0]];
    let mut batch = db.batch().durability(Some(fjall::PersistMode::SyncAll));
    batch.insert(&changes, key, value);
    batch.commit().expect("the tampered byte is written");
}

#[tokio::test]
async fn flipping_one_byte_of_a_stored_record_makes_verify_fail_and_name_it() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    for state in ["subscribed", "unsubscribed", "subscribed"] {
        assert_success(app.post_v2(&one_entry(group, state, "external_ids", &["u1", "u2"])).await).await;
    }
    let changes = app.changes().await;
    let victim = changes[3].clone();
    let database = match &app.store {
        Store::Embedded(s) => s.path().to_path_buf(),
        Store::Postgres(_) => String::new().into(),
    };
    let url = postgres_url(&app);
    let stopped = app.shutdown().await;

    let target = match &url {
        None => {
            tamper(&database, &victim);
            database.display().to_string()
        }
        Some(url) => {
            admin_statement(
                url,
                format!(
                    "UPDATE changes SET use_double_opt_in_logic = NOT use_double_opt_in_logic WHERE change_id = '{}'",
                    victim.id
                ),
            )
            .expect("the row is altered");
            url.clone()
        }
    };
    let output = Command::new(BIN).args(["--database", &target, "ledger", "verify"]).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "verify fails on a tampered store: {stdout} {stderr}");
    assert!(stdout.starts_with("broken\t"), "{stdout}");
    assert!(stdout.contains(&victim.id.to_string()), "verify names the tampered record: {stdout}");
    assert!(stderr.contains(&victim.id.to_string()), "{stderr}");
    assert!(stdout.contains(&format!("{:?}", Break::Hash)), "{stdout}");
    drop(stopped);
}

#[tokio::test]
async fn verify_passes_on_an_untouched_store_with_and_without_a_server_running_on_it() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(group, "subscribed", "external_ids", &["u1", "u2"])).await).await;
    assert_success(app.post_v2(&one_entry(group, "unsubscribed", "emails", &["o@example.com"])).await).await;
    let target = match postgres_url(&app) {
        Some(url) => url,
        None => match &app.store {
            Store::Embedded(s) => s.path().display().to_string(),
            Store::Postgres(_) => unreachable!(),
        },
    };
    let run = |args: &'static [&'static str]| {
        let target = target.clone();
        // On a blocking thread: the server under test runs on this test's runtime, and the
        // embedded store answers through its admin socket.
        tokio::task::spawn_blocking(move || {
            Command::new(BIN).args(["--database", &target, "ledger", "verify"]).args(args).output().expect("runs")
        })
    };
    let output = run(&[]).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout, "ok\t3\t3\n", "verified while the server runs");
    let output = run(&["--workspace", "nope"]).await.unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no workspace named \"nope\""));

    let stopped = app.shutdown().await;
    let output = run(&["--workspace", "default"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout, "ok\t3\t3\n", "verified with no server running");
    drop(stopped);
}

/// The PostgreSQL URL of the app's database, if it runs on PostgreSQL.
fn postgres_url(app: &TestApp) -> Option<String> {
    match &app.store {
        Store::Embedded(_) => None,
        Store::Postgres(_) => Some(app.database_url().expect("a PostgreSQL app has a URL")),
    }
}

/// The store `tests/api/fixtures/store-v1` was written by the release before the ledger
/// (commit fb23553) through its HTTP API: workspace `default` with the key below, group
/// `news` (email) and `sms`; u1 and u2 subscribed to news (u1 flipped through unsubscribed in
/// one request), u1 with a@example.com and u2 with +12223334444 (sms: unsubscribed), orphaned
/// orphan@example.com (news: unsubscribed, then subscribed) and +13334445555 (sms: subscribed),
/// and gone@example.com erased by deleting u3, which had inherited it.
const FIXTURE_KEY: &str = "b4e3d71b-429d-4dc2-9f5d-4490b9aa11f4";
const FIXTURE_NEWS: &str = "cc282097-27ce-4d17-948c-8d4af0ea1857";
const FIXTURE_SMS: &str = "6af0f803-60f5-416b-adfd-7161fadd8efc";

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("creates");
    for entry in std::fs::read_dir(from).expect("reads") {
        let entry = entry.expect("reads");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("stat").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copies");
        }
    }
}

#[tokio::test]
async fn a_store_written_by_the_previous_release_opens_upgraded_with_every_chain_sealed() {
    if test_store() == TestStore::Postgres {
        // The PostgreSQL upgrade has its own test (ledger_upgrade); the fixture is
        // an embedded store.
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    copy_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/fixtures/store-v1"), dir.path());
    let settings = consentry::config::Settings::for_tests(dir.path());
    let app = spawn_app_on_existing(settings, FIXTURE_KEY.into(), None, dir).await;

    let response = app
        .get_query("/subscription/status/get", &format!("subscription_group_id={FIXTURE_NEWS}&external_id=u1"))
        .await;
    assert_eq!(response.status(), 200, "the previous release's key still works");
    assert!(response.text().await.expect("a body").contains("Subscribed"));
    let news = consentry::domain::ids::GroupId::parse(FIXTURE_NEWS).expect("an id");
    let sms = consentry::domain::ids::GroupId::parse(FIXTURE_SMS).expect("an id");
    assert_eq!(app.state_of("u1", news).await, Some(Subscribed));
    assert_eq!(app.state_of("u2", news).await, Some(Subscribed));
    assert_eq!(app.state_of("u2", sms).await, Some(Unsubscribed));
    assert_eq!(app.orphan_state(&email("orphan@example.com"), news).await, Some(Subscribed));
    assert_eq!(app.orphan_state(&phone("+13334445555"), sms).await, Some(Subscribed));

    let changes = app.changes().await;
    assert!(changes.len() >= 9, "{changes:?}");
    assert!(changes.iter().all(|c| c.kind == Source::Api && c.seq >= 1 && c.hash != ChainHash::ZERO));
    assert!(changes.iter().any(|c| matches!(c.subject, Subject::Erased(_))), "the erased address stays erased");
    let orphan: Vec<_> = changes.iter().filter(|c| c.subject.contact() == Some(&email("orphan@example.com"))).collect();
    assert_eq!(orphan.len(), 2);
    assert_eq!(orphan[0].subject.internal_id(), orphan[1].subject.internal_id(), "one id per address");
    assert_eq!(orphan[1].previous_hash, orphan[0].hash);
    let check = verify(&app.store).await;
    assert_eq!(check.first_bad, None);
    assert_eq!(check.records, changes.len() as u64);

    // Writes after the upgrade continue the upgraded chains.
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["orphan@example.com"])).await).await;
    let last = app.changes().await.into_iter().last().expect("a record");
    assert_eq!(last.subject.internal_id(), orphan[0].subject.internal_id());
    assert_eq!(last.previous_hash, orphan[1].hash);
    assert_eq!(verify(&app.store).await.first_bad, None);
    app.shutdown().await;
}

#[test]
fn a_long_admin_request_passes_on_the_progress_the_server_reports_and_a_silent_close_is_an_error() {
    use std::io::{BufRead as _, Write as _};

    use consentry::admin::{socket, AdminRequest};
    let dir = tempfile::tempdir().unwrap();
    let listener = std::os::unix::net::UnixListener::bind(socket::socket_path(dir.path())).unwrap();
    let server = std::thread::spawn(move || {
        for lines in [
            &["{\"Progress\":5}", "{\"Progress\":9}", "{\"Ok\":{\"stdout\":\"ok\\t1\\t9\\n\",\"stderr\":\"\"}}"][..],
            &[],
        ] {
            let (stream, _) = listener.accept().unwrap();
            let mut request = String::new();
            std::io::BufReader::new(&stream).read_line(&mut request).unwrap();
            assert!(request.contains("ledger_verify"), "{request}");
            for line in lines {
                writeln!(&stream, "{line}").unwrap();
            }
        }
    });
    let request = AdminRequest::LedgerVerify { workspace: None };
    let mut seen = Vec::new();
    let answer = socket::call_with_progress(dir.path(), &request, |done| seen.push(done)).unwrap().unwrap();
    assert_eq!(seen, [5, 9]);
    assert_eq!(answer.stdout, "ok\t1\t9\n");
    let closed = socket::call_with_progress(dir.path(), &request, |_| {}).unwrap_err();
    assert!(closed.contains("closed the admin socket without answering"), "{closed}");
    server.join().unwrap();
}
