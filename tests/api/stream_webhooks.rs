//! The change stream's webhooks (issue 11), against a real receiver on 127.0.0.1: every change
//! delivered once, signed (checked with the Standard Webhooks project's own library), in
//! ledger order; retries on the schedule, moved along by a manual clock; 410 disables; a
//! rotation signs with both secrets; private addresses are refused unless allowed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use consentry::admin::{execute, AdminRequest};
use consentry::domain::subscription::Channel;
use consentry::domain::time::Clock;
use consentry::stream::admin::WebhooksRequest;
use consentry::stream::destination::Format;
use serde_json::Value;

use crate::admin_cli::{first_start_key, ok, only_uuid, Server};
use crate::helpers::{
    assert_success, by_external_ids, client, eventually, one_entry, spawn_app_with, StoreLocation, TestApp,
    TestDatabase, V2_PATH,
};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    headers: HeaderMap,
    body: String,
}

/// The answers a receiver gives before its default 204: status and `retry-after`.
type Script = Arc<Mutex<VecDeque<(u16, Option<&'static str>)>>>;

/// An HTTP receiver answering from a script (then 204), recording every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    script: Script,
}

impl Receiver {
    async fn start() -> Receiver {
        Receiver::start_slow(Duration::ZERO).await
    }

    /// A receiver that takes `delay` to answer each request.
    async fn start_slow(delay: Duration) -> Receiver {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let script: Script = Arc::default();
        let (g, s) = (Arc::clone(&got), Arc::clone(&script));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (g, s) = (Arc::clone(&g), Arc::clone(&s));
                async move {
                    tokio::time::sleep(delay).await;
                    g.lock().unwrap().push(Got { headers, body });
                    let (status, retry_after) = s.lock().unwrap().pop_front().unwrap_or((204, None));
                    let mut response = axum::response::Response::new(axum::body::Body::empty());
                    *response.status_mut() = StatusCode::from_u16(status).unwrap();
                    if let Some(after) = retry_after {
                        response.headers_mut().insert("retry-after", after.parse().unwrap());
                    }
                    response
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, got, script }
    }

    fn answer(&self, status: u16, retry_after: Option<&'static str>) {
        self.script.lock().unwrap().push_back((status, retry_after));
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until the receiver has had `n` requests.
    async fn wait_for(&self, n: usize) -> Vec<Got> {
        eventually(&format!("{n} requests"), Duration::from_secs(20), || async {
            let got = self.got();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

/// The `webhook-signature` of `got` holds the signature that `secret` makes, as the Standard
/// Webhooks library computes it (independent of the server's code).
fn signed_with(got: &Got, secret: &str) -> bool {
    let header = |name: &str| got.headers.get(name).unwrap_or_else(|| panic!("a {name} header")).to_str().unwrap();
    let expected = standardwebhooks::Webhook::new(secret)
        .unwrap()
        .sign(header("webhook-id"), header("webhook-timestamp").parse().unwrap(), got.body.as_bytes())
        .unwrap();
    header("webhook-signature").split(' ').any(|s| s == expected)
}

async fn admin(app: &TestApp, request: WebhooksRequest) -> consentry::admin::AdminOutput {
    execute(&app.catalog, &AdminRequest::Webhooks(request)).await.expect("the webhooks command succeeds")
}

/// Creates a standard destination to `url`; its id and secret.
async fn create(app: &TestApp, url: &str, max_batch: Option<usize>) -> (String, String) {
    let out = admin(
        app,
        WebhooksRequest::Create {
            workspace: "default".into(),
            url: url.into(),
            format: Format::Standard,
            secret: None,
            bearer_token: None,
            events: Vec::new(),
            max_batch,
        },
    )
    .await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(lines[1].starts_with("whsec_"), "the secret is on the last line: {out:?}");
    (lines[0].to_string(), lines[1].to_string())
}

async fn list(app: &TestApp) -> String {
    admin(app, WebhooksRequest::List).await.stdout
}

fn events(got: &Got) -> Vec<Value> {
    let body: Value = serde_json::from_str(&got.body).unwrap();
    body["events"].as_array().unwrap().clone()
}

async fn private_app(clock: Option<Clock>) -> TestApp {
    spawn_app_with(|s| {
        s.allow_private_webhooks = true;
        if let Some(clock) = clock {
            s.clock = clock;
        }
    })
    .await
}

#[tokio::test]
async fn every_change_is_delivered_once_signed_and_in_ledger_order() {
    let app = private_app(None).await;
    let receiver = Receiver::start().await;
    let news = app.create_group("news", Channel::Email).await;
    app.import(&[("u1", Some("u1@example.com"), None)]).await;
    let (_, secret) = create(&app, &receiver.url, None).await;

    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u1", "u2"])).await).await;
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["o@example.com"])).await).await;
    assert_success(app.post_v2(&by_external_ids(news, "unsubscribed", &["u1"])).await).await;

    let changes = app.changes().await;
    assert_eq!(changes.len(), 4);
    let got = receiver.wait_for(4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_all = receiver.got();
    assert_eq!(got_all.len(), 4, "each message once");
    for g in &got {
        standardwebhooks::Webhook::new(&secret)
            .unwrap()
            .verify(g.body.as_bytes(), &g.headers)
            .expect("a valid signature");
        assert_eq!(g.headers["content-type"], "application/json");
    }
    let sent: Vec<Value> = got.iter().flat_map(events).collect();
    let ids: Vec<String> = sent.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    let mut expected: Vec<_> = changes.iter().map(|c| (c.at, c.id)).collect();
    expected.sort();
    assert_eq!(ids, expected.iter().map(|(_, id)| id.0.to_string()).collect::<Vec<_>>(), "ledger order");
    for (g, e) in got.iter().zip(&sent) {
        assert_eq!(g.headers["webhook-id"].to_str().unwrap(), e["id"], "a single event's message id is its id");
    }
    let u1 = app.profile("u1").await.unwrap();
    let first = &sent[0];
    assert_eq!(first["event_type"], "users.behaviors.subscriptiongroup.StateChange");
    assert_eq!(first["user"]["user_id"], u1.id.0.to_string());
    assert_eq!(first["user"]["external_user_id"], "u1");
    assert_eq!(first["properties"]["email_address"], "u1@example.com");
    assert_eq!(first["properties"]["subscription_status"], "Subscribed");
    assert_eq!(first["properties"]["previous_status"], Value::Null);
    assert_eq!(first["properties"]["state_change_source"], "REST API");
    assert_eq!(first["properties"]["channel"], "email");
    assert_eq!(first["properties"]["app_group_id"], app.workspace.to_string());
    assert_eq!(first["properties"]["subscription_group_id"], news.to_string());
    let orphan = sent.iter().find(|e| e["properties"]["email_address"] == "o@example.com").expect("the orphan's event");
    assert_eq!(orphan["user"]["user_id"], Value::Null);
    let last = &sent[3];
    assert_eq!(last["properties"]["previous_status"], "Subscribed");
    assert_eq!(last["properties"]["subscription_status"], "Unsubscribed");
    app.shutdown().await;
}

#[tokio::test]
async fn a_batch_carries_up_to_max_batch_events_in_order() {
    let app = private_app(None).await;
    let receiver = Receiver::start().await;
    let news = app.create_group("news", Channel::Email).await;
    let (_, secret) = create(&app, &receiver.url, Some(100)).await;
    let ids: Vec<String> = (0..5).map(|i| format!("u{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &ids)).await).await;

    let got = eventually("five events", Duration::from_secs(20), || async {
        let got = receiver.got();
        (got.iter().map(|g| events(g).len()).sum::<usize>() == 5).then_some(got)
    })
    .await;
    assert!(got.iter().all(|g| signed_with(g, &secret)));
    let times: Vec<i64> =
        got.iter().flat_map(events).map(|e| e["properties"]["time_micros"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in order: {times:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn failures_are_retried_on_the_schedule_with_the_same_bytes() {
    let clock = Clock::manual(Clock::system().now());
    let app = private_app(Some(clock.clone())).await;
    let receiver = Receiver::start().await;
    let news = app.create_group("news", Channel::Email).await;
    let (_, secret) = create(&app, &receiver.url, None).await;
    receiver.answer(503, None);
    receiver.answer(429, Some("120"));
    receiver.answer(500, None);

    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u1"])).await).await;
    receiver.wait_for(1).await;
    // Not before the first wait of the schedule (5 s, up to a fifth more).
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.got().len(), 1, "no retry before its time");
    assert!(list(&app).await.contains("HTTP 503"), "{}", list(&app).await);
    clock.advance(Duration::from_secs(6));
    receiver.wait_for(2).await;
    // The 429 asked for 120 s: that, not the schedule, decides the next attempt.
    clock.advance(Duration::from_secs(100));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.got().len(), 2, "retry-after is honoured");
    clock.advance(Duration::from_secs(21));
    receiver.wait_for(3).await;
    // Third failure: the schedule's 30 minutes.
    clock.advance(Duration::from_secs(29 * 60));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.got().len(), 3);
    clock.advance(Duration::from_secs(7 * 60));
    let got = receiver.wait_for(4).await;

    assert!(got.iter().all(|g| g.body == got[0].body), "every attempt sends the same bytes");
    assert!(got.iter().all(|g| g.headers["webhook-id"] == got[0].headers["webhook-id"]), "one webhook-id");
    assert!(got.iter().all(|g| signed_with(g, &secret)));
    let stamps: Vec<i64> =
        got.iter().map(|g| g.headers["webhook-timestamp"].to_str().unwrap().parse().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "each attempt has its own timestamp: {stamps:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 4, "delivered: not sent again");
    app.shutdown().await;
}

#[tokio::test]
async fn a_410_disables_the_destination_and_a_400_drops_only_its_message() {
    let app = private_app(None).await;
    let receiver = Receiver::start().await;
    let news = app.create_group("news", Channel::Email).await;
    create(&app, &receiver.url, None).await;
    receiver.answer(400, None);
    receiver.answer(410, None);

    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u1"])).await).await;
    receiver.wait_for(1).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u2"])).await).await;
    receiver.wait_for(2).await;
    eventually("disabled", Duration::from_secs(10), || async { list(&app).await.contains("disabled").then_some(()) })
        .await;
    assert!(list(&app).await.contains("410"), "{}", list(&app).await);
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u3"])).await).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.got().len(), 2, "nothing goes to a disabled destination");
    app.shutdown().await;
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_for_a_day() {
    let clock = Clock::manual(Clock::system().now());
    let app = private_app(Some(clock.clone())).await;
    let receiver = Receiver::start().await;
    let news = app.create_group("news", Channel::Email).await;
    let (id, old) = create(&app, &receiver.url, None).await;
    let new = admin(&app, WebhooksRequest::RotateSecret { id: id.clone() }).await.stdout.trim().to_string();
    assert!(new.starts_with("whsec_") && new != old);

    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u1"])).await).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].headers["webhook-signature"].to_str().unwrap().split(' ').count(), 2);
    assert!(signed_with(&got[0], &old) && signed_with(&got[0], &new));

    clock.advance(Duration::from_secs(24 * 3600));
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u2"])).await).await;
    let got = receiver.wait_for(2).await;
    assert!(signed_with(&got[1], &new));
    assert!(!signed_with(&got[1], &old), "the old secret stops signing after 24 hours");
    app.shutdown().await;
}

#[tokio::test]
async fn a_destination_on_a_private_address_is_refused_unless_allowed() {
    let app = spawn_app_with(|_| {}).await;
    let receiver = Receiver::start().await;
    let news = app.create_group("news", Channel::Email).await;
    create(&app, &receiver.url, None).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u1"])).await).await;

    eventually("disabled", Duration::from_secs(10), || async { list(&app).await.contains("disabled").then_some(()) })
        .await;
    assert!(list(&app).await.contains("--allow-private-webhooks"), "{}", list(&app).await);
    assert!(receiver.got().is_empty(), "nothing reached the private address");
    app.shutdown().await;
}

#[tokio::test]
async fn a_url_with_credentials_or_another_scheme_is_refused() {
    let app = spawn_app_with(|_| {}).await;
    for (url, says) in [("https://u:p@example.com/", "password"), ("ftp://example.com/", "scheme")] {
        let request = WebhooksRequest::Create {
            workspace: "default".into(),
            url: url.into(),
            format: Format::Standard,
            secret: None,
            bearer_token: None,
            events: Vec::new(),
            max_batch: None,
        };
        let err = execute(&app.catalog, &AdminRequest::Webhooks(request)).await.unwrap_err().to_string();
        assert!(err.contains(says), "{url}: {err}");
    }
    app.shutdown().await;
}

/// The distinct event ids the receiver got.
fn event_ids(receiver: &Receiver) -> std::collections::HashSet<String> {
    receiver.got().iter().flat_map(events).map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_server_during_delivery_loses_no_event() {
    let dir = StoreLocation::new();
    let key = first_start_key(dir.path());
    let group = only_uuid(&ok(
        dir.path(),
        &["groups", "create", "--workspace", "default", "--name", "news", "--channel", "email"],
    ));
    let receiver = Receiver::start_slow(Duration::from_millis(30)).await;
    let mut server = Server::start_with(dir.path(), &["--allow-private-webhooks"]);
    let created = ok(
        dir.path(),
        &["webhooks", "create", "--workspace", "default", "--url", &receiver.url, "--format", "standard"],
    );
    assert!(created.lines().last().unwrap().starts_with("whsec_"), "{created}");
    crate::admin_cli::settle().await;

    let http = client();
    let url = format!("http://{}{V2_PATH}", server.addr);
    let mut expected = 0;
    for n in 0..8 {
        let ids: Vec<String> = (0..5).map(|k| format!("n{n}-k{k}")).collect();
        let body = serde_json::json!({ "subscription_groups": [ { "subscription_group_id": group.to_string(),
            "subscription_state": "subscribed", "external_ids": ids } ] });
        let response = http.post(&url).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201);
        expected += 5;
    }
    receiver.wait_for(3).await;
    let (status, _, _) = server.stop_with("KILL");
    assert!(!status.success(), "the server was killed");
    assert!(event_ids(&receiver).len() < expected, "the kill came during delivery");

    let mut server = Server::start_with(dir.path(), &["--allow-private-webhooks"]);
    eventually("every event after the restart", Duration::from_secs(60), || async {
        (event_ids(&receiver).len() == expected).then_some(())
    })
    .await;
    let (status, _, err) = server.stop_with("TERM");
    assert!(status.success(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_one_database_deliver_every_event_each_message_once() {
    let database = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let mut apps = Vec::new();
    for _ in 0..3 {
        let mut settings = consentry::config::Settings::for_tests(dir.path());
        settings.database = consentry::store::DatabaseLocation::Postgres(database.url.clone());
        settings.store.postgres.pool_size = 3;
        settings.allow_private_webhooks = true;
        settings.catalog_refresh_interval = Some(Duration::from_millis(100));
        apps.push(consentry::server::Application::build(settings).await.expect("a node starts"));
    }
    let key = apps.iter().find_map(|a| a.bootstrap_key().cloned()).expect("one node bootstraps").1;
    let catalog = apps[0].catalog();
    let group = catalog.create_group("default", "news", Channel::Email).await.unwrap().id;
    let request = WebhooksRequest::Create {
        workspace: "default".into(),
        url: receiver.url.clone(),
        format: Format::Standard,
        secret: None,
        bearer_token: None,
        events: Vec::new(),
        max_batch: Some(3),
    };
    execute(&catalog, &AdminRequest::Webhooks(request)).await.unwrap();
    let store = apps[0].store();
    let workspace = catalog.workspaces()[0].id;
    let urls: Vec<String> = apps.iter().map(|a| format!("http://{}{V2_PATH}", a.local_addr())).collect();
    let catalogs: Vec<_> = apps.iter().map(|a| a.catalog()).collect();
    let mut stops = Vec::new();
    let mut servers = Vec::new();
    for app in apps {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(tx);
        servers.push(tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        })));
    }
    eventually("every node's catalog has the group", Duration::from_secs(20), || async {
        catalogs.iter().all(|c| c.group(workspace, group).is_some()).then_some(())
    })
    .await;

    let http = client();
    for n in 0..30 {
        let body = serde_json::json!({ "subscription_groups": [ { "subscription_group_id": group.to_string(),
            "subscription_state": if n % 2 == 0 { "subscribed" } else { "unsubscribed" },
            "external_ids": [format!("u{}", n % 7), format!("v{n}")] } ] });
        let response = http.post(&urls[n % 3]).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
    let changes = store.inspect().change_records(workspace).await.unwrap();
    eventually("every event", Duration::from_secs(30), || async {
        (event_ids(&receiver).len() == changes.len()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.got();
    let sent: Vec<String> = got.iter().flat_map(events).map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(sent.len(), changes.len(), "each event once: {} sent for {} records", sent.len(), changes.len());
    let message_ids: std::collections::HashSet<_> = got.iter().map(|g| g.headers["webhook-id"].clone()).collect();
    assert_eq!(message_ids.len(), got.len(), "each message once");
    assert!(got.iter().all(|g| (1..=3).contains(&events(g).len())), "batches of 1 to 3");
    // Within a subject and group, events arrive in ledger order.
    let mut last: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    for e in got.iter().flat_map(events) {
        let subject = e["user"]["user_id"].as_str().unwrap().to_string();
        let at = e["properties"]["time_micros"].as_i64().unwrap();
        assert!(last.insert(subject, at).is_none_or(|before| before < at), "a subject's events in order");
    }
    for stop in stops {
        let _ = stop.send(());
    }
    for server in servers {
        server.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_replay_resends_exactly_its_range_with_the_original_ids() {
    let clock = Clock::manual(Clock::system().now());
    let app = private_app(Some(clock.clone())).await;
    let receiver = Receiver::start().await;
    let news = app.create_group("news", Channel::Email).await;
    let (id, secret) = create(&app, &receiver.url, None).await;
    let start = clock.now();
    for (n, user) in ["u1", "u2", "u3"].iter().enumerate() {
        if n > 0 {
            clock.advance(Duration::from_secs(10));
        }
        assert_success(app.post_v2(&by_external_ids(news, "subscribed", &[user])).await).await;
    }
    let first = receiver.wait_for(3).await;

    let replay = |since: String, until: Option<String>| WebhooksRequest::Replay { id: id.clone(), since, until };
    let since = start.plus(Duration::from_secs(5)).to_rfc3339();
    let until = start.plus(Duration::from_secs(15)).to_rfc3339();
    assert_eq!(admin(&app, replay(since, Some(until))).await.stdout, "1\n");
    let got = receiver.wait_for(4).await;
    assert_eq!(got[3].body, first[1].body, "the middle record, the same bytes");
    assert_eq!(got[3].headers["webhook-id"], first[1].headers["webhook-id"], "the same webhook-id");
    assert!(signed_with(&got[3], &secret));

    assert_eq!(admin(&app, replay(start.to_rfc3339(), None)).await.stdout, "3\n");
    let got = receiver.wait_for(7).await;
    let ids = |g: &[Got]| g.iter().map(|g| g.headers["webhook-id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&got[4..7]), ids(&first), "the whole range again, in order");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 7, "nothing more");
    app.shutdown().await;
}

#[tokio::test]
async fn a_global_email_change_is_a_global_state_change_only_for_destinations_that_take_it() {
    let app = private_app(None).await;
    let (both, groups_only) = (Receiver::start().await, Receiver::start().await);
    let news = app.create_group("news", Channel::Email).await;
    app.import(&[("g1", Some("g1@example.com"), None)]).await;
    create(&app, &both.url, None).await;
    let request = WebhooksRequest::Create {
        workspace: "default".into(),
        url: groups_only.url.clone(),
        format: Format::Standard,
        secret: None,
        bearer_token: None,
        events: vec![consentry::stream::destination::EventKind::StateChange],
        max_batch: None,
    };
    admin(&app, request).await;

    let body = serde_json::json!({"email": "g1@example.com", "subscription_state": "opted_in"});
    assert_success(app.post_json("/email/status", &body).await).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["g1"])).await).await;

    let got = both.wait_for(2).await;
    let sent: Vec<Value> = got.iter().flat_map(events).collect();
    let global = &sent[0];
    assert_eq!(global["event_type"], "users.behaviors.subscription.GlobalStateChange");
    assert_eq!(global["properties"]["subscription_status"], "Opted In");
    assert_eq!(global["properties"]["channel"], "email");
    assert_eq!(global["properties"]["email_address"], "g1@example.com");
    assert!(global["properties"].get("subscription_group_id").is_none(), "{global}");
    assert_eq!(sent[1]["event_type"], "users.behaviors.subscriptiongroup.StateChange");

    let only = groups_only.wait_for(1).await;
    let sent: Vec<Value> = only.iter().flat_map(events).collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["properties"]["subscription_group_id"], news.to_string());
    app.shutdown().await;
}
