//! The change stream to NATS JetStream (`serve --stream`), against a real `nats-server` with
//! JetStream that the test starts on a free port with a store of its own: every event is
//! published once per `Nats-Msg-Id` to `consentry.<workspace id>.<event_type>`, and a NATS
//! restart in the middle of the run loses nothing. Without `nats-server` the test is skipped,
//! saying so, except under `CI=true`, where it fails.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use consentry::domain::subscription::Channel;
use consentry::stream::nats;
use serde_json::{json, Value};

use crate::helpers::{assert_success, by_external_ids, eventually, spawn_app_with};

/// A `nats-server -js` of the test's own, stopped (SIGTERM, as a restart does) when dropped.
struct NatsServer {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl NatsServer {
    /// Starts it on `port` with its JetStream store in `dir`; `None` (skipped) without the
    /// binary, outside CI.
    async fn start(port: u16, dir: &std::path::Path) -> Option<NatsServer> {
        let spawned = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("nats-server is needed under CI=true (.ci/run installs it): {e}")
            }
            Err(e) => {
                eprintln!("skipped: no nats-server to run ({e})");
                return None;
            }
        };
        let server = NatsServer { child, port, dir: dir.to_path_buf() };
        eventually("nats-server answers", Duration::from_secs(20), || async {
            nats::Connection::connect(&server.url()).await.ok().map(|_| ())
        })
        .await;
        Some(server)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops it and waits for it to exit.
    fn stop(mut self) -> (u16, std::path::PathBuf) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        (self.port, self.dir.clone())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every message of the stream: subject, `Nats-Msg-Id` and the event.
async fn stream_messages(url: &str) -> Vec<(String, String, Value)> {
    let mut client = nats::Connection::connect(url).await.expect("a consumer connects");
    let info: Value = serde_json::from_slice(
        &client.request(&format!("$JS.API.STREAM.INFO.{}", nats::STREAM), None, b"").await.unwrap(),
    )
    .unwrap();
    let Some(last) = info["state"]["last_seq"].as_u64() else { return Vec::new() };
    let mut out = Vec::new();
    for seq in 1..=last {
        let get = json!({ "seq": seq }).to_string();
        let reply = client.request(&format!("$JS.API.STREAM.MSG.GET.{}", nats::STREAM), None, get.as_bytes()).await;
        let reply: Value = serde_json::from_slice(&reply.unwrap()).unwrap();
        let message = &reply["message"];
        let b64 = |v: &Value| base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or("")).unwrap();
        let headers = String::from_utf8(b64(&message["hdrs"])).unwrap();
        let id = headers
            .lines()
            .find_map(|l| l.strip_prefix("Nats-Msg-Id: "))
            .unwrap_or_else(|| panic!("a Nats-Msg-Id header: {headers:?}"))
            .to_string();
        let event: Value = serde_json::from_slice(&b64(&message["data"])).unwrap();
        out.push((message["subject"].as_str().unwrap().to_string(), id, event));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_published_once_per_msg_id_and_a_nats_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats_server) = NatsServer::start(free_port(), dir.path()).await else { return };
    let url = nats_server.url();
    let app = spawn_app_with(|s| s.stream = Some(url.clone())).await;
    let news = app.create_group("news", Channel::Email).await;
    app.import(&[("gone", Some("gone@example.com"), None)]).await;

    let post = |n: usize| {
        let ids = [format!("a{n}"), format!("b{n}")];
        by_external_ids(news, if n.is_multiple_of(2) { "subscribed" } else { "unsubscribed" }, &[&ids[0], &ids[1]])
    };
    for n in 0..5 {
        assert_success(app.post_v2(&post(n)).await).await;
    }
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["gone"])).await).await;
    eventually("the first events in the stream", Duration::from_secs(20), || async {
        (stream_messages(&url).await.len() >= 11).then_some(())
    })
    .await;

    // NATS goes away; changes go on, and so does a deletion.
    let (port, store) = nats_server.stop();
    for n in 5..10 {
        assert_success(app.post_v2(&post(n)).await).await;
    }
    let (status, body) = app.delete_users(&["gone"]).await;
    assert_eq!(status, axum::http::StatusCode::CREATED, "{body}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _nats_server = NatsServer::start(port, &store).await.expect("nats-server starts again");
    for n in 10..12 {
        assert_success(app.post_v2(&post(n)).await).await;
    }

    let changes = app.changes().await;
    let expected = changes.len() + 1;
    let messages = eventually("every event in the stream", Duration::from_secs(30), || async {
        let messages = stream_messages(&url).await;
        (messages.len() >= expected).then_some(messages)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stream_messages(&url).await.len(), expected, "no event stored twice");

    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (_, id, _) in &messages {
        *by_id.entry(id.as_str()).or_default() += 1;
    }
    assert!(by_id.values().all(|&n| n == 1), "each Msg-Id once: {by_id:?}");
    let change_ids: HashSet<String> = changes.iter().map(|c| c.id.0.to_string()).collect();
    let workspace = app.workspace.to_string();
    let mut deletions = 0;
    for (subject, id, event) in &messages {
        assert_eq!(event["id"], id.as_str(), "the Msg-Id is the event id");
        let event_type = event["event_type"].as_str().unwrap();
        assert_eq!(subject, &format!("consentry.{workspace}.{event_type}"));
        match event_type {
            "users.behaviors.subscriptiongroup.StateChange" => assert!(change_ids.contains(id), "{event}"),
            "users.UserDeleteRequest" => deletions += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(deletions, 1, "the deletion is published");
    let listed = app.catalog.clone();
    let out = consentry::admin::execute(
        &listed,
        &consentry::admin::AdminRequest::Webhooks(consentry::stream::admin::WebhooksRequest::List),
    )
    .await
    .unwrap();
    assert!(out.stdout.contains("\tnats\t") && out.stdout.contains(&url), "{}", out.stdout);
    app.shutdown().await;
}
