//! `GET /subscription/user/status`: the users/total_count shape, one entry per matched profile
//! (or carrier-less identifier with orphaned state), the groups it has a state in, paging, and
//! the permission (SPEC.md and issue3-decisions.md, "GET /subscription/user/status").

use consentry::domain::catalog::Permission;
use consentry::domain::subscription::Channel;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, assert_success, by_external_ids, group_json, one_entry, spawn_app, status_and_json, TestApp,
    USER_STATUS_PATH,
};

fn user(external_id: Option<&str>, email: Option<&str>, phone: Option<&str>, groups: Vec<Value>) -> Value {
    json!({ "email": email, "phone": phone, "external_id": external_id, "subscription_groups": groups })
}

fn answer(users: Vec<Value>, total_count: usize) -> Value {
    json!({ "users": users, "total_count": total_count, "message": "success" })
}

async fn ok(app: &TestApp, query: &str) -> Value {
    let (status, body) = app.user_status(query).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

async fn refused(app: &TestApp, query: &str) -> String {
    let (status, body) = app.user_status(query).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
    body["message"].as_str().unwrap_or_else(|| panic!("{query}: no string message: {body}")).to_string()
}

/// The external ids of the listed users, in order.
fn listed(body: &Value) -> Vec<Value> {
    body["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users list: {body}"))
        .iter()
        .map(|u| u["external_id"].clone())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Shape and content

#[tokio::test]
async fn a_profile_is_listed_with_its_identifiers_and_the_groups_it_has_a_state_in_sorted_by_name() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let alerts = app.create_group("alerts", Channel::Sms).await;
    let chat = app.create_group("chat", Channel::Whatsapp).await;
    let _promo = app.create_group("promo", Channel::Email).await;
    app.import(&[("alice", Some("alice@example.com"), Some("+12223334444"))]).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["alice"])).await).await;
    assert_success(app.post_v2(&by_external_ids(alerts, "unsubscribed", &["alice"])).await).await;
    assert_success(app.post_v2(&by_external_ids(chat, "subscribed", &["alice"])).await).await;

    let body = ok(&app, "external_id=alice").await;

    let groups = vec![
        group_json(alerts, "alerts", "sms", "Unsubscribed"),
        group_json(chat, "chat", "whatsapp", "Subscribed"),
        group_json(news, "news", "email", "Subscribed"),
    ];
    assert_eq!(body, answer(vec![user(Some("alice"), Some("alice@example.com"), Some("+12223334444"), groups)], 1));
    app.shutdown().await;
}

#[tokio::test]
async fn a_profile_without_any_state_is_listed_with_no_groups() {
    let app = spawn_app().await;
    app.create_group("news", Channel::Email).await;
    app.import(&[("bob", None, None)]).await;

    let body = ok(&app, "external_id=bob").await;

    assert_eq!(body, answer(vec![user(Some("bob"), None, None, vec![])], 1));
    app.shutdown().await;
}

#[tokio::test]
async fn an_unknown_identifier_matches_nothing_and_is_skipped() {
    let app = spawn_app().await;
    app.create_group("news", Channel::Email).await;
    app.import(&[("bob", None, None)]).await;

    assert_eq!(ok(&app, "external_id=ghost").await, answer(vec![], 0));
    assert_eq!(ok(&app, "email=ghost@example.com").await, answer(vec![], 0));
    assert_eq!(ok(&app, "phone=%2B12223334444").await, answer(vec![], 0));
    assert_eq!(
        ok(&app, "external_id=ghost&external_id=bob").await,
        answer(vec![user(Some("bob"), None, None, vec![])], 1)
    );
    assert!(app.profile("ghost").await.is_none(), "reading creates nothing");
    app.shutdown().await;
}

#[tokio::test]
async fn an_archived_group_is_still_listed() {
    let app = spawn_app().await;
    let old = app.create_group("old", Channel::Email).await;
    assert_success(app.post_v2(&by_external_ids(old, "unsubscribed", &["u"])).await).await;
    app.archive_group(old).await;

    let body = ok(&app, "external_id=u").await;

    assert_eq!(
        body,
        answer(vec![user(Some("u"), None, None, vec![group_json(old, "old", "email", "Unsubscribed")])], 1)
    );
    app.shutdown().await;
}

#[tokio::test]
async fn profiles_sharing_an_email_are_listed_separately_in_creation_order() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    app.import(&[("first", Some("shared@example.com"), None)]).await;
    app.import(&[("second", Some("shared@example.com"), None)]).await;
    app.import(&[("third", Some("shared@example.com"), None)]).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["shared@example.com"])).await).await;
    assert_success(app.post_v2(&by_external_ids(news, "unsubscribed", &["second"])).await).await;

    let body = ok(&app, "email=Shared@Example.com").await;

    let g = |status| vec![group_json(news, "news", "email", status)];
    assert_eq!(
        body,
        answer(
            vec![
                user(Some("first"), Some("shared@example.com"), None, g("Subscribed")),
                user(Some("second"), Some("shared@example.com"), None, g("Unsubscribed")),
                user(Some("third"), Some("shared@example.com"), None, g("Subscribed")),
            ],
            3
        )
    );
    app.shutdown().await;
}

#[tokio::test]
async fn profiles_sharing_a_phone_are_listed_separately() {
    let app = spawn_app().await;
    let sms = app.create_group("sms", Channel::Sms).await;
    app.import(&[("a", None, Some("+12223334444"))]).await;
    app.import(&[("b", None, Some("+12223334444"))]).await;
    assert_success(app.post_v2(&one_entry(sms, "subscribed", "phones", &["+12223334444"])).await).await;

    let body = ok(&app, "phone=+12223334444").await;

    let g = vec![group_json(sms, "sms", "sms", "Subscribed")];
    assert_eq!(
        body,
        answer(
            vec![
                user(Some("a"), None, Some("+12223334444"), g.clone()),
                user(Some("b"), None, Some("+12223334444"), g)
            ],
            2
        )
    );
    app.shutdown().await;
}

#[tokio::test]
async fn users_come_in_the_order_external_ids_then_emails_then_phones_each_profile_once() {
    let app = spawn_app().await;
    app.create_group("news", Channel::Email).await;
    app.import(&[("p-email", Some("e@example.com"), None)]).await;
    app.import(&[("p-both", Some("e@example.com"), Some("+12223334444"))]).await;
    app.import(&[("p-phone", None, Some("+12223334444"))]).await;
    app.import(&[("p-ext", None, None)]).await;

    let body = ok(&app, "phone=%2B12223334444&email=e@example.com&external_id=p-ext&external_id=p-both").await;

    assert_eq!(listed(&body), vec![json!("p-ext"), json!("p-both"), json!("p-email"), json!("p-phone")]);
    assert_eq!(body["total_count"], 4);
    app.shutdown().await;
}

#[tokio::test]
async fn an_identifier_asked_twice_or_in_two_spellings_lists_its_profiles_once() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    app.import(&[("ada", Some("ada@example.com"), Some("+12223334444"))]).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["orphan@example.com"])).await).await;

    let body = ok(
        &app,
        "external_id=ada&external_id[]=ada&email=Ada@Example.COM&email=ada@example.com&phone=+12223334444&phone=%2B12223334444",
    )
    .await;
    assert_eq!(body, answer(vec![user(Some("ada"), Some("ada@example.com"), Some("+12223334444"), vec![])], 1));

    let body = ok(&app, "email=orphan@example.com&email=ORPHAN@example.com").await;
    let groups = vec![group_json(news, "news", "email", "Subscribed")];
    assert_eq!(body, answer(vec![user(None, Some("orphan@example.com"), None, groups)], 1));
    app.shutdown().await;
}

#[tokio::test]
async fn the_email_listed_is_the_stored_one_whatever_the_query_spelling() {
    let app = spawn_app().await;
    app.create_group("news", Channel::Email).await;
    app.import(&[("ada", Some("ada@example.com"), None)]).await;

    let body = ok(&app, "email=Ada@Example.COM").await;

    assert_eq!(body, answer(vec![user(Some("ada"), Some("ada@example.com"), None, vec![])], 1));
    app.shutdown().await;
}

#[tokio::test]
async fn an_orphaned_email_or_phone_is_one_entry_with_a_null_external_id() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let promo = app.create_group("promo", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;
    assert_success(app.post_v2(&one_entry(promo, "unsubscribed", "emails", &["orphan@example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["orphan@example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(sms, "subscribed", "phones", &["+15556667777"])).await).await;

    let body = ok(&app, "email=orphan@example.com").await;
    let groups =
        vec![group_json(news, "news", "email", "Subscribed"), group_json(promo, "promo", "email", "Unsubscribed")];
    assert_eq!(body, answer(vec![user(None, Some("orphan@example.com"), None, groups)], 1));

    let body = ok(&app, "phone=+15556667777").await;
    assert_eq!(
        body,
        answer(vec![user(None, None, Some("+15556667777"), vec![group_json(sms, "sms", "sms", "Subscribed")])], 1)
    );
    app.shutdown().await;
}

#[tokio::test]
async fn several_identifier_names_together_are_united() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    app.import(&[("known", None, None)]).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["orphan@example.com"])).await).await;

    let body = ok(&app, "external_id=known&email=orphan@example.com").await;

    assert_eq!(
        body,
        answer(
            vec![
                user(Some("known"), None, None, vec![]),
                user(None, Some("orphan@example.com"), None, vec![group_json(news, "news", "email", "Subscribed")]),
            ],
            2
        )
    );
    app.shutdown().await;
}

#[tokio::test]
async fn nothing_crosses_workspaces() {
    let app = spawn_app().await;
    app.create_group("news", Channel::Email).await;
    let (other, other_key) = app.create_workspace_with_key("other", &[Permission::SubscriptionStatusSet]).await;
    let other_group = app.catalog.create_group("other", "news", Channel::Email).await.unwrap().id;
    app.import_into(other, &[("u", Some("u@example.com"), None)]).await;
    assert_success(app.post_v2_with_key(&other_key, &by_external_ids(other_group, "subscribed", &["u"])).await).await;
    assert_success(
        app.post_v2_with_key(&other_key, &one_entry(other_group, "subscribed", "emails", &["o@example.com"])).await,
    )
    .await;

    assert_eq!(ok(&app, "external_id=u&email=u@example.com&email=o@example.com").await, answer(vec![], 0));
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Paging

#[tokio::test]
async fn the_default_limit_is_100_and_total_count_counts_every_match() {
    let app = spawn_app().await;
    app.create_group("news", Channel::Email).await;
    let ids: Vec<String> = (0..101).map(|i| format!("user-{i:03}")).collect();
    let profiles: Vec<(&str, Option<&str>, Option<&str>)> =
        ids.iter().map(|id| (id.as_str(), Some("crowd@example.com"), None)).collect();
    app.import(&profiles).await;

    let body = ok(&app, "email=crowd@example.com").await;
    assert_eq!(body["users"].as_array().unwrap().len(), 100);
    assert_eq!(body["total_count"], 101);

    let body = ok(&app, "email=crowd@example.com&limit=100&offset=100").await;
    assert_eq!(body["users"].as_array().unwrap().len(), 1);
    assert_eq!(body["total_count"], 101);
    app.shutdown().await;
}

#[tokio::test]
async fn offset_pages_over_the_matched_profiles_with_total_count_unchanged() {
    let app = spawn_app().await;
    app.create_group("news", Channel::Email).await;
    for id in ["p1", "p2", "p3"] {
        app.import(&[(id, Some("shared@example.com"), None)]).await;
    }

    let page = |offset: usize, limit: usize| format!("email=shared@example.com&limit={limit}&offset={offset}");
    let body = ok(&app, &page(0, 2)).await;
    assert_eq!((listed(&body), body["total_count"].clone()), (vec![json!("p1"), json!("p2")], json!(3)));
    let body = ok(&app, &page(2, 2)).await;
    assert_eq!((listed(&body), body["total_count"].clone()), (vec![json!("p3")], json!(3)));
    let body = ok(&app, &page(1, 1)).await;
    assert_eq!((listed(&body), body["total_count"].clone()), (vec![json!("p2")], json!(3)));
    let body = ok(&app, &page(3, 2)).await;
    assert_eq!(body, answer(vec![], 3));
    let body = ok(&app, &page(50, 100)).await;
    assert_eq!(body, answer(vec![], 3));
    app.shutdown().await;
}

#[tokio::test]
async fn a_limit_of_0_over_100_or_not_a_number_is_refused_naming_it() {
    let app = spawn_app().await;
    app.import(&[("u", None, None)]).await;

    for limit in ["0", "101", "1000", "abc", "-1", "1.5", ""] {
        let message = refused(&app, &format!("external_id=u&limit={limit}")).await;
        assert!(message.contains("limit"), "{limit:?}: {message}");
        if !limit.is_empty() {
            assert!(message.contains(limit), "{limit:?}: {message}");
        }
    }
    assert_eq!(ok(&app, "external_id=u&limit=1").await["total_count"], 1);
    assert_eq!(ok(&app, "external_id=u&limit=100").await["total_count"], 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_negative_or_non_numeric_offset_is_refused_naming_it() {
    let app = spawn_app().await;
    app.import(&[("u", None, None)]).await;

    for offset in ["-1", "abc", "1e3"] {
        let message = refused(&app, &format!("external_id=u&offset={offset}")).await;
        assert!(message.contains("offset"), "{offset:?}: {message}");
        assert!(message.contains(offset), "{offset:?}: {message}");
    }
    assert_eq!(ok(&app, "external_id=u&offset=0").await["total_count"], 1);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Identifier limits and validation

#[tokio::test]
async fn no_identifier_at_all_is_refused() {
    let app = spawn_app().await;

    for query in ["", "limit=10", "external_ids=u"] {
        refused(&app, query).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn fifty_values_are_accepted_and_fifty_one_are_refused() {
    let app = spawn_app().await;
    let many = |n: usize| (0..n).map(|i| format!("external_id[]=u{i}")).collect::<Vec<_>>().join("&");

    assert_eq!(ok(&app, &many(50)).await, answer(vec![], 0));
    let message = refused(&app, &many(51)).await;
    assert!(message.contains("external_id"), "{message}");

    let emails = (0..51).map(|i| format!("email=u{i}@example.com")).collect::<Vec<_>>().join("&");
    let message = refused(&app, &emails).await;
    assert!(message.contains("email"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_invalid_email_or_phone_is_refused_naming_it() {
    let app = spawn_app().await;

    let message = refused(&app, "email=bob@").await;
    assert!(message.contains("email") && message.contains("\"bob@\""), "{message}");
    let message = refused(&app, "phone=12223334444").await;
    assert!(message.contains("phone") && message.contains("\"12223334444\""), "{message}");
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Authentication and permission

#[tokio::test]
async fn a_request_without_a_key_is_unauthorized() {
    let app = spawn_app().await;
    app.import(&[("u", None, None)]).await;

    assert_error(app.get_query_with_key(USER_STATUS_PATH, "external_id=u", None).await, StatusCode::UNAUTHORIZED).await;
    app.shutdown().await;
}

#[tokio::test]
async fn the_subscription_groups_get_permission_is_required() {
    let app = spawn_app().await;
    app.import(&[("u", None, None)]).await;

    let without = app
        .create_key(&[
            Permission::SubscriptionStatusGet,
            Permission::SubscriptionStatusSet,
            Permission::UsersTrack,
            Permission::UsersDelete,
        ])
        .await;
    let response = app.get_query_with_key(USER_STATUS_PATH, "external_id=u", Some(&without)).await;
    assert_error(response, StatusCode::FORBIDDEN).await;

    let with = app.create_key(&[Permission::SubscriptionGroupsGet]).await;
    let (status, body) =
        status_and_json(app.get_query_with_key(USER_STATUS_PATH, "external_id=u", Some(&with)).await).await;
    assert_eq!((status, body), (StatusCode::OK, answer(vec![user(Some("u"), None, None, vec![])], 1)));
    app.shutdown().await;
}
