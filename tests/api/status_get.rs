//! `GET /subscription/status/get`: every query form, the `+` that arrives as a space, the three
//! answers, which identifiers are looked up, limits, groups, and that reading writes nothing
//! (SPEC.md and issue3-decisions.md, "GET /subscription/status/get").

use consentry::domain::catalog::Permission;
use consentry::domain::ids::GroupId;
use consentry::domain::subscription::Channel;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    assert_error, assert_success, by_external_ids, email, one_entry, spawn_app, status_and_json, statuses, TestApp,
    STATUS_GET_PATH,
};

/// A message of a 400 answer to `rest` on `group`.
async fn refused(app: &TestApp, group: GroupId, rest: &str) -> String {
    let (status, body) = app.status_get(group, rest).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{rest}: {body}");
    body["message"].as_str().unwrap_or_else(|| panic!("{rest}: no string message: {body}")).to_string()
}

/// An email group where `sub` is subscribed, `unsub` unsubscribed, and `nostate` exists
/// without a state.
async fn email_world() -> (TestApp, GroupId) {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[
        ("sub", Some("sub@example.com"), None),
        ("unsub", Some("unsub@example.com"), None),
        ("nostate", Some("nostate@example.com"), None),
    ])
    .await;
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["sub"])).await).await;
    assert_success(app.post_v2(&by_external_ids(group, "unsubscribed", &["unsub"])).await).await;
    (app, group)
}

// ---------------------------------------------------------------------------------------------
// The three answers

#[tokio::test]
async fn external_ids_answer_subscribed_unsubscribed_or_unknown() {
    let (app, group) = email_world().await;

    let (status, body) =
        app.status_get(group, "external_id=sub&external_id=unsub&external_id=nostate&external_id=nobody").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        statuses(&[("sub", "Subscribed"), ("unsub", "Unsubscribed"), ("nostate", "Unknown"), ("nobody", "Unknown")])
    );
    app.shutdown().await;
}

#[tokio::test]
async fn emails_answer_the_state_of_the_profile_that_carries_them() {
    let (app, group) = email_world().await;

    let (status, body) = app
        .status_get(
            group,
            "email=sub@example.com&email=unsub@example.com&email=nostate@example.com&email=no@example.com",
        )
        .await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        statuses(&[
            ("sub@example.com", "Subscribed"),
            ("unsub@example.com", "Unsubscribed"),
            ("nostate@example.com", "Unknown"),
            ("no@example.com", "Unknown"),
        ])
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_state_set_after_a_read_is_seen_by_the_next_read() {
    let (app, group) = email_world().await;
    assert_eq!(app.status_get(group, "external_id=nostate").await.1, statuses(&[("nostate", "Unknown")]));

    assert_success(app.post_v2(&by_external_ids(group, "unsubscribed", &["nostate"])).await).await;

    assert_eq!(app.status_get(group, "external_id=nostate").await.1, statuses(&[("nostate", "Unsubscribed")]));
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Query forms

#[tokio::test]
async fn bracketed_names_are_read_like_repeated_names() {
    let (app, group) = email_world().await;
    let expected = statuses(&[("sub", "Subscribed"), ("unsub", "Unsubscribed")]);

    for query in [
        "external_id=sub&external_id=unsub",
        "external_id[]=sub&external_id[]=unsub",
        "external_id%5B%5D=sub&external_id%5B%5D=unsub",
        "external_id%5b%5d=sub&external_id%5b%5d=unsub",
        "external_id=sub&external_id[]=unsub",
    ] {
        let (status, body) = app.status_get(group, query).await;
        assert_eq!((status, &body), (StatusCode::OK, &expected), "{query}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn bracketed_emails_are_read_like_repeated_emails() {
    let (app, group) = email_world().await;
    let expected = statuses(&[("sub@example.com", "Subscribed"), ("unsub@example.com", "Unsubscribed")]);

    for query in [
        "email=sub@example.com&email=unsub@example.com",
        "email[]=sub@example.com&email[]=unsub@example.com",
        "email%5B%5D=sub%40example.com&email%5B%5D=unsub%40example.com",
    ] {
        let (status, body) = app.status_get(group, query).await;
        assert_eq!((status, &body), (StatusCode::OK, &expected), "{query}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_percent_encoded_value_is_decoded() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["a b&c"])).await).await;

    let (status, body) = app.status_get(group, "external_id=a%20b%26c").await;

    assert_eq!((status, body), (StatusCode::OK, statuses(&[("a b&c", "Subscribed")])));
    app.shutdown().await;
}

#[tokio::test]
async fn a_phone_whose_plus_arrived_as_a_space_is_read_with_its_plus() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;
    app.import(&[("alice", None, Some("+12223334444")), ("bob", None, Some("+15556667777"))]).await;
    assert_success(app.post_v2(&one_entry(group, "subscribed", "phones", &["+12223334444"])).await).await;
    assert_success(app.post_v2(&one_entry(group, "unsubscribed", "phones", &["+15556667777"])).await).await;

    for query in ["phone=+12223334444&phone=+15556667777", "phone[]=+12223334444&phone[]=+15556667777"] {
        let (status, body) = app.status_get(group, query).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(body, statuses(&[("+12223334444", "Subscribed"), ("+15556667777", "Unsubscribed")]), "{query}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn an_encoded_plus_and_a_plus_read_as_a_space_give_the_same_answer() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;
    assert_success(app.post_v2(&one_entry(group, "unsubscribed", "phones", &["+447700900123"])).await).await;

    for query in ["phone=%2B447700900123", "phone=+447700900123", "phone=%20447700900123"] {
        let (status, body) = app.status_get(group, query).await;
        assert_eq!((status, body), (StatusCode::OK, statuses(&[("+447700900123", "Unsubscribed")])), "{query}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn keys_are_the_identifiers_as_the_caller_wrote_them() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[("ada", Some("ada@example.com"), None)]).await;
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["ada"])).await).await;

    let (status, body) = app.status_get(group, "email=Ada@Example.COM").await;

    assert_eq!((status, body), (StatusCode::OK, statuses(&[("Ada@Example.COM", "Subscribed")])));
    app.shutdown().await;
}

#[tokio::test]
async fn two_spellings_of_one_email_are_two_keys_with_one_answer() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[("ada", Some("ada@example.com"), None)]).await;
    assert_success(app.post_v2(&by_external_ids(group, "unsubscribed", &["ada"])).await).await;

    let (status, body) = app.status_get(group, "email=Ada@Example.COM&email=ada@example.com").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, statuses(&[("Ada@Example.COM", "Unsubscribed"), ("ada@example.com", "Unsubscribed")]));
    app.shutdown().await;
}

#[tokio::test]
async fn the_same_value_twice_is_one_key() {
    let (app, group) = email_world().await;

    let (status, body) = app.status_get(group, "external_id=sub&external_id[]=sub&external_id=sub").await;

    assert_eq!((status, body), (StatusCode::OK, statuses(&[("sub", "Subscribed")])));
    app.shutdown().await;
}

#[tokio::test]
async fn unknown_query_parameters_are_ignored() {
    let (app, group) = email_world().await;

    let (status, body) = app.status_get(group, "external_id=sub&limit=3&foo=bar&api_key=x").await;

    assert_eq!((status, body), (StatusCode::OK, statuses(&[("sub", "Subscribed")])));
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// What is looked up

#[tokio::test]
async fn an_external_id_takes_precedence_and_emails_and_phones_are_ignored_unvalidated() {
    let (app, group) = email_world().await;

    for rest in [
        "external_id=nostate&email=sub@example.com",
        "email=sub@example.com&external_id=nostate",
        "external_id=nostate&email=not-an-email",
        "external_id=nostate&email=sub@example.com&phone=%2B12223334444",
        "external_id=nostate&phone=garbage",
    ] {
        let (status, body) = app.status_get(group, rest).await;
        assert_eq!((status, &body), (StatusCode::OK, &statuses(&[("nostate", "Unknown")])), "{rest}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn an_email_carried_by_several_profiles_answers_the_most_restrictive_state() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[
        ("a1", Some("mixed@example.com"), None),
        ("a2", Some("mixed@example.com"), None),
        ("a3", Some("mixed@example.com"), None),
        ("b1", Some("half@example.com"), None),
        ("b2", Some("half@example.com"), None),
        ("c1", Some("none@example.com"), None),
        ("c2", Some("none@example.com"), None),
        ("d1", Some("allsub@example.com"), None),
        ("d2", Some("allsub@example.com"), None),
    ])
    .await;
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["a1", "a3", "b2", "d1", "d2"])).await).await;
    assert_success(app.post_v2(&by_external_ids(group, "unsubscribed", &["a2"])).await).await;

    let (status, body) = app
        .status_get(
            group,
            "email=mixed@example.com&email=half@example.com&email=none@example.com&email=allsub@example.com",
        )
        .await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        statuses(&[
            ("mixed@example.com", "Unsubscribed"),
            ("half@example.com", "Subscribed"),
            ("none@example.com", "Unknown"),
            ("allsub@example.com", "Subscribed"),
        ])
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_phone_carried_by_several_profiles_answers_the_most_restrictive_state() {
    let app = spawn_app().await;
    let group = app.create_group("wa", Channel::Whatsapp).await;
    app.import(&[("a", None, Some("+12223334444")), ("b", None, Some("+12223334444"))]).await;
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["a"])).await).await;
    assert_success(app.post_v2(&by_external_ids(group, "unsubscribed", &["b"])).await).await;

    let (status, body) = app.status_get(group, "phone=%2B12223334444").await;

    assert_eq!((status, body), (StatusCode::OK, statuses(&[("+12223334444", "Unsubscribed")])));
    app.shutdown().await;
}

#[tokio::test]
async fn an_email_or_phone_carried_by_no_profile_answers_its_orphaned_state() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["Orphan@Example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(sms, "subscribed", "phones", &["+15556667777"])).await).await;

    let (status, body) = app.status_get(news, "email=ORPHAN@example.com").await;
    assert_eq!((status, body), (StatusCode::OK, statuses(&[("ORPHAN@example.com", "Unsubscribed")])));

    let (status, body) = app.status_get(sms, "phone=+15556667777").await;
    assert_eq!((status, body), (StatusCode::OK, statuses(&[("+15556667777", "Subscribed")])));
    app.shutdown().await;
}

#[tokio::test]
async fn an_orphaned_state_in_another_group_is_not_an_answer() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let promo = app.create_group("promo", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["x@example.com"])).await).await;

    let (status, body) = app.status_get(promo, "email=x@example.com").await;

    assert_eq!((status, body), (StatusCode::OK, statuses(&[("x@example.com", "Unknown")])));
    app.shutdown().await;
}

#[tokio::test]
async fn nothing_crosses_workspaces() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let (other, other_key) = app.create_workspace_with_key("other", &[Permission::SubscriptionStatusSet]).await;
    let other_group = app.catalog.create_group("other", "news", Channel::Email).await.unwrap().id;
    app.import_into(other, &[("u", Some("u@example.com"), None)]).await;
    assert_success(app.post_v2_with_key(&other_key, &by_external_ids(other_group, "subscribed", &["u"])).await).await;

    let (status, body) = app.status_get(group, "external_id=u").await;
    assert_eq!((status, body), (StatusCode::OK, statuses(&[("u", "Unknown")])));
    let (status, body) = app.status_get(group, "email=u@example.com").await;
    assert_eq!((status, body), (StatusCode::OK, statuses(&[("u@example.com", "Unknown")])));

    let message = refused(&app, other_group, "external_id=u").await;
    assert!(message.contains(&other_group.to_string()), "another workspace's group is unknown: {message}");
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[tokio::test]
async fn an_email_and_a_phone_without_an_external_id_are_refused() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let message = refused(&app, group, "email=a@example.com&phone=%2B12223334444").await;

    assert!(message.contains("email") && message.contains("phone"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_request_naming_no_identifier_is_refused() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    for rest in ["", "limit=1", "external_ids=u", "emails=a@example.com"] {
        let message = refused(&app, group, rest).await;
        assert!(message.contains("external_id"), "{rest}: {message}");
    }
    app.shutdown().await;
}

fn repeated(name: &str, count: usize) -> String {
    (0..count)
        .map(|i| match name {
            "email" => format!("email=user{i}@example.com"),
            "phone" => format!("phone=%2B1222333{i:04}"),
            _ => format!("{name}=user-{i}"),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn fifty_values_are_answered() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;

    for (group, name) in [(news, "external_id"), (news, "email"), (sms, "phone")] {
        let (status, body) = app.status_get(group, &repeated(name, 50)).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(body["status"].as_object().unwrap().len(), 50, "{name}: {body}");
        assert!(body["status"].as_object().unwrap().values().all(|v| v == "Unknown"), "{name}: {body}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn fifty_one_values_are_refused_naming_the_parameter() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;

    for (group, name) in [(news, "external_id"), (news, "email"), (sms, "phone")] {
        let message = refused(&app, group, &repeated(name, 51)).await;
        assert!(message.contains(name), "{name}: {message}");
        assert!(message.contains("51") || message.contains("50"), "{name}: {message}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn fifty_one_values_split_between_plain_and_bracketed_names_are_refused() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let plain = (0..26).map(|i| format!("external_id=a{i}")).collect::<Vec<_>>().join("&");
    let bracketed = (0..25).map(|i| format!("external_id[]=b{i}")).collect::<Vec<_>>().join("&");

    let message = refused(&app, group, &format!("{plain}&{bracketed}")).await;

    assert!(message.contains("external_id"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_missing_subscription_group_id_is_refused_naming_it() {
    let app = spawn_app().await;

    let response = app.get_query(STATUS_GET_PATH, "external_id=u").await;
    let message = assert_error(response, StatusCode::BAD_REQUEST).await;

    assert!(message.contains("subscription_group_id"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_unknown_group_is_refused_naming_it() {
    let app = spawn_app().await;
    let unknown = GroupId::generate();

    let message = refused(&app, unknown, "external_id=u").await;

    assert!(message.contains(&unknown.to_string()), "{message}");
    let response = app.get_query(STATUS_GET_PATH, "subscription_group_id=not-a-group&external_id=u").await;
    let message = assert_error(response, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("not-a-group"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_archived_group_can_still_be_read() {
    let (app, group) = email_world().await;
    app.archive_group(group).await;

    let (status, body) = app.status_get(group, "external_id=sub&external_id=unsub&external_id=nostate").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, statuses(&[("sub", "Subscribed"), ("unsub", "Unsubscribed"), ("nostate", "Unknown")]));
    app.shutdown().await;
}

#[tokio::test]
async fn an_email_on_an_sms_group_or_a_phone_on_an_email_group_is_refused() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;

    let message = refused(&app, sms, "email=a@example.com").await;
    assert!(message.contains("email"), "{message}");
    let message = refused(&app, news, "phone=%2B12223334444").await;
    assert!(message.contains("phone"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_invalid_email_or_phone_is_refused_naming_the_parameter_and_value() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;

    let message = refused(&app, news, "email=bob@").await;
    assert!(message.starts_with("email: \"bob@\""), "{message}");
    assert!(message.contains("not a valid email address"), "{message}");

    let message = refused(&app, sms, "phone=%2B1%20555").await;
    assert!(message.starts_with("phone: \"+1 555\""), "{message}");
    assert!(message.contains("E.164"), "{message}");

    let message = refused(&app, sms, "phone=12223334444").await;
    assert!(message.starts_with("phone: \"12223334444\""), "{message}");
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// No side effects

#[tokio::test]
async fn reading_creates_no_profile_and_writes_nothing() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["orphan@example.com"])).await).await;
    let before = app.changes().await;

    assert_eq!(app.status_get(news, "external_id=ghost").await.1, statuses(&[("ghost", "Unknown")]));
    assert_eq!(app.status_get(news, "email=ghost@example.com").await.1, statuses(&[("ghost@example.com", "Unknown")]));
    assert_eq!(app.status_get(sms, "phone=+12223334444").await.1, statuses(&[("+12223334444", "Unknown")]));
    assert_eq!(
        app.status_get(news, "email=orphan@example.com").await.1,
        statuses(&[("orphan@example.com", "Subscribed")])
    );
    assert_eq!(app.status_get(news, "external_id=ghost").await.1, statuses(&[("ghost", "Unknown")]));

    assert!(app.profile("ghost").await.is_none());
    assert!(app.carriers(&email("ghost@example.com")).await.is_empty());
    assert!(app.carriers(&email("orphan@example.com")).await.is_empty());
    assert_eq!(app.orphan_state(&email("ghost@example.com"), news).await, None);
    assert_eq!(
        app.orphan_state(&email("orphan@example.com"), news).await,
        Some(consentry::domain::subscription::SubscriptionState::Subscribed)
    );
    assert_eq!(app.changes().await, before);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Authentication and permission

#[tokio::test]
async fn a_request_without_a_key_is_unauthorized() {
    let (app, group) = email_world().await;

    let response =
        app.get_query_with_key(STATUS_GET_PATH, &format!("subscription_group_id={group}&external_id=sub"), None).await;

    assert_error(response, StatusCode::UNAUTHORIZED).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_key_without_subscription_status_get_is_forbidden() {
    let (app, group) = email_world().await;
    let query = format!("subscription_group_id={group}&external_id=sub");

    for permissions in [
        vec![Permission::SubscriptionStatusSet],
        vec![Permission::SubscriptionGroupsGet, Permission::UsersTrack, Permission::UsersDelete],
    ] {
        let key = app.create_key(&permissions).await;
        let response = app.get_query_with_key(STATUS_GET_PATH, &query, Some(&key)).await;
        assert_error(response, StatusCode::FORBIDDEN).await;
    }

    let reader = app.create_key(&[Permission::SubscriptionStatusGet]).await;
    let (status, body) = status_and_json(app.get_query_with_key(STATUS_GET_PATH, &query, Some(&reader)).await).await;
    assert_eq!((status, body), (StatusCode::OK, statuses(&[("sub", "Subscribed")])));
    app.shutdown().await;
}

#[tokio::test]
async fn the_answer_is_json() {
    let (app, group) = email_world().await;

    let response = app.get_query(STATUS_GET_PATH, &format!("subscription_group_id={group}&external_id=sub")).await;

    assert_eq!(response.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    assert_eq!(status_and_json(response).await.1, json!({ "status": { "sub": "Subscribed" }, "message": "success" }));
    app.shutdown().await;
}
