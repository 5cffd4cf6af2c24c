//! `consentry ledger export`: the records of `GET /consent/history`, as JSON lines or CSV, from
//! a store a server is running on (the embedded store through the server's admin socket).

use std::process::Command;

use consentry::domain::subscription::Channel;
use consentry::store::Store;
use serde_json::Value;

use crate::consent_history::all_pages;
use crate::helpers::*;

fn export(dir: &std::path::Path, args: &[&str]) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_consentry"))
        .env_remove("CONSENTRY_DATABASE_URL")
        .arg("--database")
        .arg(dir)
        .args(["ledger", "export", "--workspace", "default"])
        .args(args)
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8");
    assert!(output.status.success(), "{stderr}");
    (String::from_utf8(output.stdout).expect("UTF-8"), stderr)
}

#[tokio::test]
async fn export_through_the_running_server_streams_the_records_history_shows_as_jsonl_and_csv() {
    if !embedded_only() {
        return;
    }
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    for i in 0..1203 {
        let who = format!("user-{}", i % 3);
        let state = if (i / 3) % 2 == 0 { "subscribed" } else { "unsubscribed" };
        assert_success(app.post_v2(&by_external_ids(group, state, &[&who])).await).await;
    }
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["x,\"y\""])).await).await;
    let Store::Embedded(store) = &app.store else { unreachable!() };
    let dir = store.path().to_path_buf();

    let (jsonl, stderr) = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || export(&dir, &["--format", "jsonl"])
    })
    .await
    .unwrap();
    assert!(stderr.contains("exported 1,204 records"), "{stderr}");
    let lines: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 1204, "more than one page of 1,000");
    let history = all_pages(&app, "external_id=user-1", 1000).await;
    let exported: Vec<&Value> = lines.iter().filter(|r| r["external_id"] == "user-1").collect();
    assert_eq!(exported, history.iter().collect::<Vec<_>>());

    let (csv, _) = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || export(&dir, &["--format", "csv", "--external-id", "x,\"y\""])
    })
    .await
    .unwrap();
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows[0].starts_with("id,time,subscription_group_id,channel,external_id,email,phone,"));
    assert!(rows[1].contains(",email,\"x,\"\"y\"\"\",,,,subscribed,api,"), "{}", rows[1]);
}

/// The same writes, at the same manual times, on `app`: 1,050 records of profiles (more than
/// one page of the export), an orphaned email's, an orphaned phone's, and a profile's second.
async fn write_the_same_ledger(app: &TestApp) {
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;
    for batch in 0..21 {
        let names: Vec<String> = (0..50).map(|i| format!("u{}", batch * 50 + i)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_success(app.post_v2(&by_external_ids(news, "subscribed", &names)).await).await;
        app.clock.advance(std::time::Duration::from_secs(1));
    }
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["orphan@example.com"])).await).await;
    app.clock.advance(std::time::Duration::from_secs(1));
    assert_success(app.post_v2(&one_entry(sms, "subscribed", "phones", &["+12223334444"])).await).await;
    app.clock.advance(std::time::Duration::from_secs(1));
    assert_success(app.post_v2(&by_external_ids(news, "unsubscribed", &["u7"])).await).await;
}

/// What `ledger export` needs to reach `app`'s store: its directory (the embedded store, held
/// by the server, so the export goes through its admin socket) or its database URL.
fn target(app: &TestApp) -> std::path::PathBuf {
    match &app.store {
        Store::Embedded(store) => store.path().to_path_buf(),
        Store::Postgres(_) => app.database_url().expect("a PostgreSQL app has a URL").into(),
    }
}

/// An exported JSON line without what differs between two stores given the same writes: the
/// generated ids (of records, requests, keys, groups) and the hashes that cover them.
fn comparable(line: &str) -> Value {
    let mut record: Value = serde_json::from_str(line).expect("a JSON line");
    for field in ["id", "hash", "previous_hash", "request_id", "api_key_id", "subscription_group_id"] {
        record.as_object_mut().expect("an object").remove(field);
    }
    record
}

#[tokio::test]
async fn export_gives_the_same_records_on_postgres_as_on_the_embedded_store_while_a_server_runs() {
    let mut exports: Vec<Vec<(String, Vec<Value>)>> = Vec::new();
    for store in [TestStore::Embedded, TestStore::Postgres] {
        let clock = manual_clock();
        let app = spawn_app_on(store, |s| s.clock = clock.clone()).await;
        write_the_same_ledger(&app).await;
        let start = manual_clock().now();
        let (since, until) = (
            start.plus(std::time::Duration::from_secs(5)).to_rfc3339(),
            start.plus(std::time::Duration::from_secs(10)).to_rfc3339(),
        );
        let target = target(&app);
        let runs: Vec<Vec<String>> = [
            vec!["--format", "jsonl"],
            vec!["--format", "jsonl", "--external-id", "u7"],
            vec!["--format", "jsonl", "--email", "orphan@example.com"],
            vec!["--format", "jsonl", "--phone", "+12223334444"],
            vec!["--format", "jsonl", "--since", &since, "--until", &until],
            vec!["--format", "jsonl", "--external-id", "u7", "--since", &since],
        ]
        .iter()
        .map(|args| args.iter().map(|a| a.to_string()).collect())
        .collect();
        let mut outputs = Vec::new();
        for args in runs {
            let (out, stderr) = tokio::task::spawn_blocking({
                let (target, args) = (target.clone(), args.clone());
                move || export(&target, &args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .await
            .unwrap();
            let count = out.lines().count().to_string();
            let count = if count.len() > 3 { format!("{},{}", &count[..1], &count[1..]) } else { count };
            assert!(stderr.contains(&format!("exported {count} records")), "{args:?}: {stderr}");
            outputs.push((args.join(" "), out.lines().map(comparable).collect::<Vec<_>>()));
            if args.len() == 4 && args[2] == "--external-id" {
                let history = all_pages(&app, "external_id=u7", 1000).await;
                let exported: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
                assert_eq!(exported, history, "{store:?}: the export of a subject is its history");
            }
        }
        let counts: Vec<usize> = outputs.iter().map(|(_, lines)| lines.len()).collect();
        assert_eq!(counts, [1053, 2, 1, 1, 250, 1], "{store:?}");

        let (csv, _) = tokio::task::spawn_blocking(move || export(&target, &["--format", "csv"])).await.unwrap();
        let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(rows.len(), 1054, "{store:?}: a header and a row per record");
        exports.push(outputs);
        app.shutdown().await;
    }
    for (embedded, postgres) in exports[0].iter().zip(&exports[1]) {
        assert_eq!(embedded, postgres, "the same export on both stores");
    }
}
