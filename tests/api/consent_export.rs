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
