//! Per-workspace rate limits: the `x-ratelimit-*` headers, the 429 and what it leaves
//! untouched, separate budgets per workspace and per bucket, clock windows that roll over,
//! `workspaces set-limit` through the real binary, and the pure rules behind them.
//!
//! Tests that spend a budget and then expect a refusal use day-long windows: a window that
//! ends between two requests of a test would refill the budget and make the test flaky.

use consentry::domain::ids::{GroupId, WorkspaceId};
use consentry::domain::rate_limit::{Bucket, Limit, Window, MAX_REQUESTS};
use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::Subscribed;
use consentry::domain::tenant::{Permission, Workspace};
use consentry::domain::time::Timestamp;
use consentry::limiter::{MemoryLimiter, RateLimiter};
use reqwest::StatusCode;
use serde_json::json;

use crate::admin_cli::{body, cell, fails, first_start_key, ok, only_uuid, post, row, settle, table, Server};
use crate::helpers::{
    assert_bad_request, assert_error, assert_success, by_external_ids, client, manual_clock, now_secs,
    rate_limit_headers, spawn_app, spawn_app_with, status_and_json, StoreLocation, V2_PATH,
};

const DAY: u64 = 86_400;

// ---------------------------------------------------------------------------------------------
// Headers

#[tokio::test]
async fn a_successful_set_carries_the_rate_limit_headers_of_the_default_set_bucket() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let response = app.post_v2(&by_external_ids(group, "subscribed", &["u"])).await;

    let (limit, remaining, reset) = rate_limit_headers(&response).expect("rate-limit headers on a 201");
    assert_eq!((limit, remaining), (5_000, 4_999));
    let now = now_secs();
    assert!(reset > now && reset <= now + 60, "reset {reset} is the end of the current minute (now {now})");
    assert_success(response).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_400_found_after_authentication_still_carries_the_headers_and_spends_the_budget() {
    let app = spawn_app().await;

    let malformed = app.post_raw(V2_PATH, Some("application/json"), b"{not json".to_vec(), Some(&app.key)).await;
    assert_eq!(rate_limit_headers(&malformed).map(|(l, r, _)| (l, r)), Some((5_000, 4_999)));
    assert_bad_request(malformed).await;

    let unknown_group = app.post_v2(&by_external_ids(GroupId::generate(), "subscribed", &["u"])).await;
    assert_eq!(rate_limit_headers(&unknown_group).map(|(l, r, _)| (l, r)), Some((5_000, 4_998)));
    assert_bad_request(unknown_group).await;

    let not_json = app.post_raw(V2_PATH, Some("text/plain"), b"{}".to_vec(), Some(&app.key)).await;
    assert_eq!(rate_limit_headers(&not_json).map(|(l, r, _)| (l, r)), Some((5_000, 4_997)));
    assert_error(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn an_unauthenticated_request_gets_no_rate_limit_headers() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let body = serde_json::to_vec(&by_external_ids(group, "subscribed", &["u"])).unwrap();

    for key in [None, Some("not-a-key")] {
        let response = app.post_raw(V2_PATH, Some("application/json"), body.clone(), key).await;
        assert_eq!(rate_limit_headers(&response), None, "{key:?}");
        assert_error(response, StatusCode::UNAUTHORIZED).await;
    }
    let unknown_path = app.client.post(app.url("/nowhere")).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(rate_limit_headers(&unknown_path), None, "a 404 counts against no bucket");
    app.shutdown().await;
}

#[tokio::test]
async fn a_request_refused_for_its_permission_spends_nothing_and_gets_no_headers() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let (_, track_only) =
        app.catalog.create_key("default", vec![Permission::UsersTrack], Vec::new(), "track only").await.unwrap();

    let forbidden = app.post_v2_with_key(&track_only, &by_external_ids(group, "subscribed", &["u"])).await;
    assert_eq!(rate_limit_headers(&forbidden), None);
    assert_error(forbidden, StatusCode::FORBIDDEN).await;

    let allowed = app.post_v2(&by_external_ids(group, "subscribed", &["u"])).await;
    assert_eq!(rate_limit_headers(&allowed).map(|(_, r, _)| r), Some(4_999), "the 403 spent nothing");
    app.shutdown().await;
}

#[tokio::test]
async fn remaining_counts_down_with_every_request_of_the_window() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.set_limit(Bucket::Set, 10, DAY).await;

    let mut seen = Vec::new();
    for n in 0..4 {
        let response = app.post_v2(&by_external_ids(group, "subscribed", &[&format!("u{n}")])).await;
        seen.push(rate_limit_headers(&response).expect("headers"));
        assert_success(response).await;
    }

    assert_eq!(seen.iter().map(|&(l, r, _)| (l, r)).collect::<Vec<_>>(), [(10, 9), (10, 8), (10, 7), (10, 6)]);
    assert!(seen.iter().all(|&(_, _, reset)| reset == seen[0].2), "one window, one reset: {seen:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn the_reset_header_is_the_end_of_the_clock_window_in_utc_epoch_seconds() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    for window in [60, 7, 3_600, DAY] {
        app.set_limit(Bucket::Set, 1_000, window).await;
        let before = now_secs();
        let response = app.post_v2(&by_external_ids(group, "subscribed", &["u"])).await;
        let after = now_secs();
        let (_, _, reset) = rate_limit_headers(&response).expect("headers");
        let window = window as i64;
        assert_eq!(reset % window, 0, "windows start at multiples of their length: reset {reset}, window {window}");
        assert!(reset > before && reset <= after + window, "reset {reset} within {window} s of {before}..{after}");
    }
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Over the limit

#[tokio::test]
async fn once_the_workspace_limit_is_spent_the_answer_is_429_with_a_json_message_and_retry_after() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.set_limit(Bucket::Set, 3, DAY).await;
    for n in 0..3 {
        assert_success(app.post_v2(&by_external_ids(group, "subscribed", &[&format!("u{n}")])).await).await;
    }

    let response = app.post_v2(&by_external_ids(group, "subscribed", &["late"])).await;

    let (limit, remaining, reset) = rate_limit_headers(&response).expect("a 429 carries the headers too");
    assert_eq!((limit, remaining), (3, 0));
    let retry_after: i64 = response
        .headers()
        .get("retry-after")
        .expect("a retry-after header")
        .to_str()
        .unwrap()
        .parse()
        .expect("retry-after is whole seconds");
    let now = now_secs();
    assert!(retry_after >= 1 && retry_after <= DAY as i64, "{retry_after}");
    assert!((now + retry_after - reset).abs() <= 1, "retry-after {retry_after} leads to the reset {reset} (now {now})");
    assert_eq!(response.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"),);
    let message = assert_error(response, StatusCode::TOO_MANY_REQUESTS).await;
    for part in ["\"set\"", "3 requests", "86400 seconds"] {
        assert!(message.contains(part), "the message names the bucket, limit and window ({part}): {message}");
    }

    let again = app.post_v2(&by_external_ids(group, "subscribed", &["later"])).await;
    assert_eq!(rate_limit_headers(&again).map(|(l, r, _)| (l, r)), Some((3, 0)), "remaining never goes negative");
    assert_error(again, StatusCode::TOO_MANY_REQUESTS).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_rejected_set_changes_no_state_and_records_no_change() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[("known", Some("known@example.com"), None)]).await;
    app.set_limit(Bucket::Set, 1, DAY).await;
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["known"])).await).await;
    let changes_before = app.changes().await;

    let body = json!({ "subscription_groups": [
        { "subscription_group_id": group.to_string(), "subscription_state": "unsubscribed",
          "external_ids": ["known", "new-user"] },
        { "subscription_group_id": group.to_string(), "subscription_state": "unsubscribed",
          "emails": ["known@example.com", "orphan@example.com"] },
    ]});
    assert_error(app.post_v2(&body).await, StatusCode::TOO_MANY_REQUESTS).await;

    assert_eq!(app.state_of("known", group).await, Some(Subscribed));
    assert!(app.profile("new-user").await.is_none(), "no profile created");
    assert_eq!(app.orphan_state(&crate::helpers::email("orphan@example.com"), group).await, None);
    assert_eq!(app.changes().await, changes_before);
    app.shutdown().await;
}

#[tokio::test]
async fn a_rejected_request_is_refused_before_its_body_is_examined() {
    let app = spawn_app().await;
    app.set_limit(Bucket::Set, 1, DAY).await;
    assert_bad_request(app.post_raw(V2_PATH, Some("application/json"), b"[]".to_vec(), Some(&app.key)).await).await;

    let response = app.post_raw(V2_PATH, Some("application/json"), b"{not json".to_vec(), Some(&app.key)).await;

    assert_error(response, StatusCode::TOO_MANY_REQUESTS).await;
    app.shutdown().await;
}

#[tokio::test]
async fn two_workspaces_have_separate_budgets() {
    let app = spawn_app().await;
    let group_of_a = app.create_group("news", Channel::Email).await;
    let (_, key_of_b) = app.create_workspace_with_key("b", &[Permission::SubscriptionStatusSet]).await;
    let group_of_b = app.catalog.create_group("b", "news", Channel::Email).await.unwrap().id;
    app.set_limit(Bucket::Set, 1, DAY).await;
    assert_success(app.post_v2(&by_external_ids(group_of_a, "subscribed", &["u"])).await).await;
    assert_error(app.post_v2(&by_external_ids(group_of_a, "subscribed", &["u"])).await, StatusCode::TOO_MANY_REQUESTS)
        .await;

    let response = app.post_v2_with_key(&key_of_b, &by_external_ids(group_of_b, "subscribed", &["u"])).await;

    assert_eq!(rate_limit_headers(&response).map(|(l, r, _)| (l, r)), Some((5_000, 4_999)));
    assert_success(response).await;
    app.shutdown().await;
}

#[tokio::test]
async fn two_keys_of_one_workspace_share_its_budget() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let (_, second) =
        app.catalog.create_key("default", vec![Permission::SubscriptionStatusSet], Vec::new(), "second").await.unwrap();
    app.set_limit(Bucket::Set, 1, DAY).await;
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["u"])).await).await;

    let response = app.post_v2_with_key(&second, &by_external_ids(group, "subscribed", &["v"])).await;

    assert_error(response, StatusCode::TOO_MANY_REQUESTS).await;
    app.shutdown().await;
}

#[tokio::test]
async fn the_budget_refills_when_the_clock_window_rolls_over() {
    let app = spawn_app_with(|settings| settings.clock = manual_clock()).await;
    let group = app.create_group("news", Channel::Email).await;
    app.set_limit(Bucket::Set, 1, 1).await;

    // Spend until a refusal shows the window is full (the clock stands still: the second).
    let mut refused = None;
    for n in 0..50 {
        let response = app.post_v2(&by_external_ids(group, "subscribed", &[&format!("u{n}")])).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response.headers().get("retry-after").unwrap().to_str().unwrap().to_string();
            refused = Some((rate_limit_headers(&response).unwrap(), retry_after));
            break;
        }
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let ((limit, remaining, reset), retry_after) = refused.expect("a second request within one second is refused");
    assert_eq!((limit, remaining, retry_after.as_str()), (1, 0, "1"));

    app.clock.set(Timestamp(reset * 1_000_000));
    let response = app.post_v2(&by_external_ids(group, "subscribed", &["next-window"])).await;

    let (_, remaining, next_reset) = rate_limit_headers(&response).unwrap();
    assert_eq!(remaining, 0, "the one request of the new window");
    assert!(next_reset > reset, "a new window: {next_reset} after {reset}");
    assert_success(response).await;
    assert_eq!(app.state_of("next-window", group).await, Some(Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn a_raised_limit_takes_effect_on_the_next_request() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.set_limit(Bucket::Set, 1, DAY).await;
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["u"])).await).await;
    assert_error(app.post_v2(&by_external_ids(group, "subscribed", &["v"])).await, StatusCode::TOO_MANY_REQUESTS).await;

    app.set_limit(Bucket::Set, 5, DAY).await;
    let response = app.post_v2(&by_external_ids(group, "subscribed", &["v"])).await;

    // The refused request was counted too, as a shared counter would count it.
    assert_eq!(rate_limit_headers(&response).map(|(l, r, _)| (l, r)), Some((5, 2)));
    assert_success(response).await;
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// `consentry workspaces set-limit` and `workspaces list`, through the real binary

#[test]
fn set_limit_on_a_store_no_server_holds_is_stored_and_listed() {
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);
    ok(dir.path(), &["workspaces", "create", "other"]);

    let rows = table(&ok(dir.path(), &["workspaces", "list"]));
    let acme = row(&rows, "name", "acme");
    assert_eq!(&rows[0][..3], ["id", "name", "created_at"], "the original columns come first");
    assert_eq!(
        ["set_limit", "get_limit", "track_limit", "delete_limit"].map(|c| cell(&rows, acme, c)),
        ["5000/60s", "250000/3600s", "3000/3s", "20000/60s"],
        "Braze's defaults"
    );

    let output = ok(dir.path(), &["workspaces", "set-limit", "acme", "set", "100", "--window-seconds", "10"]);
    assert_eq!(output, "", "nothing for scripts on stdout");
    ok(dir.path(), &["workspaces", "set-limit", "acme", "delete", "7"]);

    let rows = table(&ok(dir.path(), &["workspaces", "list"]));
    let acme = row(&rows, "name", "acme");
    assert_eq!(cell(&rows, acme, "set_limit"), "100/10s");
    assert_eq!(cell(&rows, acme, "delete_limit"), "7/60s", "without --window-seconds the window stays");
    assert_eq!(cell(&rows, acme, "get_limit"), "250000/3600s", "other buckets keep their defaults");
    assert_eq!(cell(&rows, row(&rows, "name", "other"), "set_limit"), "5000/60s", "other workspaces too");

    ok(dir.path(), &["workspaces", "set-limit", "acme", "set", "200"]);
    let rows = table(&ok(dir.path(), &["workspaces", "list"]));
    assert_eq!(cell(&rows, row(&rows, "name", "acme"), "set_limit"), "200/10s", "the workspace's own window stays");
}

#[tokio::test]
async fn set_limit_through_a_running_server_applies_at_once_and_is_persisted() {
    let dir = StoreLocation::new();
    let key = first_start_key(dir.path());
    let group = only_uuid(&ok(
        dir.path(),
        &["groups", "create", "--workspace", "default", "--name", "news", "--channel", "email"],
    ))
    .to_string();
    let mut server = Server::start(dir.path());
    let http = client();

    let before = post(&http, &server, &key, &body(&group, "subscribed", &["u1"])).await;
    assert_eq!(rate_limit_headers(&before).map(|(l, _, _)| l), Some(5_000));
    assert_success(before).await;

    ok(dir.path(), &["workspaces", "set-limit", "default", "set", "1", "--window-seconds", "86400"]);
    settle().await;
    let first = post(&http, &server, &key, &body(&group, "subscribed", &["u2"])).await;
    assert_eq!(rate_limit_headers(&first).map(|(l, r, _)| (l, r)), Some((1, 0)));
    assert_success(first).await;
    let second = post(&http, &server, &key, &body(&group, "subscribed", &["u3"])).await;
    assert_error(second, StatusCode::TOO_MANY_REQUESTS).await;

    let message = fails(dir.path(), &["workspaces", "set-limit", "default", "set", "0"]);
    assert!(message.contains("limit 0"), "errors come back through the socket: {message}");

    let (status, _, err) = server.stop_with("TERM");
    assert!(status.success(), "{err}");
    let rows = table(&ok(dir.path(), &["workspaces", "list"]));
    assert_eq!(cell(&rows, row(&rows, "name", "default"), "set_limit"), "1/86400s", "the server stored the limit");
}

#[test]
fn set_limit_refuses_bad_input_naming_the_value() {
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);

    let message = fails(dir.path(), &["workspaces", "set-limit", "acme", "sett", "5"]);
    assert!(message.contains("sett"), "{message}");
    assert!(message.contains("set, get, track, delete"), "the message lists the buckets: {message}");

    for (args, named) in [
        (&["acme", "set", "0"][..], "limit 0"),
        (&["acme", "set", "1000000001"], "1000000001"),
        (&["acme", "set", "-5"], "-5"),
        (&["acme", "set", "lots"], "lots"),
        (&["acme", "set", "10", "--window-seconds", "0"], "window of 0 seconds"),
        (&["acme", "set", "10", "--window-seconds", "86401"], "86401"),
        (&["nope", "set", "10"], "nope"),
    ] {
        let message = fails(dir.path(), &[&["workspaces", "set-limit"][..], args].concat());
        assert!(message.contains(named), "{args:?}: {message}");
    }
    let rows = table(&ok(dir.path(), &["workspaces", "list"]));
    assert_eq!(cell(&rows, row(&rows, "name", "acme"), "set_limit"), "5000/60s", "nothing was changed");
}

// ---------------------------------------------------------------------------------------------
// The rules and the counter, through the library

#[test]
fn each_permission_draws_from_its_bucket() {
    assert_eq!(
        Permission::ALL.map(Permission::bucket),
        [
            Bucket::Set,
            Bucket::Get,
            Bucket::Get,
            Bucket::Track,
            Bucket::Delete,
            Bucket::Links,
            Bucket::Get,
            Bucket::Email,
            Bucket::Email
        ]
    );
    let defaults = Bucket::ALL.map(|b| (b.as_str(), b.default_limit().requests(), b.default_limit().window_seconds()));
    assert_eq!(
        defaults,
        [
            ("set", 5_000, 60),
            ("get", 250_000, 3_600),
            ("track", 3_000, 3),
            ("delete", 20_000, 60),
            ("links", 5_000, 60),
            ("email", 250_000, 3_600)
        ]
    );
    for bucket in Bucket::ALL {
        assert_eq!(Bucket::parse(bucket.as_str()), Some(bucket));
    }
    assert_eq!(Bucket::parse("Set"), None);
}

#[test]
fn limits_out_of_bounds_are_refused_naming_the_value() {
    assert!(Limit::new(0, 60).unwrap_err().contains("limit 0"));
    assert!(Limit::new(MAX_REQUESTS + 1, 60).unwrap_err().contains(&(MAX_REQUESTS + 1).to_string()));
    assert!(Limit::new(1, 0).unwrap_err().contains("0 seconds"));
    assert!(Limit::new(1, 86_401).unwrap_err().contains("86401"));
    assert!(Limit::new(1, u64::MAX).unwrap_err().contains(&u64::MAX.to_string()));
    assert_eq!(Limit::new(MAX_REQUESTS, 86_400).map(|l| l.to_string()), Ok("1000000000/86400s".into()));
}

#[test]
fn windows_start_at_multiples_of_their_length_and_retry_after_rounds_up_to_their_end() {
    let limit = Limit::new(2, 60).unwrap();
    let at = |secs: i64, micros: i64| Timestamp(secs * 1_000_000 + micros);

    assert_eq!(limit.window_at(at(1_000_000_019, 0)), Window { start: 1_000_000_020 - 60, seconds: 60 });
    assert_eq!(limit.window_at(at(1_000_000_020, 0)), Window { start: 1_000_000_020, seconds: 60 });
    assert_eq!(limit.window_at(at(1_000_000_079, 999_999)).end(), 1_000_000_080);

    let window = limit.window_at(at(1_000_000_050, 250_000));
    let first = limit.decide(1, window);
    assert_eq!((first.allowed, first.limit, first.remaining, first.reset_at), (true, 2, 1, 1_000_000_080));
    let over = limit.decide(3, window);
    assert_eq!((over.allowed, over.remaining), (false, 0));
    assert_eq!(over.retry_after(at(1_000_000_050, 250_000)), 30, "29.75 s rounds up");
    assert_eq!(over.retry_after(at(1_000_000_050, 0)), 30);
    assert_eq!(over.retry_after(at(1_000_000_079, 999_999)), 1);
    assert_eq!(over.retry_after(at(1_000_000_080, 0)), 1, "never 0");
}

#[tokio::test]
async fn the_counter_keeps_buckets_and_workspaces_apart() {
    let limiter = RateLimiter::in_memory();
    let (a, b) = (WorkspaceId::generate(), WorkspaceId::generate());
    let limit = Limit::new(1, 60).unwrap();
    let now = Timestamp(1_000_000_000 * 1_000_000);

    assert!(limiter.acquire(a, Bucket::Set, limit, now).await.allowed);
    assert!(!limiter.acquire(a, Bucket::Set, limit, now).await.allowed);
    assert!(limiter.acquire(a, Bucket::Get, limit, now).await.allowed, "another bucket");
    assert!(limiter.acquire(b, Bucket::Set, limit, now).await.allowed, "another workspace");
    let longer = Limit::new(1, 120).unwrap();
    assert!(limiter.acquire(a, Bucket::Set, longer, now).await.allowed, "a changed window counts from zero");
}

#[test]
fn the_in_memory_counter_forgets_windows_that_have_ended() {
    let memory = MemoryLimiter::default();
    let limit = Limit::new(10, 1).unwrap();
    let start = 1_000_000_000i64;
    for second in 0..100 {
        let now = Timestamp((start + second) * 1_000_000);
        for bucket in Bucket::ALL {
            memory.acquire(WorkspaceId::generate(), bucket, limit, now);
        }
    }
    assert_eq!(memory.tracked_windows(), Bucket::ALL.len(), "only the last second's windows are kept");
}

#[test]
fn a_workspace_stored_before_rate_limits_existed_loads_with_the_defaults() {
    let stored = json!({
        "id": WorkspaceId::generate(),
        "name": "old",
        "created_at": 1_700_000_000_000_000i64,
    });

    let workspace: Workspace = serde_json::from_value(stored).expect("an old workspace still loads");

    assert!(workspace.rate_limits.is_empty());
    assert_eq!(workspace.rate_limit(Bucket::Set), Bucket::Set.default_limit());
    let mut changed = workspace.clone();
    changed.rate_limits.insert(Bucket::Track, Limit::new(9, 2).unwrap());
    let round_trip: Workspace = serde_json::from_value(serde_json::to_value(&changed).unwrap()).unwrap();
    assert_eq!(round_trip, changed);
    assert!(
        serde_json::from_value::<Workspace>(json!({ "id": workspace.id, "name": "bad", "created_at": 0,
            "rate_limits": { "set": { "requests": 0, "window_seconds": 60 } } }))
        .is_err(),
        "a stored limit out of bounds is refused, not trusted"
    );
}

#[tokio::test]
async fn a_429_body_is_json_with_only_a_message() {
    let app = spawn_app().await;
    app.set_limit(Bucket::Set, 1, DAY).await;
    let group = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["u"])).await).await;

    let (status, body) = status_and_json(app.post_v2(&by_external_ids(group, "subscribed", &["v"])).await).await;

    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()), Some(vec!["message".to_string()]));
    app.shutdown().await;
}
