//! Crash-only on storage faults: a failed fsync of the embedded store makes the real binary stop
//! taking writes and exit non-zero within a second, never answering 500 for ever; the restart
//! replays the journal and has every write it acknowledged. The fault is injected by the
//! `failpoints` build of the binary (the test build), while a file exists. A PostgreSQL outage
//! is waited out instead (tests/api/postgres_outage.rs).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consentry::domain::ids::{GroupId, WorkspaceId};
use consentry::domain::subscription::SubscriptionState;
use consentry::store::{DatabaseLocation, Policy, Store, StoreOptions};
use reqwest::StatusCode;

use crate::admin_cli::{body, cell, first_start_key, ok, only_uuid, post, row, table, Server};
use crate::helpers::{client, embedded_only, state_in, StoreLocation};

/// Writers posting at once, each its own sequence of profiles.
const WRITERS: usize = 4;

/// What the writers saw: the external ids whose subscription was acknowledged (a 2xx), each
/// with when the answer came, and every other answer.
#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) acknowledged: Vec<(String, Instant)>,
    pub(crate) refused: Vec<StatusCode>,
}

/// Posts `subscribed` for `prefix-W-N` profiles from [`WRITERS`] writers, one request after
/// another each, until `stop` is set, a request fails to reach the server, or `limit` requests
/// each were made.
pub(crate) async fn write_until(
    url: String,
    key: &str,
    group: &str,
    prefix: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
    limit: usize,
) -> Outcome {
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let http = client();
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (http, outcome, stop) = (http.clone(), Arc::clone(&outcome), Arc::clone(&stop));
        let (url, key, group, prefix) = (url.clone(), key.to_string(), group.to_string(), prefix.to_string());
        writers.push(tokio::spawn(async move {
            for n in 0..limit {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let id = format!("{prefix}-{writer}-{n}");
                let sent = http.post(&url).bearer_auth(&key).json(&body(&group, "subscribed", &[&id])).send().await;
                let Ok(response) = sent else { break };
                let status = response.status();
                let mut outcome = outcome.lock().unwrap();
                if status.is_success() {
                    outcome.acknowledged.push((id, Instant::now()));
                } else {
                    outcome.refused.push(status);
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("a writer finished");
    }
    Arc::into_inner(outcome).unwrap().into_inner().unwrap()
}

/// The default workspace's id, by `workspaces list`.
pub(crate) fn default_workspace(dir: &Path) -> WorkspaceId {
    let rows = table(&ok(dir, &["workspaces", "list"]));
    let id = cell(&rows, row(&rows, "name", "default"), "id");
    WorkspaceId::parse(id).expect("a workspace id")
}

/// Checks, with the store opened in this process (no server holds it), that every id in
/// `acknowledged` is subscribed to `group`.
pub(crate) async fn assert_all_subscribed(
    dir: &Path,
    ws: WorkspaceId,
    group: GroupId,
    acknowledged: &BTreeSet<String>,
) {
    let store =
        Store::open(&DatabaseLocation::Embedded(dir.to_path_buf()), &StoreOptions::default(), &Policy::default())
            .await
            .expect("the store opens");
    let mut missing = Vec::new();
    for id in acknowledged {
        if state_in(&store, ws, id, group).await != Some(SubscriptionState::Subscribed) {
            missing.push(id.clone());
        }
    }
    store.close().await;
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes are missing: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_makes_the_server_exit_74_within_a_second_and_the_restart_has_every_acknowledged_write() {
    if !embedded_only() {
        return; // PostgreSQL's outages are retried, not crashed on: see postgres_outage
    }
    let dir = StoreLocation::new();
    let key = first_start_key(dir.path());
    let trigger_dir = tempfile::tempdir().unwrap();
    let trigger = trigger_dir.path().join("fail-fsync");
    let mut server = Server::start_with_env(dir.path(), &[], &[("CONSENTRY_FAILPOINT_FSYNC", trigger.as_os_str())]);
    let group = only_uuid(&ok(
        dir.path(),
        &["groups", "create", "--workspace", "default", "--name", "news", "--channel", "email"],
    ))
    .to_string();
    let ws = default_workspace(dir.path());

    // Writes go on from several clients; after some are acknowledged, fsync starts failing.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fault = {
        let (trigger, url, key, group) = (trigger.clone(), server.url(), key.clone(), group.clone());
        tokio::spawn(async move {
            let http = client();
            // Some writes first, so that there is something to lose.
            for n in 0..20 {
                let response = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&body(&group, "subscribed", &[&format!("first-{n}")]))
                    .send();
                assert!(response.await.unwrap().status().is_success());
            }
            std::fs::write(&trigger, b"").unwrap();
            Instant::now()
        })
    };
    let outcome = write_until(server.url(), &key, &group, "during", Arc::clone(&stop), 100_000).await;
    let armed_at = fault.await.unwrap();
    let (status, _, err) =
        server.exit_within(Duration::from_secs(10)).expect("the server exits by itself after the fault");
    let exited_after = armed_at.elapsed();

    assert_eq!(status.code(), Some(74), "exit code EX_IOERR; stderr:\n{err}");
    assert!(exited_after < Duration::from_secs(1), "exited {exited_after:?} after the fault");
    assert!(err.contains("storage fault: a commit failed"), "the fault is logged: {err}");
    assert!(
        outcome.refused.iter().all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "requests the server could not commit are answered 503, never 500: {:?}",
        outcome.refused
    );

    // A supervisor's restart: the journal is replayed and the server serves again.
    std::fs::remove_file(&trigger).unwrap();
    let mut again = Server::start(dir.path());
    let verified = ok(dir.path(), &["ledger", "verify"]);
    assert!(verified.starts_with("ok\t"), "every chain holds after the restart: {verified}");
    let response = post(&client(), &again, &key, &body(&group, "subscribed", &["after"])).await;
    assert!(response.status().is_success(), "the restarted server takes writes: {}", response.status());
    let (status, _, err) = again.stop_with("TERM");
    assert!(status.success(), "{err}");

    let mut acknowledged: BTreeSet<String> = outcome.acknowledged.into_iter().map(|(id, _)| id).collect();
    acknowledged.extend((0..20).map(|n| format!("first-{n}")));
    acknowledged.insert("after".into());
    let group = GroupId::parse(&group).expect("a group id");
    assert_all_subscribed(dir.path(), ws, group, &acknowledged).await;
}

#[test]
fn a_poisoned_engine_makes_an_idle_server_exit_74_within_a_second() {
    if !embedded_only() {
        return;
    }
    let dir = StoreLocation::new();
    let trigger_dir = tempfile::tempdir().unwrap();
    let trigger = trigger_dir.path().join("poison");
    let mut server = Server::start_with_env(dir.path(), &[], &[("CONSENTRY_FAILPOINT_POISON", trigger.as_os_str())]);

    // No request comes: the server finds the poisoned engine by itself.
    std::fs::write(&trigger, b"").unwrap();
    let armed_at = Instant::now();
    let (status, _, err) = server.exit_within(Duration::from_secs(10)).expect("the idle server exits by itself");
    let exited_after = armed_at.elapsed();

    assert_eq!(status.code(), Some(74), "{err}");
    assert!(exited_after < Duration::from_secs(1), "exited {exited_after:?} after the engine was poisoned");
    assert!(err.contains("storage fault: the engine refuses writes"), "{err}");
    std::fs::remove_file(&trigger).unwrap();
    let mut again = Server::start(dir.path());
    let (status, _, err) = again.stop_with("TERM");
    assert!(status.success(), "the restart serves and stops cleanly: {err}");
}
