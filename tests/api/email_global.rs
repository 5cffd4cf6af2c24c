//! The global email state (Braze's `email_subscribe`): `POST /email/status`, `email_subscribe`
//! on `/users/track`, `GET /email/unsubscribes`, and its own chain in the ledger.

use std::time::Duration;

use consentry::domain::change::{Endpoint, Subject};
use consentry::domain::email::GLOBAL;
use consentry::domain::ledger::{self, Anchor, ChainGroup};
use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::{OptedIn, Subscribed, Unsubscribed};
use consentry::domain::tenant::Permission;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{email, manual_clock, spawn_app, spawn_app_with, status_and_json, TestApp};

async fn email_status(app: &TestApp, body: Value) -> (StatusCode, Value) {
    status_and_json(app.post_json("/email/status", &body).await).await
}

async fn unsubscribes(app: &TestApp, query: &str) -> (StatusCode, Value) {
    status_and_json(app.get_query("/email/unsubscribes", query).await).await
}

fn listed(body: &Value) -> Vec<String> {
    body["emails"].as_array().expect("emails").iter().map(|e| e["email"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn email_status_sets_every_profile_carrying_the_email_in_its_own_verified_chain() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[("u1", Some("Ada@Example.com"), None), ("u2", Some("ada@example.com"), None)]).await;

    let (status, body) =
        email_status(&app, json!({"email": "ada@EXAMPLE.com", "subscription_state": "unsubscribed"})).await;
    assert_eq!((status, body), (StatusCode::CREATED, json!({"message": "success"})));
    assert_eq!(app.state_of("u1", GLOBAL).await, Some(Unsubscribed));
    assert_eq!(app.state_of("u2", GLOBAL).await, Some(Unsubscribed));
    // Independent of group states: the group still reads Unknown and lists nothing.
    assert_eq!(app.state_of("u1", group).await, None);
    let (_, users) = app.user_status("external_id=u1").await;
    assert_eq!(users["users"][0]["subscription_groups"], json!([]));

    let changes = app.changes().await;
    assert_eq!(changes.len(), 2);
    for change in &changes {
        assert_eq!(change.group, ChainGroup::Global);
        assert_eq!(change.trace.endpoint, Some(Endpoint::EmailStatus));
        assert_eq!((change.old, change.new, change.seq), (None, Unsubscribed, 1));
        assert!(ledger::verify_chain([change], Anchor::default(), None).is_ok());
    }

    // Setting it to what it is records nothing; opted_in is a change of the same chain.
    email_status(&app, json!({"email": ["ada@example.com"], "subscription_state": "unsubscribed"})).await;
    assert_eq!(app.changes().await.len(), 2);
    email_status(&app, json!({"email": ["ada@example.com"], "subscription_state": "opted_in"})).await;
    let changes = app.changes().await;
    assert_eq!(changes.len(), 4);
    let u1_chain: Vec<_> = changes.iter().filter(|c| c.subject == changes[0].subject).collect();
    assert_eq!(
        u1_chain.iter().map(|c| (c.old, c.new)).collect::<Vec<_>>(),
        [(None, Unsubscribed), (Some(Unsubscribed), OptedIn)]
    );
    assert!(ledger::verify_chain(u1_chain, Anchor::default(), None).is_ok());
}

#[tokio::test]
async fn an_email_no_profile_carries_keeps_orphaned_global_state_that_a_new_profile_inherits() {
    let app = spawn_app().await;
    let (status, _) = email_status(&app, json!({"email": "lin@example.com", "subscription_state": "opted_in"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(app.orphan_state(&email("lin@example.com"), GLOBAL).await, Some(OptedIn));
    // An address with only a global state is not a user of the group listing.
    let (_, users) = app.user_status("email=lin@example.com").await;
    assert_eq!(users["users"], json!([]));
    let record = &app.changes().await[0];
    assert!(matches!(record.subject, Subject::Orphan(..)));

    let (status, _) = app.track(json!([{"external_id": "lin", "email": "lin@example.com"}])).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(app.state_of("lin", GLOBAL).await, Some(OptedIn));
}

#[tokio::test]
async fn users_track_sets_email_subscribe_and_skips_an_object_with_an_invalid_value() {
    let app = spawn_app().await;
    let (status, body) = app
        .track(json!([
            {"external_id": "a", "email": "a@example.com", "email_subscribe": "unsubscribed"},
            {"external_id": "b", "email_subscribe": "Subscribed"}
        ]))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["attributes_processed"], 1);
    let error = body["errors"][0]["type"].as_str().unwrap();
    assert!(error.contains("attributes[1].email_subscribe") && error.contains("\"Subscribed\""), "{error}");
    assert_eq!(app.state_of("a", GLOBAL).await, Some(Unsubscribed));
    assert!(app.profile("b").await.is_none(), "the invalid object is not applied");
    let (_, body) = unsubscribes(&app, "email=a@example.com&end_date=2100-01-01").await;
    assert_eq!(listed(&body), ["a@example.com"]);

    let (status, _) = app.track(json!([{"external_id": "a", "email_subscribe": "subscribed"}])).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(app.state_of("a", GLOBAL).await, Some(Subscribed));
    let (_, body) = unsubscribes(&app, "email=a@example.com&end_date=2100-01-01").await;
    assert_eq!(listed(&body), Vec::<String>::new(), "subscribed again: no longer listed");
}

#[tokio::test]
async fn an_invalid_email_status_request_names_the_field_and_value_and_changes_nothing() {
    let app = spawn_app().await;
    for (body, field, value) in [
        (json!({"email": "a@example.com", "subscription_state": "Subscribed"}), "subscription_state", "Subscribed"),
        (json!({"email": ["a@example.com", "nope"], "subscription_state": "unsubscribed"}), "email[1]", "nope"),
        (json!({"subscription_state": "unsubscribed"}), "email", "required"),
    ] {
        let (status, answer) = email_status(&app, body).await;
        let message = answer["message"].as_str().unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(message.contains(field) && message.contains(value), "{message}");
    }
    let too_many: Vec<String> = (0..51).map(|i| format!("u{i}@example.com")).collect();
    let (status, _) = email_status(&app, json!({"email": too_many, "subscription_state": "unsubscribed"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(app.changes().await.is_empty());

    let limited = app.create_key(&[Permission::SubscriptionStatusSet]).await;
    let response = app
        .post_json_with_key(
            "/email/status",
            Some(&limited),
            &json!({"email": "a@example.com", "subscription_state": "subscribed"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response =
        app.get_query_with_key("/email/unsubscribes", "email=a@example.com&end_date=2030-01-01", Some(&limited)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unsubscribes_are_listed_by_latest_change_paged_and_sorted_within_at_most_a_year() {
    let clock = manual_clock(); // 2026-01-01
    let app = spawn_app_with(|s| s.clock = clock.clone()).await;
    for address in ["a@example.com", "b@example.com", "c@example.com"] {
        email_status(&app, json!({"email": address, "subscription_state": "unsubscribed"})).await;
        clock.advance(Duration::from_secs(86_400));
    }
    let range = "start_date=2026-01-01&end_date=2026-02-01";
    let (status, body) = unsubscribes(&app, range).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed(&body), ["c@example.com", "b@example.com", "a@example.com"]);
    assert_eq!(body["emails"][2]["unsubscribed_at"], "2026-01-01T00:00:00.000000Z");
    assert_eq!(body["message"], "success");
    let (_, body) = unsubscribes(&app, &format!("{range}&sort_direction=asc&limit=1&offset=1")).await;
    assert_eq!(listed(&body), ["b@example.com"]);
    let (_, body) = unsubscribes(&app, "start_date=2026-01-02&end_date=2026-01-03").await;
    assert_eq!(listed(&body), ["b@example.com"], "start inclusive, end exclusive (midnight UTC)");
    let (_, body) = unsubscribes(&app, "email=C@example.com&end_date=2026-02-01").await;
    assert_eq!(listed(&body), ["c@example.com"]);

    // Unsubscribing again moves the email to its latest change.
    email_status(&app, json!({"email": "a@example.com", "subscription_state": "subscribed"})).await;
    email_status(&app, json!({"email": "a@example.com", "subscription_state": "unsubscribed"})).await;
    let (_, body) = unsubscribes(&app, range).await;
    assert_eq!(listed(&body), ["a@example.com", "c@example.com", "b@example.com"]);

    for (query, field) in [
        ("start_date=2025-01-01&end_date=2026-02-01", "end_date"),
        ("start_date=2026-13-01&end_date=2027-01-01", "start_date"),
        ("start_date=2026-01-01", "end_date"),
        ("end_date=2026-01-01", "start_date"),
        ("start_date=2026-01-01&end_date=2026-02-01&limit=501", "limit"),
        ("start_date=2026-01-01&end_date=2026-02-01&sort_direction=up", "sort_direction"),
    ] {
        let (status, body) = unsubscribes(&app, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body["message"].as_str().unwrap().contains(field), "{query}: {body}");
    }
}

#[tokio::test]
async fn deleting_the_only_carrier_erases_its_global_state_and_its_unsubscribe() {
    let app = spawn_app().await;
    app.import(&[("gone", Some("gone@example.com"), None)]).await;
    email_status(&app, json!({"email": "gone@example.com", "subscription_state": "unsubscribed"})).await;
    let (_, body) = unsubscribes(&app, "email=gone@example.com&end_date=2100-01-01").await;
    assert_eq!(listed(&body), ["gone@example.com"]);

    let (status, _) = app.delete_users(&["gone"]).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, body) = unsubscribes(&app, "email=gone@example.com&end_date=2100-01-01").await;
    assert_eq!(listed(&body), Vec::<String>::new());
    assert!(app.profile("gone").await.is_none());
    assert_eq!(app.changes().await.len(), 1, "the record is kept");
}

#[tokio::test]
async fn the_history_of_the_global_chain_has_no_group_id_and_the_email_channel() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[("h", Some("h@example.com"), None)]).await;
    email_status(&app, json!({"email": "h@example.com", "subscription_state": "unsubscribed"})).await;
    app.post_v2(&json!({"subscription_groups": [{"subscription_group_id": group.to_string(),
        "subscription_state": "subscribed", "external_ids": ["h"]}]}))
        .await;

    let (status, body) =
        status_and_json(app.get_query("/consent/history", "external_id=h&subscription_group_id=global").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let records = body["records"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["subscription_group_id"], Value::Null);
    assert_eq!(records[0]["channel"], "email");
    assert_eq!(records[0]["state"], "unsubscribed");
    assert_eq!(records[0]["endpoint"], "/email/status");

    let (_, proof) = status_and_json(app.get_query("/consent/proof", "external_id=h").await).await;
    assert_eq!(proof["chains"].as_array().unwrap().len(), 2, "{proof}");
    assert_eq!(proof["verified"], true);
}
