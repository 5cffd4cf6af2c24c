//! `POST /subscription/status/set` (V1): one group per request, singular field names that take a
//! string or an array, Braze's exact message for email and phone together, and otherwise the
//! rules of V2 (SPEC.md and issue3-decisions.md, "V1 set").

use consentry::domain::change::Endpoint;
use consentry::domain::ids::{GroupId, RequestId};
use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::{Subscribed, Unsubscribed};
use consentry::domain::tenant::Permission;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_bad_request, assert_error, assert_success, email, phone, spawn_app, status_and_json, v1_body, TestApp,
    V1_PATH,
};

const BOTH_MESSAGE: &str = "Either an email address or a phone number should be provided, but not both.";

async fn post_v1(app: &TestApp, body: &Value) -> reqwest::Response {
    app.post_json(V1_PATH, body).await
}

// ---------------------------------------------------------------------------------------------
// Success and what a request changes

#[tokio::test]
async fn a_valid_request_answers_201_with_exactly_the_success_message() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    assert_success(post_v1(&app, &v1_body(group, "subscribed", "external_id", json!("user-1"))).await).await;

    assert_eq!(app.state_of("user-1", group).await, Some(Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn external_id_is_accepted_as_a_string_or_as_an_array() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    assert_success(post_v1(&app, &v1_body(group, "subscribed", "external_id", json!("single"))).await).await;
    assert_success(post_v1(&app, &v1_body(group, "unsubscribed", "external_id", json!(["a", "b"]))).await).await;

    assert_eq!(app.state_of("single", group).await, Some(Subscribed));
    assert_eq!(app.state_of("a", group).await, Some(Unsubscribed));
    assert_eq!(app.state_of("b", group).await, Some(Unsubscribed));
    assert_eq!(app.changes().await.len(), 3);
    app.shutdown().await;
}

#[tokio::test]
async fn an_unknown_external_id_creates_a_profile_with_the_state() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    assert!(app.profile("new-user").await.is_none());

    assert_success(post_v1(&app, &v1_body(group, "unsubscribed", "external_id", json!(["new-user"]))).await).await;

    let profile = app.profile("new-user").await.expect("the profile is created");
    assert_eq!(profile.external_id.as_deref(), Some("new-user"));
    assert_eq!((profile.email, profile.phone), (None, None));
    assert_eq!(app.state_of("new-user", group).await, Some(Unsubscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn an_email_array_updates_every_profile_that_carries_each_email() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[
        ("alice", Some("shared@example.com"), None),
        ("bob", Some("shared@example.com"), None),
        ("carol", Some("carol@example.com"), None),
        ("dave", Some("dave@example.com"), None),
    ])
    .await;

    let request = v1_body(group, "subscribed", "email", json!(["shared@example.com", "Carol@Example.COM"]));
    assert_success(post_v1(&app, &request).await).await;

    assert_eq!(app.state_of("alice", group).await, Some(Subscribed));
    assert_eq!(app.state_of("bob", group).await, Some(Subscribed));
    assert_eq!(app.state_of("carol", group).await, Some(Subscribed));
    assert_eq!(app.state_of("dave", group).await, None);
    assert_eq!(app.changes().await.len(), 3);
    app.shutdown().await;
}

#[tokio::test]
async fn an_email_as_a_single_string_is_a_list_of_one_and_matches_ignoring_case() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[("alice", Some("alice@example.com"), None)]).await;

    assert_success(post_v1(&app, &v1_body(group, "unsubscribed", "email", json!("  ALICE@example.com "))).await).await;

    assert_eq!(app.state_of("alice", group).await, Some(Unsubscribed));
    assert_eq!(app.orphan_state(&email("alice@example.com"), group).await, None);
    app.shutdown().await;
}

#[tokio::test]
async fn a_phone_as_a_string_or_an_array_updates_the_profiles_that_carry_it() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;
    app.import(&[("alice", None, Some("+12223334444")), ("bob", None, Some("+15556667777"))]).await;

    assert_success(post_v1(&app, &v1_body(group, "subscribed", "phone", json!("+12223334444"))).await).await;
    assert_success(post_v1(&app, &v1_body(group, "unsubscribed", "phone", json!(["+15556667777"]))).await).await;

    assert_eq!(app.state_of("alice", group).await, Some(Subscribed));
    assert_eq!(app.state_of("bob", group).await, Some(Unsubscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn an_unknown_email_stores_orphaned_state_and_creates_no_profile() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    assert_success(post_v1(&app, &v1_body(group, "unsubscribed", "email", json!("Nobody@Example.com"))).await).await;

    assert_eq!(app.orphan_state(&email("nobody@example.com"), group).await, Some(Unsubscribed));
    assert!(app.carriers(&email("nobody@example.com")).await.is_empty());
    assert!(app.profile("Nobody@Example.com").await.is_none());
    assert!(app.profile("nobody@example.com").await.is_none());
    let changes = app.changes().await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].subject.contact(), Some(&email("nobody@example.com")));
    assert_eq!((changes[0].old, changes[0].new), (None, Unsubscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn an_unknown_phone_stores_orphaned_state_and_creates_no_profile() {
    let app = spawn_app().await;
    let group = app.create_group("wa", Channel::Whatsapp).await;

    assert_success(post_v1(&app, &v1_body(group, "subscribed", "phone", json!(["+447700900123"]))).await).await;

    assert_eq!(app.orphan_state(&phone("+447700900123"), group).await, Some(Subscribed));
    assert!(app.carriers(&phone("+447700900123")).await.is_empty());
    assert!(app.profile("+447700900123").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn external_id_and_email_together_are_both_applied() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = json!({ "subscription_group_id": group.to_string(), "subscription_state": "unsubscribed",
        "external_id": "external_identifier", "email": ["example1@email.com", "example2@email.com"] });
    assert_success(post_v1(&app, &request).await).await;

    assert_eq!(app.state_of("external_identifier", group).await, Some(Unsubscribed));
    assert_eq!(app.orphan_state(&email("example1@email.com"), group).await, Some(Unsubscribed));
    assert_eq!(app.orphan_state(&email("example2@email.com"), group).await, Some(Unsubscribed));
    assert_eq!(app.changes().await.len(), 3);
    app.shutdown().await;
}

#[tokio::test]
async fn a_profile_reached_by_external_id_and_by_email_in_one_request_changes_once() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[("alice", Some("alice@example.com"), None)]).await;

    let request = json!({ "subscription_group_id": group.to_string(), "subscription_state": "subscribed",
        "external_id": "alice", "email": "alice@example.com" });
    assert_success(post_v1(&app, &request).await).await;

    assert_eq!(app.state_of("alice", group).await, Some(Subscribed));
    assert_eq!(app.changes().await.len(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn external_ids_work_for_every_channel() {
    let app = spawn_app().await;
    for (name, channel) in [("e", Channel::Email), ("s", Channel::Sms), ("w", Channel::Whatsapp)] {
        let group = app.create_group(name, channel).await;
        assert_success(post_v1(&app, &v1_body(group, "subscribed", "external_id", json!("user-1"))).await).await;
        assert_eq!(app.state_of("user-1", group).await, Some(Subscribed), "{name}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn the_same_identifier_twice_counts_once() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = json!({ "subscription_group_id": group.to_string(), "subscription_state": "subscribed",
        "external_id": ["u", "u"], "email": ["x@example.com", "X@Example.com"] });
    assert_success(post_v1(&app, &request).await).await;

    assert_eq!(app.changes().await.len(), 2);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Email and phone together

#[tokio::test]
async fn email_and_phone_together_answer_400_with_brazes_exact_message() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = json!({ "subscription_group_id": group.to_string(), "subscription_state": "subscribed",
        "email": "a@example.com", "phone": "+12223334444" });
    let message = assert_bad_request(post_v1(&app, &request).await).await;

    assert_eq!(message, BOTH_MESSAGE);
    assert_eq!(app.orphan_state(&email("a@example.com"), group).await, None);
    assert!(app.changes().await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn email_and_phone_arrays_together_with_an_external_id_answer_the_same_message_and_apply_nothing() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;

    let request = json!({ "subscription_group_id": group.to_string(), "subscription_state": "subscribed",
        "external_id": ["u"], "email": ["a@example.com"], "phone": ["+12223334444"] });
    let message = assert_bad_request(post_v1(&app, &request).await).await;

    assert_eq!(message, BOTH_MESSAGE);
    assert!(app.profile("u").await.is_none());
    assert_eq!(app.orphan_state(&phone("+12223334444"), group).await, None);
    assert!(app.changes().await.is_empty());
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Validation errors name the field and the value

#[tokio::test]
async fn an_invalid_email_in_an_array_is_named_by_its_index_and_value() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = v1_body(group, "subscribed", "email", json!(["ok@example.com", "not-an-email"]));
    let message = assert_bad_request(post_v1(&app, &request).await).await;

    assert!(message.starts_with("email[1]: \"not-an-email\""), "{message}");
    assert!(message.contains("not a valid email address"), "{message}");
    assert_eq!(app.orphan_state(&email("ok@example.com"), group).await, None, "nothing is applied");
    app.shutdown().await;
}

#[tokio::test]
async fn an_invalid_email_given_as_a_string_is_named_by_the_bare_field() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let message = assert_bad_request(post_v1(&app, &v1_body(group, "subscribed", "email", json!("bob@"))).await).await;

    assert!(message.starts_with("email: \"bob@\""), "{message}");
    assert!(message.contains("not a valid email address"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_invalid_phone_given_as_a_string_is_named_by_the_bare_field() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;

    let message =
        assert_bad_request(post_v1(&app, &v1_body(group, "subscribed", "phone", json!("+1 555"))).await).await;

    assert!(message.starts_with("phone: \"+1 555\""), "{message}");
    assert!(message.contains("E.164"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_invalid_phone_in_an_array_is_named_by_its_index_and_value() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;

    let request = v1_body(group, "subscribed", "phone", json!(["+12223334444", "12223334444"]));
    let message = assert_bad_request(post_v1(&app, &request).await).await;

    assert!(message.starts_with("phone[1]: \"12223334444\""), "{message}");
    assert_eq!(app.orphan_state(&phone("+12223334444"), group).await, None, "nothing is applied");
    app.shutdown().await;
}

#[tokio::test]
async fn an_empty_external_id_is_named_by_its_index() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let message =
        assert_bad_request(post_v1(&app, &v1_body(group, "subscribed", "external_id", json!(["ok", ""]))).await).await;

    assert!(message.starts_with("external_id[1]:"), "{message}");
    assert!(app.profile("ok").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn a_number_among_the_identifiers_is_refused_naming_the_item() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let message =
        assert_bad_request(post_v1(&app, &v1_body(group, "subscribed", "external_id", json!(["u", 7]))).await).await;

    assert!(message.starts_with("external_id[1]:"), "{message}");
    assert!(message.contains("number"), "{message}");
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Limits and required fields

fn numbered(field: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| match field {
            "external_id" => format!("user-{i}"),
            "email" => format!("user{i}@example.com"),
            _ => format!("+1222333{i:04}"),
        })
        .collect()
}

#[tokio::test]
async fn fifty_identifiers_are_accepted_in_each_field() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;

    for (group, field) in [(news, "external_id"), (news, "email"), (sms, "phone")] {
        assert_success(post_v1(&app, &v1_body(group, "subscribed", field, json!(numbered(field, 50)))).await).await;
    }

    assert_eq!(app.changes().await.len(), 150);
    app.shutdown().await;
}

#[tokio::test]
async fn fifty_one_identifiers_in_any_field_are_refused_naming_the_field_and_count() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;

    for (group, field) in [(news, "external_id"), (news, "email"), (sms, "phone")] {
        let message =
            assert_bad_request(post_v1(&app, &v1_body(group, "subscribed", field, json!(numbered(field, 51)))).await)
                .await;
        assert!(message.starts_with(&format!("{field}:")), "{message}");
        assert!(message.contains("51"), "{message}");
    }

    assert!(app.changes().await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn an_empty_identifier_array_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;

    for (group, field) in [(news, "external_id"), (news, "email"), (sms, "phone")] {
        let message = assert_bad_request(post_v1(&app, &v1_body(group, "subscribed", field, json!([]))).await).await;
        assert!(message.starts_with(&format!("{field}:")), "{message}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_request_without_any_identifier_is_refused() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = json!({ "subscription_group_id": group.to_string(), "subscription_state": "subscribed" });
    let message = assert_bad_request(post_v1(&app, &request).await).await;

    assert!(message.contains("external_id"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn v2_plural_field_names_are_not_v1_identifiers() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = json!({ "subscription_group_id": group.to_string(), "subscription_state": "subscribed",
        "external_ids": ["u"] });
    assert_bad_request(post_v1(&app, &request).await).await;

    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn a_missing_subscription_group_id_is_refused_naming_it() {
    let app = spawn_app().await;

    let request = json!({ "subscription_state": "subscribed", "external_id": "u" });
    let message = assert_bad_request(post_v1(&app, &request).await).await;

    assert!(message.starts_with("subscription_group_id:"), "{message}");
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn a_missing_or_misspelled_subscription_state_is_refused_naming_it_and_the_value() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let missing = json!({ "subscription_group_id": group.to_string(), "external_id": "u" });
    let message = assert_bad_request(post_v1(&app, &missing).await).await;
    assert!(message.starts_with("subscription_state:"), "{message}");

    for state in ["Subscribed", "opted_in", ""] {
        let message = assert_bad_request(post_v1(&app, &v1_body(group, state, "external_id", json!("u"))).await).await;
        assert!(message.starts_with("subscription_state:"), "{state:?}: {message}");
        assert!(message.contains(&serde_json::to_string(state).unwrap()), "{state:?}: {message}");
    }
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_refused() {
    let app = spawn_app().await;

    for body in [json!([]), json!("subscribed"), json!(null)] {
        assert_bad_request(post_v1(&app, &body).await).await;
    }
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Channels and groups

#[tokio::test]
async fn an_email_on_an_sms_or_whatsapp_group_is_refused_naming_the_field_and_group() {
    let app = spawn_app().await;
    let sms = app.create_group("sms", Channel::Sms).await;
    let wa = app.create_group("wa", Channel::Whatsapp).await;

    for group in [sms, wa] {
        let message =
            assert_bad_request(post_v1(&app, &v1_body(group, "subscribed", "email", json!("a@example.com"))).await)
                .await;
        assert!(message.starts_with("email"), "{message}");
        assert!(message.contains(&group.to_string()), "{message}");
        assert_eq!(app.orphan_state(&email("a@example.com"), group).await, None);
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_phone_on_an_email_group_is_refused_naming_the_field_and_group() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let message =
        assert_bad_request(post_v1(&app, &v1_body(group, "subscribed", "phone", json!(["+12223334444"]))).await).await;

    assert!(message.starts_with("phone"), "{message}");
    assert!(message.contains(&group.to_string()), "{message}");
    assert_eq!(app.orphan_state(&phone("+12223334444"), group).await, None);
    app.shutdown().await;
}

#[tokio::test]
async fn an_unknown_group_is_refused_naming_the_group_id() {
    let app = spawn_app().await;
    let unknown = GroupId::generate();

    let message =
        assert_bad_request(post_v1(&app, &v1_body(unknown, "subscribed", "external_id", json!("u"))).await).await;

    assert!(message.starts_with("subscription_group_id:"), "{message}");
    assert!(message.contains(&unknown.to_string()), "{message}");
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn a_group_of_another_workspace_is_an_unknown_group() {
    let app = spawn_app().await;
    app.create_workspace_with_key("other", &[Permission::SubscriptionStatusSet]).await;
    let foreign = app.catalog.create_group("other", "news", Channel::Email).await.unwrap().id;

    let message =
        assert_bad_request(post_v1(&app, &v1_body(foreign, "subscribed", "external_id", json!("u"))).await).await;

    assert!(message.contains(&foreign.to_string()), "{message}");
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn an_archived_group_is_refused_naming_the_group_id_and_keeps_its_states() {
    let app = spawn_app().await;
    let group = app.create_group("old", Channel::Email).await;
    assert_success(post_v1(&app, &v1_body(group, "subscribed", "external_id", json!("u"))).await).await;
    app.archive_group(group).await;

    let message =
        assert_bad_request(post_v1(&app, &v1_body(group, "unsubscribed", "external_id", json!("u"))).await).await;

    assert!(message.starts_with("subscription_group_id:"), "{message}");
    assert!(message.contains(&group.to_string()), "{message}");
    assert!(message.contains("archived"), "{message}");
    assert_eq!(app.state_of("u", group).await, Some(Subscribed));
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Change records and permissions

#[tokio::test]
async fn a_change_record_names_the_v1_endpoint_the_key_and_the_request() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;
    let keys = app.catalog.keys("default").unwrap();

    let request = json!({ "subscription_group_id": group.to_string(), "subscription_state": "subscribed",
        "phone": "+12223334444", "use_double_opt_in_logic": true });
    let response = post_v1(&app, &request).await;
    let header = response.headers().get("x-request-id").expect("an x-request-id header").to_str().unwrap().to_string();
    assert_success(response).await;

    let changes = app.changes().await;
    assert_eq!(changes.len(), 1);
    let change = &changes[0];
    assert_eq!(change.trace.endpoint.unwrap(), Endpoint::V1StatusSet);
    assert_eq!(change.trace.endpoint.unwrap().path(), "/subscription/status/set");
    assert_eq!(change.trace.api_key_id.unwrap(), keys[0].id);
    assert_eq!(Some(change.trace.request_id.unwrap()), RequestId::parse(&header));
    assert_eq!(change.subject.contact(), Some(&phone("+12223334444")));
    assert_eq!(change.group.storage_id(), group);
    assert_eq!((change.old, change.new), (None, Subscribed));
    assert!(change.use_double_opt_in_logic);
    app.shutdown().await;
}

#[tokio::test]
async fn setting_a_state_to_what_it_already_is_records_nothing() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    assert_success(post_v1(&app, &v1_body(group, "subscribed", "external_id", json!("u"))).await).await;
    let before = app.changes().await;

    assert_success(post_v1(&app, &v1_body(group, "subscribed", "external_id", json!(["u"]))).await).await;

    assert_eq!(app.changes().await, before);
    app.shutdown().await;
}

#[tokio::test]
async fn a_string_as_use_double_opt_in_logic_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;

    let request = json!({ "subscription_group_id": group.to_string(), "subscription_state": "subscribed",
        "phone": "+12223334444", "use_double_opt_in_logic": "yes" });
    let message = assert_bad_request(post_v1(&app, &request).await).await;

    assert!(message.starts_with("use_double_opt_in_logic:"), "{message}");
    assert!(app.changes().await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn a_key_without_subscription_status_set_is_forbidden_and_changes_nothing() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let reader = app.create_key(&[Permission::SubscriptionStatusGet, Permission::UsersTrack]).await;
    let setter = app.create_key(&[Permission::SubscriptionStatusSet]).await;

    let request = v1_body(group, "subscribed", "external_id", json!("u"));
    assert_error(app.post_json_with_key(V1_PATH, Some(&reader), &request).await, StatusCode::FORBIDDEN).await;
    assert!(app.profile("u").await.is_none());

    assert_success(app.post_json_with_key(V1_PATH, Some(&setter), &request).await).await;
    assert_eq!(app.state_of("u", group).await, Some(Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn a_request_without_a_key_is_unauthorized() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let response =
        app.post_json_with_key(V1_PATH, None, &v1_body(group, "subscribed", "external_id", json!("u"))).await;
    let (status, body) = status_and_json(response).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn an_empty_external_id_list_beside_an_email_means_no_external_ids() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let body = json!({ "subscription_group_id": group.to_string(), "subscription_state": "unsubscribed",
                       "external_id": [], "email": "typed@example.com" });

    assert_success(post_v1(&app, &body).await).await;

    assert_eq!(app.orphan_state(&email("typed@example.com"), group).await, Some(Unsubscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn an_empty_external_id_list_alone_is_still_refused() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let body = v1_body(group, "subscribed", "external_id", json!([]));

    let message = assert_bad_request(post_v1(&app, &body).await).await;

    assert!(message.starts_with("external_id: must hold 1 to 50"), "{message}");
    app.shutdown().await;
}
