//! Backups of the embedded store with the real binary: `consentry backup` through a running
//! server's admin socket while clients write, `consentry restore` into a new data directory,
//! and a server started on the restored copy. PostgreSQL is backed up with its own tools.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use consentry::domain::ids::GroupId;

use crate::admin_cli::{consentry, fails, first_start_key, ok, only_uuid, Server};
use crate::helpers::{embedded_only, StoreLocation};
use crate::storage_faults::{assert_all_subscribed, default_workspace, write_until};

// Two workers: the admin commands below block one while the writers run on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_every_change_acknowledged_before_it_began_with_chains_that_verify() {
    if !embedded_only() {
        return; // see a_postgres_store_is_not_backed_up_by_consentry_but_by_postgres_tools
    }
    let dir = StoreLocation::new();
    let key = first_start_key(dir.path());
    let mut server = Server::start(dir.path());
    let group = only_uuid(&ok(
        dir.path(),
        &["groups", "create", "--workspace", "default", "--name", "news", "--channel", "email"],
    ))
    .to_string();
    let ws = default_workspace(dir.path());
    let scratch = tempfile::tempdir().unwrap();
    let (backup, restored) = (scratch.path().join("backup"), scratch.path().join("restored"));

    // Writers run through the whole backup (bounded, in case the backup never comes, and
    // below the workspace's 5,000 sets a minute, so that no answer is a 429).
    let stop = Arc::new(AtomicBool::new(false));
    let writers = {
        let (url, key, group, stop) = (server.url(), key.clone(), group.clone(), Arc::clone(&stop));
        tokio::spawn(async move { write_until(url, &key, &group, "load", stop, 1_000).await })
    };
    // Until a good number is acknowledged before the backup begins: the ledger walk, through
    // the server, counts the change records.
    crate::helpers::eventually("writes acknowledged before the backup", std::time::Duration::from_secs(60), || {
        let out = ok(dir.path(), &["ledger", "verify"]);
        let records: u64 = out.trim_end().split('\t').nth(2).and_then(|n| n.parse().ok()).unwrap_or(0);
        std::future::ready((records >= 200).then_some(()))
    })
    .await;
    let began = Instant::now();
    let backed_up = {
        let (dir, backup) = (dir.path().to_path_buf(), backup.clone());
        tokio::task::spawn_blocking(move || ok(&dir, &["backup", "--to", backup.to_str().unwrap()])).await.unwrap()
    };
    stop.store(true, Ordering::Relaxed);
    let outcome = writers.await.unwrap();
    assert!(backed_up.starts_with("ok\t"), "{backed_up}");
    assert!(outcome.refused.is_empty(), "the backup did not disturb the writers: {:?}", outcome.refused);
    let before: BTreeSet<String> =
        outcome.acknowledged.iter().filter(|(_, at)| *at < began).map(|(id, _)| id.clone()).collect();
    let after = outcome.acknowledged.len() - before.len();
    assert!(before.len() >= 200, "{} writes acknowledged before the backup", before.len());
    assert!(after > 0, "writes went on during the backup");

    // A backup never lands on data: a non-empty target is refused, the copy untouched.
    let refused = fails(dir.path(), &["backup", "--to", backup.to_str().unwrap()]);
    assert!(refused.contains("is not empty"), "{refused}");
    let (status, _, err) = server.stop_with("TERM");
    assert!(status.success(), "{err}");

    let output = consentry()
        .args(["restore", "--from", backup.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()])
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "restore failed: {err}");
    assert!(out.starts_with("ok\t"), "the restored ledger verifies: {out} {err}");
    let output = consentry()
        .args(["restore", "--from", backup.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success(), "a restore over data is refused");
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not empty"));

    // The server starts on the restored copy, and its ledger verifies through it.
    let mut on_copy = Server::start(&restored);
    let verified = ok(&restored, &["ledger", "verify"]);
    assert!(verified.starts_with("ok\t"), "{verified}");
    let (status, _, err) = on_copy.stop_with("TERM");
    assert!(status.success(), "{err}");

    let group = GroupId::parse(&group).expect("a group id");
    assert_all_subscribed(&restored, ws, group, &before).await;
}

#[test]
fn a_backup_of_a_stopped_store_is_made_directly_and_a_directory_that_is_not_a_backup_is_not_restored() {
    if !embedded_only() {
        return;
    }
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);
    let scratch = tempfile::tempdir().unwrap();
    let backup = scratch.path().join("backup");

    let out = ok(dir.path(), &["backup", "--to", backup.to_str().unwrap()]);
    assert!(out.starts_with("ok\t"), "{out}");
    assert!(backup.join("consentry-backup.json").exists(), "the manifest marks a finished backup");

    let output = consentry()
        .args(["restore", "--from", dir.path().to_str().unwrap(), "--data-dir"])
        .arg(scratch.path().join("restored"))
        .output()
        .unwrap();
    assert!(!output.status.success(), "a data directory without a manifest is not a backup");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("is not a finished Consentry backup"), "{err}");

    // A server may also start on the backup itself.
    let mut on_backup = Server::start(&backup);
    let rows = crate::admin_cli::table(&ok(&backup, &["workspaces", "list"]));
    crate::admin_cli::row(&rows, "name", "acme");
    let (status, _, err) = on_backup.stop_with("TERM");
    assert!(status.success(), "{err}");
}

#[test]
fn a_postgres_store_is_not_backed_up_by_consentry_but_by_postgres_tools() {
    if embedded_only() {
        return;
    }
    let dir = StoreLocation::new();
    let scratch = tempfile::tempdir().unwrap();
    let message = fails(dir.path(), &["backup", "--to", scratch.path().join("b").to_str().unwrap()]);
    assert!(message.contains("pg_basebackup") && message.contains("pg_dump"), "{message}");
}
