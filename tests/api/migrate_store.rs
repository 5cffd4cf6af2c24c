//! `consentry migrate-store`: the real binary copies a stopped embedded store into a fresh
//! PostgreSQL database; a server on the copy answers exactly as one on the original did; a
//! copy killed midway resumes and ends with exact counts; anything that is not this store's
//! copy, a store a server holds, and bad flags are refused.
//!
//! The source is always an embedded store and the target always PostgreSQL, whatever the suite
//! runs against. The tests that need a database run in the suite's PostgreSQL pass, where
//! PostgreSQL is up by contract (and `TestDatabase::create` fails them when it is not); those
//! that are refused before any connection run in both passes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use consentry::config::Settings;
use consentry::domain::change::{Contact, Subject};
use consentry::domain::ids::{GroupId, WorkspaceId};
use consentry::domain::subscription::Channel;
use consentry::domain::tenant::Permission;
use consentry::store::{DatabaseLocation, Policy, Store, StoreOptions};
use serde_json::{json, Value};
use tokio_postgres::NoTls;

use crate::helpers::{
    assert_success, by_external_ids, email, one_entry, phone, spawn_app_on, spawn_app_on_existing, test_store,
    StoppedApp, TestApp, TestDatabase, TestStore, V2_PATH,
};

const BIN: &str = env!("CARGO_BIN_EXE_consentry");

/// `consentry migrate-store --from FROM --to TO EXTRA…`, with a clean environment.
fn migrate_store(from: &Path, to: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.env_remove("CONSENTRY_DATABASE_URL").env("NO_COLOR", "1");
    command.arg("migrate-store").arg("--from").arg(from).args(["--to", to]).args(extra);
    command
}

fn run(from: &Path, to: &str, extra: &[&str]) -> Output {
    migrate_store(from, to, extra).output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a copy that must succeed and verify; returns its stdout.
fn copies(from: &Path, to: &str) -> String {
    let output = run(from, to, &[]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "the copy failed: {}\n{stdout}", text(&output.stderr));
    assert!(stdout.contains("verified: every count matches"), "{stdout}");
    stdout
}

/// Runs a copy that must be refused; returns its stderr.
fn refused(from: &Path, to: &str, extra: &[&str]) -> String {
    let output = run(from, to, extra);
    assert!(!output.status.success(), "the copy was not refused: {}", text(&output.stdout));
    text(&output.stderr)
}

/// The data directory of an app on the embedded store.
fn data_dir(app: &TestApp) -> PathBuf {
    match &app.store {
        Store::Embedded(store) => store.path().to_path_buf(),
        Store::Postgres(_) => panic!("the source must be an embedded store"),
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("the test database answers");
    tokio::spawn(connection);
    client
}

/// `SELECT count(*) FROM table` on `url`.
async fn rows_in(url: &str, table: &str) -> i64 {
    connect(url).await.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0)
}

/// A source with something of every kind: two workspaces, keys, groups (one archived),
/// profiles with and without emails and phones, orphaned states of an email and a phone, and
/// change records of profiles, orphans and an erased address.
struct Source {
    app: TestApp,
    groups: Vec<GroupId>,
    other: (WorkspaceId, String),
    /// The other workspace's group.
    theirs: GroupId,
}

const EXTERNAL_IDS: [&str; 5] = ["ada", "bob", "cy", "leaver", "nobody"];
const EMAILS: [&str; 4] = ["ada@example.com", "orphan@example.com", "gone@example.com", "cy@example.com"];
const PHONES: [&str; 2] = ["+12223334444", "+15556667777"];

async fn source_with_history() -> Source {
    let app = spawn_app_on(TestStore::Embedded, |_| {}).await;
    let news = app.create_group("news", Channel::Email).await;
    let alerts = app.create_group("alerts", Channel::Sms).await;
    let promo = app.create_group("promo", Channel::Email).await;
    let old = app.create_group("old", Channel::Email).await;
    app.archive_group(old).await;
    app.import(&[("ada", Some("ada@example.com"), Some("+12223334444")), ("bob", None, None)]).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["ada", "bob"])).await).await;
    assert_success(app.post_v2(&by_external_ids(alerts, "unsubscribed", &["ada"])).await).await;
    assert_success(app.post_v2(&one_entry(promo, "subscribed", "emails", &["orphan@example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(alerts, "subscribed", "phones", &["+15556667777"])).await).await;
    let (status, body) = app
        .track(json!([{ "external_id": "cy", "email": "cy@example.com", "subscription_groups": [
            { "subscription_group_id": promo.to_string(), "subscription_state": "subscribed" } ] }]))
        .await;
    assert!(status.is_success(), "{body}");
    // An address whose every carrier is deleted leaves its history erased.
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["gone@example.com"])).await).await;
    let (status, body) = app.track(json!([{ "external_id": "leaver", "email": "gone@example.com" }])).await;
    assert!(status.is_success(), "{body}");
    let (status, body) = app.delete_users(&["leaver"]).await;
    assert!(status.is_success(), "{body}");
    assert!(
        app.changes().await.iter().any(|c| matches!(c.subject, Subject::Erased(_))),
        "the history has an erased address"
    );

    let (other, secret) = app.create_workspace_with_key("other", &[Permission::SubscriptionStatusSet]).await;
    let theirs = app.catalog.create_group("other", "theirs", Channel::Email).await.expect("a group").id;
    let body = by_external_ids(theirs, "subscribed", &["ada", "zed"]);
    assert_success(app.post_json_with_key(V2_PATH, Some(&secret), &body).await).await;
    Source { app, groups: vec![news, alerts, promo, old], other: (other, secret), theirs }
}

/// Everything the tests compare between two apps: the HTTP answers of both reads, and what the
/// store holds (catalog, profiles, carriers, orphaned states, change records of both
/// workspaces), exactly: ids and times included.
async fn observe(app: &TestApp, groups: &[GroupId], other: WorkspaceId) -> Vec<Value> {
    let mut seen = Vec::new();
    for &group in groups {
        for query in [
            "external_id=ada&external_id=bob&external_id=cy&external_id=nobody",
            "email=orphan@example.com&email=gone@example.com&email=cy@example.com",
            "phone=%2B15556667777&phone=%2B12223334444",
        ] {
            let (status, body) = app.status_get(group, query).await;
            seen.push(json!([group.to_string(), query, status.as_u16(), body]));
        }
    }
    for query in [
        "external_id=ada",
        "external_id=cy",
        "email=orphan@example.com",
        "email=gone@example.com",
        "phone=%2B15556667777",
    ] {
        let (status, body) = app.user_status(query).await;
        seen.push(json!([query, status.as_u16(), body]));
    }
    let catalog = app.store.load_catalog().await.expect("the store reads");
    seen.push(json!([catalog.workspaces, catalog.api_keys, catalog.groups]));
    for workspace in [app.workspace, other] {
        for id in EXTERNAL_IDS.iter().chain(&["zed"]) {
            let profile = app.store.inspect().profile_by_external_id(workspace, id).await.expect("the store reads");
            seen.push(json!(format!("{profile:?}")));
        }
        let contacts: Vec<Contact> = EMAILS.iter().map(|e| email(e)).chain(PHONES.iter().map(|p| phone(p))).collect();
        for contact in &contacts {
            let carriers = app.store.inspect().profiles_by_contact(workspace, contact).await.expect("the store reads");
            let orphans = app.store.inspect().orphan_states(workspace, contact).await.expect("the store reads");
            seen.push(json!(format!("{contact:?}: {carriers:?} {orphans:?}")));
        }
        seen.push(
            serde_json::to_value(app.store.inspect().change_records(workspace).await.expect("the store reads"))
                .unwrap(),
        );
    }
    seen
}

/// Starts a server on the copy in `database`, with the source's key.
async fn serve_copy(database: TestDatabase, key: &str) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut settings = Settings::for_tests(dir.path());
    settings.database = DatabaseLocation::Postgres(database.url.clone());
    settings.store.postgres.pool_size = 4;
    spawn_app_on_existing(settings, key.to_string(), Some(database), dir).await
}

/// Stops a source app; returns its data directory and the guard that keeps it.
async fn stop(app: TestApp) -> (PathBuf, StoppedApp) {
    let dir = data_dir(&app);
    (dir, app.shutdown().await)
}

#[tokio::test]
async fn a_full_copy_is_verified_and_a_server_on_it_answers_exactly_like_the_original() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let source = source_with_history().await;
    let (other, secret) = source.other.clone();
    let before = observe(&source.app, &source.groups, other).await;
    let key = source.app.key.clone();
    let (dir, _kept) = stop(source.app).await;

    let database = TestDatabase::create();
    let stdout = copies(&dir, &database.url);
    for line in ["workspaces", "API keys", "groups", "profiles", "states", "orphaned states", "change records"] {
        let row = stdout.lines().find(|l| l.starts_with(line)).unwrap_or_else(|| panic!("no {line} row: {stdout}"));
        let numbers: Vec<&str> = row[line.len()..].split_whitespace().collect();
        assert!(numbers.len() == 2 && numbers[0] == numbers[1] && numbers[0] != "0", "{row}");
    }
    let again = copies(&dir, &database.url);
    assert!(again.starts_with("already complete"), "{again}");

    let copy = serve_copy(database, &key).await;
    let after = observe(&copy, &source.groups, other).await;
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a, b);
    }
    assert_eq!(before.len(), after.len());
    // The copy takes writes like any PostgreSQL store, with the copied keys.
    let body = by_external_ids(source.groups[0], "unsubscribed", &["bob"]);
    assert_success(copy.post_v2(&body).await).await;
    let body = by_external_ids(source.theirs, "unsubscribed", &["zed"]);
    assert_success(copy.post_json_with_key(V2_PATH, Some(&secret), &body).await).await;
    let _ = copy.shutdown().await;
}

/// `(done, total)` of a progress line `copying TABLE DONE / TOTAL …`.
fn progress_of(line: &str) -> Option<(String, u64, u64)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |w: &str| w.replace(',', "").parse::<u64>().ok();
    match words.as_slice() {
        ["copying", table, done, "/", total, ..] => Some((table.to_string(), number(done)?, number(total)?)),
        _ => None,
    }
}

#[tokio::test]
async fn a_copy_killed_midway_resumes_after_its_last_batch_and_copies_nothing_twice() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let app = spawn_app_on(TestStore::Embedded, |_| {}).await;
    let news = app.create_group("news", Channel::Email).await;
    let alerts = app.create_group("alerts", Channel::Sms).await;
    const PROFILES: usize = 3000;
    let ids: Vec<String> = (0..PROFILES).map(|n| format!("user-{n}")).collect();
    for chunk in ids.chunks(50) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        assert_success(app.post_v2(&by_external_ids(news, "subscribed", &chunk)).await).await;
        assert_success(app.post_v2(&by_external_ids(alerts, "unsubscribed", &chunk[..10])).await).await;
    }
    let changes: Vec<uuid::Uuid> = app.changes().await.iter().map(|c| c.id.0).collect();
    let (dir, _kept) = stop(app).await;
    let database = TestDatabase::create();

    // One entry per transaction, so that the copy is still going when its first progress
    // line (a second in) comes; it is killed right then.
    let mut child = migrate_store(&dir, &database.url, &["--batch-size", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut interrupted = None;
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.expect("stderr is read");
        seen.push(line.clone());
        if let Some((table, done, total)) = progress_of(&line) {
            if done > 0 && done < total {
                interrupted = Some((table, done));
                break;
            }
        }
    }
    child.kill().expect("the copy is killed");
    child.wait().expect("the copy ends");
    let (table, _) = interrupted.unwrap_or_else(|| panic!("the copy ended before it could be interrupted: {seen:?}"));

    // The killed copy's backends may still be finishing a statement (or a COMMIT sent just
    // before the kill): wait until they are gone, so that what is read below is final.
    let client = connect(&database.url).await;
    crate::helpers::eventually(
        "the killed copy's connections are gone",
        std::time::Duration::from_secs(30),
        || async {
            let others: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND backend_type = 'client backend'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
            (others == 0).then_some(())
        },
    )
    .await;

    // Killed for real: incomplete, and every committed batch came with its checkpoint.
    let completed: Option<i64> = client.query_one("SELECT completed_at FROM store_copy", &[]).await.unwrap().get(0);
    assert_eq!(completed, None, "the copy was complete when killed");
    // One statement, one snapshot: the rows and the checkpoint as of the same moment.
    let sql =
        format!("SELECT copied, done, (SELECT count(*) FROM {table}) FROM store_copy_progress WHERE source_table = $1");
    let row = client.query_one(&sql, &[&table]).await.unwrap();
    let (copied, done, rows): (i64, bool, i64) = (row.get(0), row.get(1), row.get(2));
    if !done {
        assert!(copied > 0, "{table}: no batch committed before the kill");
        assert_eq!(rows, copied, "{table}: rows and checkpoint disagree");
        assert!(copied < rows_expected(&table, PROFILES, changes.len()), "{table} was copied whole");
    }

    let output = run(&dir, &database.url, &[]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "the resumed copy failed: {}\n{stdout}", text(&output.stderr));
    assert!(stdout.starts_with("resumed and finished"), "{stdout}");
    assert!(stdout.contains("verified: every count matches"), "{stdout}");
    assert_eq!(rows_in(&database.url, "profiles").await, PROFILES as i64);
    assert_eq!(rows_in(&database.url, "states").await, (PROFILES + PROFILES / 5) as i64);
    let mut copied_changes: Vec<uuid::Uuid> = client
        .query("SELECT change_id FROM changes ORDER BY change_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    copied_changes.dedup();
    assert_eq!(copied_changes, changes, "every change record once, with its id");
}

/// Rows a table ends with in the resumed test's source.
fn rows_expected(table: &str, profiles: usize, changes: usize) -> i64 {
    match table {
        "profiles" => profiles as i64,
        "changes" => changes as i64,
        _ => i64::MAX,
    }
}

#[tokio::test]
async fn a_database_holding_anything_but_this_stores_copy_is_refused_and_left_as_it_was() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let first = spawn_app_on(TestStore::Embedded, |_| {}).await;
    let group = first.create_group("news", Channel::Email).await;
    assert_success(first.post_v2(&by_external_ids(group, "subscribed", &["ada"])).await).await;
    let (first_dir, _first) = stop(first).await;
    let second = spawn_app_on(TestStore::Embedded, |_| {}).await;
    let (second_dir, _second) = stop(second).await;

    let database = TestDatabase::create();
    copies(&first_dir, &database.url);
    let message = refused(&second_dir, &database.url, &[]);
    assert!(message.contains("holds a copy of another store"), "{message}");
    assert!(message.contains(&first_dir.canonicalize().unwrap().display().to_string()), "{message}");
    assert_eq!(rows_in(&database.url, "catalog").await, 3, "the other store added nothing");

    // The same store, written to after its copy: not the store the copy is of any more.
    {
        let store =
            Store::open(&DatabaseLocation::Embedded(first_dir.clone()), &StoreOptions::default(), &Policy::default())
                .await
                .unwrap();
        let workspace = store.load_catalog().await.unwrap().workspaces[0].id;
        let profile = consentry::store::ProfileImport {
            external_id: consentry::domain::identifiers::ExternalId::parse("late").unwrap(),
            email: None,
            phone: None,
        };
        store.import_profiles(workspace, vec![profile]).await.unwrap();
        store.close().await;
    }
    let message = refused(&first_dir, &database.url, &[]);
    assert!(message.contains("has changed since this database's copy of it began"), "{message}");
    assert_eq!(rows_in(&database.url, "profiles").await, 1);

    // A database that a server (or an admin command) has written to.
    let used = TestDatabase::create();
    let created = Command::new(BIN)
        .env_remove("CONSENTRY_DATABASE_URL")
        .args(["--database", &used.url, "workspaces", "create", "acme"])
        .output()
        .expect("the binary runs");
    assert!(created.status.success(), "{}", text(&created.stderr));
    let message = refused(&second_dir, &used.url, &[]);
    assert!(
        message.contains("already holds data that is not from a copy of this store (in tables catalog)"),
        "{message}"
    );
    assert_eq!(rows_in(&used.url, "catalog").await, 1);
    assert_eq!(rows_in(&used.url, "store_copy").await, 0);
}

#[tokio::test]
async fn a_store_that_a_running_server_holds_is_refused_with_a_message_to_stop_the_server() {
    let app = spawn_app_on(TestStore::Embedded, |_| {}).await;
    // Refused before any connection: the target need not exist.
    let message = refused(&data_dir(&app), "postgres://postgres@127.0.0.1:1/none", &[]);
    assert!(message.contains("--from"), "{message}");
    assert!(message.contains("in use by a running Consentry server; stop the server first"), "{message}");
    let _ = app.shutdown().await;
}

#[test]
fn bad_flags_are_refused_naming_the_flag_and_a_missing_store_is_not_created() {
    let empty = tempfile::tempdir().unwrap();
    let store = empty.path();
    let url = "postgres://postgres@127.0.0.1:1/none";
    for to in ["/var/lib/consentry", "mysql://db/consentry", "redis://127.0.0.1"] {
        let message = refused(store, to, &[]);
        assert!(message.contains(&format!("--to {to:?}: not a PostgreSQL URL")), "{to}: {message}");
    }
    let message = refused(store, "postgres://postgres@127.0.0.1:5432/x?sslmode=nonsense", &[]);
    assert!(message.contains("--to: invalid PostgreSQL URL"), "{message}");
    for size in ["0", "100001", "many"] {
        let message = refused(store, url, &["--batch-size", size]);
        assert!(message.contains("--batch-size"), "{size}: {message}");
    }
    let missing = store.join("nothing-here");
    let message = refused(&missing, url, &[]);
    assert!(message.contains(&format!("--from {}: no such directory", missing.display())), "{message}");
    assert!(!missing.exists(), "a store was created");
    let message = refused(store, url, &[]);
    assert!(message.contains("the directory holds no embedded store"), "{message}");
    assert_eq!(std::fs::read_dir(store).unwrap().count(), 0, "the empty directory was written to");
    // A store that exists but whose database is unreachable is named by host and database.
    let app_dir = tempfile::tempdir().unwrap();
    let created = Command::new(BIN)
        .env_remove("CONSENTRY_DATABASE_URL")
        .arg("--database")
        .arg(app_dir.path())
        .args(["workspaces", "create", "acme"])
        .output()
        .unwrap();
    assert!(created.status.success());
    let message = refused(app_dir.path(), "postgres://someone:secret@127.0.0.1:1/none", &[]);
    assert!(message.contains("--to: cannot connect to PostgreSQL at 127.0.0.1:1/none"), "{message}");
    assert!(!message.contains("secret"), "the password is shown: {message}");
}

/// `ledger verify`'s output on `target` (a data directory or a database URL), which must pass.
fn ledger_verified(target: &str) -> String {
    let output = Command::new(BIN)
        .env_remove("CONSENTRY_DATABASE_URL")
        .args(["--database", target, "ledger", "verify"])
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{} {}", text(&output.stdout), text(&output.stderr));
    text(&output.stdout)
}

#[tokio::test]
async fn every_chain_copied_into_postgres_verifies_there_anchors_of_expired_records_included() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let source = source_with_history().await;
    let news = source.groups[0];
    for state in ["unsubscribed", "subscribed", "unsubscribed"] {
        assert_success(source.app.post_v2(&by_external_ids(news, state, &["ada"])).await).await;
    }
    // Ledger retention leaves chains that start from an anchor: the copy must keep it.
    let app = &source.app;
    app.catalog
        .set_ledger_retention("default", consentry::domain::tenant::LedgerRetention::days(1).unwrap())
        .await
        .unwrap();
    let later = consentry::domain::time::Timestamp(app.clock.now().0 + 3 * 86_400 * 1_000_000);
    let expired = consentry::server::expire_ledgers(&app.store, &app.catalog, later).await.unwrap();
    assert!(expired >= 3, "ada's earlier records expired: {expired}");
    let key = source.app.key.clone();
    let (dir, _kept) = stop(source.app).await;
    let before = ledger_verified(&dir.display().to_string());
    assert!(before.starts_with("ok\t"), "{before}");

    let database = TestDatabase::create();
    copies(&dir, &database.url);
    assert_eq!(ledger_verified(&database.url), before, "the same chains and records verify in PostgreSQL");

    // Writes on the copy continue the copied chains, which still verify.
    let copy = serve_copy(database, &key).await;
    assert_success(copy.post_v2(&by_external_ids(news, "subscribed", &["ada"])).await).await;
    let check = copy
        .store
        .verify_ledger(None, std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)))
        .await
        .expect("the walk reads");
    assert_eq!(check.first_bad, None);
    let records: u64 = before.trim().rsplit('\t').next().unwrap().parse().unwrap();
    assert_eq!(check.records, records + 1);
    let _ = copy.shutdown().await;
}
