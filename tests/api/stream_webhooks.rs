//! The change stream's webhooks (issue 11), against a real receiver on 127.0.0.1: every change
//! delivered once, signed (checked with the Standard Webhooks project's own library), in
//! ledger order; retries on the schedule, moved along by a manual clock; 410 disables; a
//! rotation signs with both secrets; private addresses are refused unless allowed; a
//! `currents` batch refused with a 400 is split; a deleted profile is a `users.UserDeleteRequest`.

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

/// One request the receiver got, and the status it answered.
#[derive(Debug, Clone)]
struct Got {
    headers: HeaderMap,
    body: String,
    status: u16,
}

/// The answers a receiver gives before its default 204: status and `retry-after`.
type Script = Arc<Mutex<VecDeque<(u16, Option<&'static str>)>>>;

/// An HTTP receiver answering from a script (then 204), recording every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    script: Script,
    /// A body containing this text is answered 400, whatever the script says.
    poison: Arc<Mutex<Option<String>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        Receiver::start_slow(Duration::ZERO).await
    }

    /// A receiver that takes `delay` to answer each request.
    async fn start_slow(delay: Duration) -> Receiver {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let script: Script = Arc::default();
        let poison: Arc<Mutex<Option<String>>> = Arc::default();
        let (g, s, p) = (Arc::clone(&got), Arc::clone(&script), Arc::clone(&poison));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (g, s, p) = (Arc::clone(&g), Arc::clone(&s), Arc::clone(&p));
                async move {
                    tokio::time::sleep(delay).await;
                    let poisoned = p.lock().unwrap().as_ref().is_some_and(|p| body.contains(p.as_str()));
                    let (status, retry_after) =
                        if poisoned { (400, None) } else { s.lock().unwrap().pop_front().unwrap_or((204, None)) };
                    g.lock().unwrap().push(Got { headers, body, status });
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
        Receiver { url, got, script, poison }
    }

    /// Answers 400 to every body that contains `text`.
    fn refuse_bodies_with(&self, text: &str) {
        *self.poison.lock().unwrap() = Some(text.to_string());
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

/// A `webhooks create` of a standard destination to `url` in the default workspace, taking
/// every event kind, as through the admin socket of a server that allows private addresses.
fn create_request(url: &str) -> WebhooksRequest {
    WebhooksRequest::Create {
        workspace: "default".into(),
        url: url.into(),
        format: Format::Standard,
        secret: None,
        bearer_token: None,
        events: Vec::new(),
        max_batch: None,
        allow_private: true,
    }
}

/// Creates a standard destination to `url`; its id and secret.
async fn create(app: &TestApp, url: &str, max_batch: Option<usize>) -> (String, String) {
    let mut request = create_request(url);
    if let WebhooksRequest::Create { max_batch: m, .. } = &mut request {
        *m = max_batch;
    }
    let out = admin(app, request).await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(lines[1].starts_with("whsec_"), "the secret is on the last line: {out:?}");
    (lines[0].to_string(), lines[1].to_string())
}

async fn list(app: &TestApp) -> String {
    admin(app, WebhooksRequest::List).await.stdout
}

/// Waits until `webhooks list` shows `error` as the last error: the relay has recorded the
/// attempt and timed the next one by the clock as it was then.
async fn settled(app: &TestApp, error: &str) {
    eventually(&format!("{error} recorded"), Duration::from_secs(20), || async {
        list(app).await.contains(error).then_some(())
    })
    .await;
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
    settled(&app, "HTTP 503").await;
    // Not before the first wait of the schedule (5 s, up to a fifth more).
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.got().len(), 1, "no retry before its time");
    clock.advance(Duration::from_secs(6));
    receiver.wait_for(2).await;
    // The clock moves on only once the relay has recorded the attempt (and timed the next).
    settled(&app, "429 Too Many Requests").await;
    // The 429 asked for 120 s: that, not the schedule, decides the next attempt.
    clock.advance(Duration::from_secs(100));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.got().len(), 2, "retry-after is honoured");
    clock.advance(Duration::from_secs(21));
    receiver.wait_for(3).await;
    settled(&app, "HTTP 500").await;
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
async fn a_destination_on_a_private_address_is_refused_at_creation_naming_its_host() {
    let app = spawn_app_with(|_| {}).await;
    for (url, host) in [
        ("http://127.0.0.1:9/hook", "127.0.0.1"),
        ("http://localhost:9/hook", "localhost"),
        ("http://10.0.0.7/hook", "10.0.0.7"),
        ("http://192.168.1.1/hook", "192.168.1.1"),
        ("http://100.64.0.1/hook", "100.64.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254"),
        ("http://[::1]:9/", "::1"),
        ("http://0.0.0.0/", "0.0.0.0"),
        ("http://224.0.0.1/", "224.0.0.1"),
    ] {
        let mut request = create_request(url);
        if let WebhooksRequest::Create { allow_private, .. } = &mut request {
            *allow_private = false;
        }
        let err = execute(&app.catalog, &AdminRequest::Webhooks(request)).await.unwrap_err().to_string();
        assert!(err.contains(&format!("{host:?}")), "{url}: the error names the host: {err}");
        assert!(err.contains("--allow-private-webhooks"), "{url}: the error says how to allow it: {err}");
    }
    assert_eq!(list(&app).await.lines().count(), 1, "no destination was created");
    // Allowed explicitly (`webhooks create --allow-private`), it is created.
    let receiver = Receiver::start().await;
    create(&app, &receiver.url, None).await;
    app.shutdown().await;
}

#[tokio::test]
async fn the_sender_checks_the_address_again_when_it_connects() {
    // Created with --allow-private, but the server does not run with
    // --allow-private-webhooks: the address is refused when sending (as when a name resolves
    // elsewhere at send time than at creation), and nothing reaches it.
    let app = spawn_app_with(|_| {}).await;
    let receiver = Receiver::start().await;
    let news = app.create_group("news", Channel::Email).await;
    create(&app, &receiver.url, None).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u1"])).await).await;

    eventually("disabled", Duration::from_secs(10), || async { list(&app).await.contains("disabled").then_some(()) })
        .await;
    let listed = list(&app).await;
    assert!(listed.contains("--allow-private-webhooks") && listed.contains("\"127.0.0.1\""), "{listed}");
    assert!(receiver.got().is_empty(), "nothing reached the private address");
    app.shutdown().await;
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let app = private_app(None).await;
    let (receiver, elsewhere) = (Receiver::start().await, Receiver::start().await);
    let news = app.create_group("news", Channel::Email).await;
    create(&app, &receiver.url, None).await;
    receiver.answer(307, None);
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u1"])).await).await;
    receiver.wait_for(1).await;
    eventually("the failure listed", Duration::from_secs(10), || async {
        list(&app).await.contains("redirects are not followed").then_some(())
    })
    .await;
    assert!(elsewhere.got().is_empty());
    assert_eq!(receiver.got().len(), 1, "a 3xx fails the message: it is not retried");
    app.shutdown().await;
}

#[tokio::test]
async fn a_currents_batch_refused_with_400_is_split_and_each_event_retried_alone() {
    let clock = Clock::manual(Clock::system().now());
    let app = private_app(Some(clock.clone())).await;
    let receiver = Receiver::start().await;
    let news = app.create_group("news", Channel::Email).await;
    let mut request = create_request(&receiver.url);
    if let WebhooksRequest::Create { format, bearer_token, .. } = &mut request {
        *format = Format::Currents;
        *bearer_token = Some("t0ken".into());
    }
    admin(&app, request).await;
    receiver.refuse_bodies_with("\"poison\"");
    // A poisoned body is answered 400 without reading the script: the first other single
    // event is answered 503, and it alone waits for its retry.
    receiver.answer(503, None);

    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["a", "b", "poison", "c", "d"])).await).await;
    let got = eventually("a 503", Duration::from_secs(20), || async {
        let got = receiver.got();
        got.iter().any(|g| g.status == 503).then_some(got)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), got.len(), "the others wait behind the retried event, in order");
    clock.advance(Duration::from_secs(7));
    let got = receiver.wait_for(7).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 7, "the batch, five single events and one retry: {got:#?}");

    assert_eq!((events(&got[0]).len(), got[0].status), (5, 400), "first the batch");
    let retried = got.iter().position(|g| g.status == 503).unwrap();
    assert_eq!(got[retried + 1].body, got[retried].body, "the retry resends the same bytes, next");
    let singles: Vec<&Got> = (1..7).filter(|&i| i != retried).map(|i| &got[i]).collect();
    let batch = events(&got[0]);
    for (single, event) in singles.iter().zip(&batch) {
        assert_eq!(events(single), vec![event.clone()], "each event alone, in the batch's order");
        assert_eq!(single.headers["authorization"], "Bearer t0ken");
        assert_eq!(single.headers["braze-currents-version"], "1");
    }
    let refused: Vec<&&Got> = singles.iter().filter(|g| g.status == 400).collect();
    assert_eq!(refused.len(), 1, "only the poisoned event is refused");
    assert_eq!(events(refused[0])[0]["user"]["external_user_id"], "poison");
    assert_eq!(singles.iter().filter(|g| g.status == 204).count(), 4, "the other four are delivered");

    // The destination goes on: the next change is a message of its own.
    assert_success(app.post_v2(&by_external_ids(news, "unsubscribed", &["a"])).await).await;
    let got = receiver.wait_for(8).await;
    assert_eq!((events(&got[7]).len(), got[7].status), (1, 204));
    app.shutdown().await;
}

#[tokio::test]
async fn a_deleted_profile_is_a_user_delete_request_without_its_identifiers() {
    let app = private_app(None).await;
    let (all, changes_only) = (Receiver::start().await, Receiver::start().await);
    let news = app.create_group("news", Channel::Email).await;
    app.import(&[("gone-1", Some("gone@example.com"), Some("+12025550123"))]).await;
    let (_, secret) = create(&app, &all.url, None).await;
    let mut request = create_request(&changes_only.url);
    if let WebhooksRequest::Create { events, .. } = &mut request {
        *events = vec![consentry::stream::destination::EventKind::StateChange];
    }
    admin(&app, request).await;
    let profile = app.profile("gone-1").await.unwrap();

    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["gone-1"])).await).await;
    let (status, body) = app.delete_users(&["gone-1"]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["after"])).await).await;

    let got = all.wait_for(3).await;
    assert!(got.iter().all(|g| signed_with(g, &secret)));
    let deleted = events(&got[1]);
    assert_eq!(deleted.len(), 1);
    let event = &deleted[0];
    assert_eq!(event["event_type"], "users.UserDeleteRequest");
    assert_eq!(event.as_object().unwrap().len(), 4, "event_type, id, time, user: {event}");
    assert_eq!(event["user"], serde_json::json!({ "user_id": profile.id.0.to_string() }));
    assert!(event["time"].as_i64().unwrap() > 0);
    assert_eq!(got[1].headers["webhook-id"].to_str().unwrap(), event["id"], "its id is the message id");
    for erased in ["gone-1", "gone@example.com", "2025550123"] {
        assert!(!got[1].body.contains(erased), "the deletion's event does not carry {erased}: {}", got[1].body);
    }
    assert_eq!(events(&got[2])[0]["user"]["external_user_id"], "after", "in ledger order");

    let got = changes_only.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(changes_only.got().len(), 2, "a destination without user_delete does not get it");
    assert!(got.iter().flat_map(events).all(|e| e["event_type"] == "users.behaviors.subscriptiongroup.StateChange"));
    app.shutdown().await;
}

#[tokio::test]
async fn a_url_with_credentials_or_another_scheme_is_refused() {
    let app = spawn_app_with(|_| {}).await;
    for (url, says) in [("https://u:p@example.com/", "password"), ("ftp://example.com/", "scheme")] {
        let request = create_request(url);
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
        &[
            "webhooks",
            "create",
            "--workspace",
            "default",
            "--url",
            &receiver.url,
            "--format",
            "standard",
            "--allow-private",
        ],
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
    let mut request = create_request(&receiver.url);
    if let WebhooksRequest::Create { max_batch, .. } = &mut request {
        *max_batch = Some(3);
    }
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
async fn ledger_retention_on_postgres_takes_the_outbox_rows_of_the_records_it_deletes_with_them() {
    let clock = Clock::manual(Clock::system().now());
    let app = crate::helpers::spawn_app_on(crate::helpers::TestStore::Postgres, |s| {
        s.allow_private_webhooks = true;
        s.clock = clock.clone();
    })
    .await;
    let receiver = Receiver::start().await;
    let news = app.create_group("news", Channel::Email).await;
    create(&app, &receiver.url, None).await;
    // The first message fails and waits for a retry the manual clock never reaches: the
    // records after it stay in the outbox.
    receiver.answer(500, None);
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u1"])).await).await;
    receiver.wait_for(1).await;
    for state in ["unsubscribed", "subscribed"] {
        assert_success(app.post_v2(&by_external_ids(news, state, &["u1"])).await).await;
    }
    let (db, connection) =
        tokio_postgres::connect(&app.database_url().unwrap(), tokio_postgres::NoTls).await.expect("PostgreSQL is up");
    tokio::spawn(connection);
    let outbox = || async { db.query_one("SELECT count(*) FROM stream_outbox", &[]).await.unwrap().get::<_, i64>(0) };
    assert_eq!(outbox().await, 2);

    app.catalog
        .set_ledger_retention("default", consentry::domain::tenant::LedgerRetention::days(1).unwrap())
        .await
        .unwrap();
    let later = consentry::domain::time::Timestamp(clock.now().0 + 3 * 86_400 * 1_000_000);
    let deleted = consentry::server::expire_ledgers(&app.store, &app.catalog, later).await.unwrap();
    assert_eq!(deleted, 2, "u1's first two records; its latest stays");
    assert_eq!(outbox().await, 1, "the expired second record's row went with it; the latest's stays");
    let left: uuid::Uuid = db.query_one("SELECT change_id FROM stream_outbox", &[]).await.unwrap().get(0);
    let latest = app.changes().await.last().expect("a record").id;
    assert_eq!(left, latest.0);
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
        allow_private: true,
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
