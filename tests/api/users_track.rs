//! `POST /users/track`, the subset that serves subscriptions: profiles, their email and phone,
//! group states, per-object errors, and the inheritance of orphaned identifier state
//! (SPEC.md and issue3-decisions.md, "POST /users/track").

use std::time::Duration;

use consentry::domain::change::{Endpoint, Subject};
use consentry::domain::ids::{GroupId, RequestId};
use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::{Subscribed, Unsubscribed};
use consentry::domain::tenant::Permission;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_bad_request, assert_error, assert_success, by_external_ids, email, one_entry, phone, spawn_app,
    spawn_app_with, status_and_json, TestApp, TRACK_PATH,
};

fn sg(group: GroupId, state: &str) -> Value {
    json!({ "subscription_group_id": group.to_string(), "subscription_state": state })
}

fn processed(n: usize) -> Value {
    json!({ "message": "success", "attributes_processed": n })
}

/// Tracks `attributes` and asserts a 201 with exactly `attributes_processed: n` and no errors.
async fn track_ok(app: &TestApp, attributes: Value, n: usize) {
    let (status, body) = app.track(attributes).await;
    assert_eq!((status, body), (StatusCode::CREATED, processed(n)));
}

/// The `errors` of a 201 answer, checked for their shape; returns `(index, type)` pairs.
fn object_errors(body: &Value) -> Vec<(u64, String)> {
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("no errors list: {body}"));
    errors
        .iter()
        .map(|e| {
            let object = e.as_object().unwrap_or_else(|| panic!("an error item is an object: {body}"));
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(keys, vec!["index", "input_array", "type"], "{body}");
            assert_eq!(e["input_array"], "attributes", "{body}");
            (e["index"].as_u64().expect("a numeric index"), e["type"].as_str().expect("a string type").to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Profiles, emails and phones

#[tokio::test]
async fn an_unknown_external_id_creates_a_profile_with_a_normalized_email_and_a_phone() {
    let app = spawn_app().await;

    track_ok(&app, json!([{ "external_id": "ada", "email": "Ada@Example.COM", "phone": "+12223334444" }]), 1).await;

    let profile = app.profile("ada").await.expect("the profile is created");
    assert_eq!(profile.email.as_deref(), Some("ada@example.com"));
    assert_eq!(profile.phone.as_deref(), Some("+12223334444"));
    assert!(profile.states.is_empty());
    assert_eq!(app.carriers(&email("ada@example.com")).await.len(), 1);
    assert_eq!(app.carriers(&phone("+12223334444")).await.len(), 1);
    assert!(app.changes().await.is_empty(), "no state changed");
    app.shutdown().await;
}

#[tokio::test]
async fn an_existing_profile_keeps_its_id_and_an_absent_field_is_unchanged() {
    let app = spawn_app().await;
    app.import(&[("u", Some("old@example.com"), Some("+12223334444"))]).await;
    let before = app.profile("u").await.unwrap();

    track_ok(&app, json!([{ "external_id": "u", "phone": "+15556667777" }]), 1).await;

    let after = app.profile("u").await.unwrap();
    assert_eq!(after.id, before.id);
    assert_eq!(after.email.as_deref(), Some("old@example.com"));
    assert_eq!(after.phone.as_deref(), Some("+15556667777"));
    assert!(app.carriers(&phone("+12223334444")).await.is_empty(), "the old phone no longer reaches the profile");
    app.shutdown().await;
}

#[tokio::test]
async fn a_null_email_or_phone_removes_it() {
    let app = spawn_app().await;
    app.import(&[("u", Some("old@example.com"), Some("+12223334444"))]).await;

    track_ok(&app, json!([{ "external_id": "u", "email": null, "phone": null }]), 1).await;

    let profile = app.profile("u").await.unwrap();
    assert_eq!((profile.email, profile.phone), (None, None));
    assert!(app.carriers(&email("old@example.com")).await.is_empty());
    assert!(app.carriers(&phone("+12223334444")).await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn a_changed_email_is_what_v2_email_targeting_reaches_afterwards() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    app.import(&[("u", Some("old@example.com"), None)]).await;

    track_ok(&app, json!([{ "external_id": "u", "email": "New@Example.com" }]), 1).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["new@example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["old@example.com"])).await).await;

    assert_eq!(app.state_of("u", news).await, Some(Subscribed));
    assert_eq!(app.orphan_state(&email("old@example.com"), news).await, Some(Unsubscribed));
    assert_eq!(app.orphan_state(&email("new@example.com"), news).await, None);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Subscription groups

#[tokio::test]
async fn subscription_groups_are_applied_with_change_records_naming_users_track() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;
    let keys = app.catalog.keys("default").unwrap();

    let response = app
        .post_json(
            TRACK_PATH,
            &json!({ "attributes": [ { "external_id": "u",
                "subscription_groups": [ sg(news, "subscribed"), sg(sms, "unsubscribed") ] } ] }),
        )
        .await;
    let request_id = response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_string());
    let (status, body) = status_and_json(response).await;
    assert_eq!((status, body), (StatusCode::CREATED, processed(1)));

    assert_eq!(app.state_of("u", news).await, Some(Subscribed));
    assert_eq!(app.state_of("u", sms).await, Some(Unsubscribed));
    let changes = app.changes().await;
    assert_eq!(changes.len(), 2);
    let profile = app.profile("u").await.unwrap().id;
    for change in &changes {
        assert_eq!(change.subject, Subject::Profile(profile));
        assert_eq!(change.trace.endpoint.unwrap(), Endpoint::UsersTrack);
        assert_eq!(change.trace.endpoint.unwrap().path(), "/users/track");
        assert_eq!(change.trace.api_key_id.unwrap(), keys[0].id);
        assert_eq!(Some(change.trace.request_id.unwrap()), request_id.as_deref().and_then(RequestId::parse));
        assert_eq!(change.old, None);
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_state_that_is_already_set_records_nothing() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u"])).await).await;
    let before = app.changes().await;

    track_ok(&app, json!([{ "external_id": "u", "subscription_groups": [ sg(news, "subscribed") ] }]), 1).await;

    assert_eq!(app.changes().await, before);
    app.shutdown().await;
}

#[tokio::test]
async fn a_later_object_for_the_same_external_id_wins() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;

    let (status, body) = app
        .track(json!([
            { "external_id": "u", "email": "first@example.com", "subscription_groups": [ sg(news, "subscribed") ] },
            { "external_id": "u", "email": "second@example.com", "subscription_groups": [ sg(news, "unsubscribed") ] },
        ]))
        .await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"], "success", "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    let profile = app.profile("u").await.unwrap();
    assert_eq!(profile.email.as_deref(), Some("second@example.com"));
    assert_eq!(app.state_of("u", news).await, Some(Unsubscribed));
    assert!(app.carriers(&email("first@example.com")).await.is_empty());
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Per-object errors

#[tokio::test]
async fn an_invalid_object_is_skipped_and_reported_and_the_others_are_applied() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let old = app.create_group("old", Channel::Email).await;
    app.archive_group(old).await;
    let unknown = GroupId::generate();

    let (status, body) = app
        .track(json!([
            { "external_id": "ok-1", "email": "ok1@example.com", "subscription_groups": [ sg(news, "subscribed") ] },
            { "user_alias": { "alias_name": "a", "alias_label": "b" }, "email": "alias@example.com",
              "subscription_groups": [ sg(news, "subscribed") ] },
            { "external_id": "bad-email", "email": "not-an-email", "subscription_groups": [ sg(news, "subscribed") ] },
            { "external_id": "bad-group", "subscription_groups": [ sg(unknown, "subscribed") ] },
            { "external_id": "archived", "email": "arch@example.com", "subscription_groups": [ sg(news, "subscribed"), sg(old, "subscribed") ] },
            { "external_id": "ok-2", "subscription_groups": [ sg(news, "unsubscribed") ] },
        ]))
        .await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"], "success", "{body}");
    assert_eq!(body["attributes_processed"], 2, "{body}");
    let errors = object_errors(&body);
    assert_eq!(errors.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 2, 3, 4], "{body}");
    assert!(errors[0].1.contains("external_id"), "{body}");
    assert!(errors[1].1.contains("email") && errors[1].1.contains("not-an-email"), "{body}");
    assert!(errors[2].1.contains(&unknown.to_string()), "{body}");
    assert!(errors[3].1.contains(&old.to_string()), "{body}");

    assert_eq!(app.state_of("ok-1", news).await, Some(Subscribed));
    assert_eq!(app.profile("ok-1").await.unwrap().email.as_deref(), Some("ok1@example.com"));
    assert_eq!(app.state_of("ok-2", news).await, Some(Unsubscribed));
    for skipped in ["bad-email", "bad-group", "archived"] {
        assert!(app.profile(skipped).await.is_none(), "a skipped object changes nothing: {skipped}");
    }
    assert!(app.carriers(&email("alias@example.com")).await.is_empty());
    assert!(app.carriers(&email("arch@example.com")).await.is_empty());
    assert_eq!(app.changes().await.len(), 2);
    app.shutdown().await;
}

#[tokio::test]
async fn an_invalid_phone_an_invalid_state_or_a_bad_external_id_skips_the_object() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    app.import(&[("keep", Some("keep@example.com"), Some("+12223334444"))]).await;

    let (status, body) = app
        .track(json!([
            { "external_id": "keep", "phone": "+1 555", "email": "changed@example.com" },
            { "external_id": "state", "subscription_groups": [ sg(news, "Subscribed") ] },
            { "external_id": "" },
            { "external_id": 42 },
            { "external_id": "x".repeat(513) },
        ]))
        .await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["attributes_processed"], 0, "{body}");
    let errors = object_errors(&body);
    assert_eq!(errors.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4], "{body}");
    assert!(errors[0].1.contains("phone") && errors[0].1.contains("+1 555"), "{body}");
    assert!(errors[1].1.contains("subscription_state") && errors[1].1.contains("Subscribed"), "{body}");
    let keep = app.profile("keep").await.unwrap();
    assert_eq!(keep.email.as_deref(), Some("keep@example.com"), "a skipped object changes nothing");
    assert_eq!(keep.phone.as_deref(), Some("+12223334444"));
    assert!(app.profile("state").await.is_none());
    assert!(app.changes().await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn all_objects_invalid_still_answers_201_with_zero_processed() {
    let app = spawn_app().await;

    let (status, body) = app.track(json!([{ "email": "a@example.com" }, { "braze_id": "b" }])).await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"], "success");
    assert_eq!(body["attributes_processed"], 0);
    assert_eq!(object_errors(&body).iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 1]);
    assert!(app.carriers(&email("a@example.com")).await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn an_empty_attributes_array_is_accepted_with_zero_processed() {
    let app = spawn_app().await;

    track_ok(&app, json!([]), 0).await;

    assert!(app.changes().await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn seventy_five_objects_are_accepted() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let objects: Vec<Value> = (0..75)
        .map(|i| json!({ "external_id": format!("u{i}"), "subscription_groups": [ sg(news, "subscribed") ] }))
        .collect();

    track_ok(&app, json!(objects), 75).await;

    assert_eq!(app.changes().await.len(), 75);
    app.shutdown().await;
}

#[tokio::test]
async fn more_than_75_objects_is_fatal_and_applies_nothing() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let objects: Vec<Value> = (0..76)
        .map(|i| json!({ "external_id": format!("u{i}"), "subscription_groups": [ sg(news, "subscribed") ] }))
        .collect();

    let message = assert_bad_request(app.post_json(TRACK_PATH, &json!({ "attributes": objects })).await).await;

    assert!(message.contains("attributes"), "{message}");
    assert!(message.contains("76") || message.contains("75"), "{message}");
    assert!(app.profile("u0").await.is_none());
    assert!(app.changes().await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn a_body_with_nothing_to_track_or_of_the_wrong_shape_is_refused() {
    let app = spawn_app().await;

    for body in [json!({}), json!([]), json!({ "attributes": { "external_id": "u" } }), json!({ "attributes": "u" })] {
        assert_bad_request(app.post_json(TRACK_PATH, &body).await).await;
    }
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// What is ignored

#[tokio::test]
async fn unknown_attribute_keys_events_and_purchases_are_ignored() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;

    let request = json!({
        "attributes": [ { "external_id": "u", "first_name": "Ada", "last_name": "Lovelace", "country": "GB",
            "string_attribute": "fruit", "boolean_attribute_1": true, "integer_attribute": 25,
            "array_attribute": ["banana", "apple"], "nested": { "a": { "b": [1, 2, 3] } },
            "email_subscribe": "opted_in", "_update_existing_only": false,
            "subscription_groups": [ sg(news, "subscribed") ] } ],
        "events": [ { "external_id": "u", "name": "rented_movie", "time": "2022-12-06T19:20:45+01:00" } ],
        "purchases": [ { "external_id": "u", "product_id": "p", "currency": "USD", "price": 12.12,
            "time": "2017-05-12T18:47:12Z" } ],
        "something_else": 1,
    });
    let (status, body) = status_and_json(app.post_json(TRACK_PATH, &request).await).await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"], "success", "{body}");
    assert_eq!(body["attributes_processed"], 1, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(app.state_of("u", news).await, Some(Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn events_or_purchases_alone_are_accepted_and_change_nothing() {
    let app = spawn_app().await;

    for request in [
        json!({ "events": [ { "external_id": "e", "name": "x", "time": "2022-12-06T19:20:45Z" } ] }),
        json!({ "purchases": [ { "external_id": "p", "product_id": "x", "currency": "USD", "price": 1,
            "time": "2022-12-06T19:20:45Z" } ] }),
    ] {
        let (status, body) = status_and_json(app.post_json(TRACK_PATH, &request).await).await;
        assert_eq!(status, StatusCode::CREATED, "{request}: {body}");
        assert_eq!(body["message"], "success", "{body}");
    }
    assert!(app.profile("e").await.is_none());
    assert!(app.profile("p").await.is_none());
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Inheritance of orphaned identifier state

#[tokio::test]
async fn a_new_email_inherits_its_orphaned_states_which_then_leave_the_orphan() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let promo = app.create_group("promo", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["heir@example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(promo, "unsubscribed", "emails", &["heir@example.com"])).await).await;

    let response = app
        .post_json(TRACK_PATH, &json!({ "attributes": [ { "external_id": "u", "email": "Heir@Example.com" } ] }))
        .await;
    let request_id = response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_string());
    let (status, body) = status_and_json(response).await;
    assert_eq!((status, body), (StatusCode::CREATED, processed(1)));

    assert_eq!(app.state_of("u", news).await, Some(Subscribed));
    assert_eq!(app.state_of("u", promo).await, Some(Unsubscribed));
    assert_eq!(app.orphan_state(&email("heir@example.com"), news).await, None);
    assert_eq!(app.orphan_state(&email("heir@example.com"), promo).await, None);
    let profile = app.profile("u").await.unwrap().id;
    let inherited: Vec<_> =
        app.changes().await.into_iter().filter(|c| c.subject == Subject::Profile(profile)).collect();
    assert_eq!(inherited.len(), 2, "{inherited:?}");
    for change in &inherited {
        assert_eq!(change.trace.endpoint.unwrap(), Endpoint::UsersTrack);
        assert_eq!(Some(change.trace.request_id.unwrap()), request_id.as_deref().and_then(RequestId::parse));
        assert_eq!(change.old, None);
    }
    let mut groups: Vec<_> = inherited.iter().map(|c| (c.group.storage_id(), c.new)).collect();
    groups.sort_by_key(|(g, _)| g.to_string());
    let mut expected = vec![(news, Subscribed), (promo, Unsubscribed)];
    expected.sort_by_key(|(g, _)| g.to_string());
    assert_eq!(groups, expected);
    app.shutdown().await;
}

#[tokio::test]
async fn a_new_phone_inherits_its_orphaned_states() {
    let app = spawn_app().await;
    let sms = app.create_group("sms", Channel::Sms).await;
    assert_success(app.post_v2(&one_entry(sms, "unsubscribed", "phones", &["+15556667777"])).await).await;
    app.import(&[("u", None, None)]).await;

    track_ok(&app, json!([{ "external_id": "u", "phone": "+15556667777" }]), 1).await;

    assert_eq!(app.state_of("u", sms).await, Some(Unsubscribed));
    assert_eq!(app.orphan_state(&phone("+15556667777"), sms).await, None);
    app.shutdown().await;
}

#[tokio::test]
async fn the_objects_own_subscription_groups_win_over_inherited_states() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let promo = app.create_group("promo", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["heir@example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(promo, "subscribed", "emails", &["heir@example.com"])).await).await;

    track_ok(
        &app,
        json!([{ "external_id": "u", "email": "heir@example.com", "subscription_groups": [ sg(news, "unsubscribed") ] }]),
        1,
    )
    .await;

    assert_eq!(app.state_of("u", news).await, Some(Unsubscribed));
    assert_eq!(app.state_of("u", promo).await, Some(Subscribed), "the other inherited state stays");
    assert_eq!(app.orphan_state(&email("heir@example.com"), news).await, None);
    let profile = app.profile("u").await.unwrap().id;
    let last_news = app
        .changes()
        .await
        .into_iter()
        .rfind(|c| c.subject == Subject::Profile(profile) && c.group.storage_id() == news)
        .expect("a change record for news");
    assert_eq!(last_news.new, Unsubscribed);
    app.shutdown().await;
}

#[tokio::test]
async fn an_orphaned_state_older_than_the_profiles_own_does_not_override_it() {
    let app = spawn_app_with(|settings| settings.clock = crate::helpers::manual_clock()).await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["heir@example.com"])).await).await;
    app.clock.advance(Duration::from_millis(5));
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u"])).await).await;
    let before = app.changes().await;

    track_ok(&app, json!([{ "external_id": "u", "email": "heir@example.com" }]), 1).await;

    assert_eq!(app.state_of("u", news).await, Some(Subscribed), "the profile's newer state stays");
    assert_eq!(app.changes().await, before, "nothing changed, nothing recorded");
    assert_eq!(
        app.orphan_state(&email("heir@example.com"), news).await,
        None,
        "the orphaned states moved to the profile"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn an_orphaned_state_newer_than_the_profiles_own_overrides_it() {
    let app = spawn_app_with(|settings| settings.clock = crate::helpers::manual_clock()).await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u"])).await).await;
    app.clock.advance(Duration::from_millis(5));
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["heir@example.com"])).await).await;

    track_ok(&app, json!([{ "external_id": "u", "email": "heir@example.com" }]), 1).await;

    assert_eq!(app.state_of("u", news).await, Some(Unsubscribed));
    let last = app.changes().await.pop().unwrap();
    assert_eq!(
        (last.old, last.new, last.trace.endpoint.unwrap()),
        (Some(Subscribed), Unsubscribed, Endpoint::UsersTrack)
    );
    assert_eq!(app.orphan_state(&email("heir@example.com"), news).await, None);
    app.shutdown().await;
}

#[tokio::test]
async fn an_expired_orphaned_state_is_not_inherited() {
    let app = spawn_app_with(|settings| {
        settings.orphan_retention = consentry::domain::retention::Retention::new(Duration::from_secs(1));
        settings.orphan_sweep_interval = Duration::from_secs(3600);
        settings.clock = crate::helpers::manual_clock();
    })
    .await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["late@example.com"])).await).await;
    let before = app.changes().await;

    app.clock.advance(Duration::from_millis(1500));
    track_ok(&app, json!([{ "external_id": "u", "email": "late@example.com" }]), 1).await;

    assert_eq!(app.state_of("u", news).await, None);
    assert_eq!(app.changes().await, before, "nothing inherited, nothing recorded");
    app.shutdown().await;
}

#[tokio::test]
async fn re_sending_the_email_a_profile_already_has_inherits_nothing() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["same@example.com"])).await).await;
    // The import does not apply inheritance: the orphaned state stays beside the new carrier.
    app.import(&[("u", Some("same@example.com"), None)]).await;
    let before = app.changes().await;

    track_ok(&app, json!([{ "external_id": "u", "email": "SAME@example.com" }]), 1).await;

    assert_eq!(app.state_of("u", news).await, None, "the email is not new to the profile");
    assert_eq!(app.changes().await, before);
    app.shutdown().await;
}

#[tokio::test]
async fn two_profiles_taking_the_same_orphaned_email_in_one_request_only_the_first_inherits() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["heir@example.com"])).await).await;

    let (status, body) = app
        .track(json!([
            { "external_id": "first", "email": "heir@example.com" },
            { "external_id": "second", "email": "heir@example.com" },
        ]))
        .await;

    assert_eq!((status, body), (StatusCode::CREATED, processed(2)));
    assert_eq!(app.state_of("first", news).await, Some(Subscribed));
    assert_eq!(app.state_of("second", news).await, None, "the orphaned state moved to the first profile");
    assert_eq!(app.orphan_state(&email("heir@example.com"), news).await, None);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Authentication and permission

#[tokio::test]
async fn the_users_track_permission_is_required() {
    let app = spawn_app().await;
    let body = json!({ "attributes": [ { "external_id": "u" } ] });

    assert_error(app.post_json_with_key(TRACK_PATH, None, &body).await, StatusCode::UNAUTHORIZED).await;
    let without = app
        .create_key(&[
            Permission::SubscriptionStatusSet,
            Permission::SubscriptionStatusGet,
            Permission::SubscriptionGroupsGet,
            Permission::UsersDelete,
        ])
        .await;
    assert_error(app.post_json_with_key(TRACK_PATH, Some(&without), &body).await, StatusCode::FORBIDDEN).await;
    assert!(app.profile("u").await.is_none());

    let with = app.create_key(&[Permission::UsersTrack]).await;
    let (status, answer) = status_and_json(app.post_json_with_key(TRACK_PATH, Some(&with), &body).await).await;
    assert_eq!((status, answer), (StatusCode::CREATED, processed(1)));
    assert!(app.profile("u").await.is_some());
    app.shutdown().await;
}
