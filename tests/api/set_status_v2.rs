//! `POST /v2/subscription/status/set`: what each field means, every limit and every
//! combination rule of SPEC.md, checked over real HTTP against the store.

use std::collections::{BTreeMap, BTreeSet};

use consentry::domain::change::Subject;
use consentry::domain::ids::GroupId;
use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::{Subscribed, Unsubscribed};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::helpers::{
    assert_bad_request, assert_success, by_external_ids, email, one_entry, phone, spawn_app, TestApp,
};

fn entry(group: GroupId, state: &str, field: &str, values: Value) -> Value {
    json!({ "subscription_group_id": group.to_string(), "subscription_state": state, field: values })
}

fn body(entries: Vec<Value>) -> Value {
    json!({ "subscription_groups": entries })
}

// ---------------------------------------------------------------------------------------------
// Success and what a request changes

#[tokio::test]
async fn a_valid_request_answers_201_with_exactly_the_success_message() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let response = app.post_v2(&by_external_ids(group, "subscribed", &["user-1"])).await;

    assert_success(response).await;
    app.shutdown().await;
}

#[tokio::test]
async fn an_unknown_external_id_creates_a_profile_with_the_state() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    assert!(app.profile("user-1").await.is_none());

    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["user-1"])).await).await;

    let profile = app.profile("user-1").await.expect("the profile is created");
    assert_eq!(profile.external_id.as_deref(), Some("user-1"));
    assert_eq!(app.state_of("user-1", group).await, Some(Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn a_known_external_id_keeps_its_profile_and_gets_the_new_state() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[("user-1", Some("user1@example.com"), None)]).await;
    let before = app.profile("user-1").await.unwrap();

    assert_success(app.post_v2(&by_external_ids(group, "unsubscribed", &["user-1"])).await).await;

    let after = app.profile("user-1").await.unwrap();
    assert_eq!(after.id, before.id);
    assert_eq!(after.email.as_deref(), Some("user1@example.com"));
    assert_eq!(app.state_of("user-1", group).await, Some(Unsubscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn an_email_updates_every_profile_that_carries_it() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[
        ("alice", Some("shared@example.com"), None),
        ("bob", Some("shared@example.com"), None),
        ("carol", Some("other@example.com"), None),
    ])
    .await;

    assert_success(app.post_v2(&one_entry(group, "subscribed", "emails", &["shared@example.com"])).await).await;

    assert_eq!(app.state_of("alice", group).await, Some(Subscribed));
    assert_eq!(app.state_of("bob", group).await, Some(Subscribed));
    assert_eq!(app.state_of("carol", group).await, None);
    assert_eq!(app.changes().await.len(), 2);
    assert_eq!(app.orphan_state(&email("shared@example.com"), group).await, None);
    app.shutdown().await;
}

#[tokio::test]
async fn email_matching_ignores_case_and_surrounding_white_space() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[("alice", Some("alice@example.com"), None)]).await;

    assert_success(app.post_v2(&one_entry(group, "subscribed", "emails", &["  Alice@EXAMPLE.com\t"])).await).await;

    assert_eq!(app.state_of("alice", group).await, Some(Subscribed));
    assert_eq!(app.orphan_state(&email("alice@example.com"), group).await, None);
    app.shutdown().await;
}

#[tokio::test]
async fn a_phone_updates_every_profile_that_carries_it() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;
    app.import(&[
        ("alice", None, Some("+12223334444")),
        ("bob", None, Some("+12223334444")),
        ("carol", None, Some("+15556667777")),
    ])
    .await;

    assert_success(app.post_v2(&one_entry(group, "subscribed", "phones", &["+12223334444"])).await).await;

    assert_eq!(app.state_of("alice", group).await, Some(Subscribed));
    assert_eq!(app.state_of("bob", group).await, Some(Subscribed));
    assert_eq!(app.state_of("carol", group).await, None);
    app.shutdown().await;
}

#[tokio::test]
async fn an_unknown_email_stores_orphaned_state_and_creates_no_profile() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    assert_success(app.post_v2(&one_entry(group, "unsubscribed", "emails", &["Nobody@Example.com"])).await).await;

    assert_eq!(app.orphan_state(&email("nobody@example.com"), group).await, Some(Unsubscribed));
    assert!(app
        .store
        .inspect()
        .profiles_by_contact(app.workspace, &email("nobody@example.com"))
        .await
        .unwrap()
        .is_empty());
    assert!(app.profile("Nobody@Example.com").await.is_none());
    assert!(app.profile("nobody@example.com").await.is_none());
    let changes = app.changes().await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].subject.contact(), Some(&email("nobody@example.com")));
    app.shutdown().await;
}

#[tokio::test]
async fn an_unknown_phone_stores_orphaned_state_and_creates_no_profile() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;

    assert_success(app.post_v2(&one_entry(group, "subscribed", "phones", &["+12223334444"])).await).await;

    assert_eq!(app.orphan_state(&phone("+12223334444"), group).await, Some(Subscribed));
    assert!(app.store.inspect().profiles_by_contact(app.workspace, &phone("+12223334444")).await.unwrap().is_empty());
    assert!(app.profile("+12223334444").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn an_email_carried_by_a_profile_stores_no_orphaned_state() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[("alice", Some("alice@example.com"), None)]).await;

    assert_success(app.post_v2(&one_entry(group, "subscribed", "emails", &["alice@example.com"])).await).await;

    assert_eq!(app.orphan_state(&email("alice@example.com"), group).await, None);
    assert_eq!(app.changes().await[0].subject, Subject::Profile(app.profile("alice").await.unwrap().id));
    app.shutdown().await;
}

#[tokio::test]
async fn an_orphaned_state_can_be_changed_again_and_its_history_chains() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    assert_success(app.post_v2(&one_entry(group, "subscribed", "emails", &["x@example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(group, "unsubscribed", "emails", &["X@example.com"])).await).await;

    assert_eq!(app.orphan_state(&email("x@example.com"), group).await, Some(Unsubscribed));
    let changes = app.changes().await;
    assert_eq!(changes.len(), 2);
    assert_eq!((changes[0].old, changes[0].new), (None, Subscribed));
    assert_eq!((changes[1].old, changes[1].new), (Some(Subscribed), Unsubscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn entries_are_applied_in_order_so_a_later_entry_for_the_same_profile_and_group_wins() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = body(vec![
        entry(group, "subscribed", "external_ids", json!(["user-1"])),
        entry(group, "unsubscribed", "external_ids", json!(["user-1"])),
    ]);
    assert_success(app.post_v2(&request).await).await;

    assert_eq!(app.state_of("user-1", group).await, Some(Unsubscribed));
    let changes = app.changes().await;
    assert_eq!(changes.len(), 1, "one record of the net change: {changes:?}");
    assert_eq!((changes[0].old, changes[0].new), (None, Unsubscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn a_later_entry_by_email_overrides_an_earlier_entry_by_external_id_for_the_same_profile() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[("alice", Some("alice@example.com"), None)]).await;

    let request = body(vec![
        entry(group, "unsubscribed", "external_ids", json!(["alice"])),
        entry(group, "subscribed", "emails", json!(["alice@example.com"])),
    ]);
    assert_success(app.post_v2(&request).await).await;

    assert_eq!(app.state_of("alice", group).await, Some(Subscribed));
    assert_eq!(app.changes().await.len(), 1, "one record of the net change");
    app.shutdown().await;
}

#[tokio::test]
async fn entries_for_different_groups_are_all_applied() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let promo = app.create_group("promo", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;

    let request = body(vec![
        entry(news, "subscribed", "external_ids", json!(["user-1"])),
        entry(promo, "unsubscribed", "external_ids", json!(["user-1"])),
        entry(sms, "subscribed", "external_ids", json!(["user-1"])),
    ]);
    assert_success(app.post_v2(&request).await).await;

    assert_eq!(app.state_of("user-1", news).await, Some(Subscribed));
    assert_eq!(app.state_of("user-1", promo).await, Some(Unsubscribed));
    assert_eq!(app.state_of("user-1", sms).await, Some(Subscribed));
    assert_eq!(app.profile("user-1").await.unwrap().states.len(), 3);
    app.shutdown().await;
}

#[tokio::test]
async fn a_profile_reached_by_external_id_and_by_email_in_one_entry_changes_once() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[("alice", Some("alice@example.com"), None)]).await;

    let request = body(vec![json!({
        "subscription_group_id": group.to_string(),
        "subscription_state": "subscribed",
        "external_ids": ["alice"],
        "emails": ["alice@example.com"],
    })]);
    assert_success(app.post_v2(&request).await).await;

    assert_eq!(app.state_of("alice", group).await, Some(Subscribed));
    assert_eq!(app.changes().await.len(), 1);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Identifier lists

#[tokio::test]
async fn a_single_string_is_accepted_as_a_list_of_one_for_each_identifier_list() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;

    assert_success(app.post_v2(&body(vec![entry(news, "subscribed", "external_ids", json!("user-1"))])).await).await;
    assert_success(app.post_v2(&body(vec![entry(news, "subscribed", "emails", json!("a@example.com"))])).await).await;
    assert_success(app.post_v2(&body(vec![entry(sms, "subscribed", "phones", json!("+12223334444"))])).await).await;

    assert_eq!(app.state_of("user-1", news).await, Some(Subscribed));
    assert_eq!(app.orphan_state(&email("a@example.com"), news).await, Some(Subscribed));
    assert_eq!(app.orphan_state(&phone("+12223334444"), sms).await, Some(Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn the_same_external_id_twice_in_one_list_counts_once() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["user-1", "user-1"])).await).await;

    assert_eq!(app.changes().await.len(), 1);
    assert_eq!(app.state_of("user-1", group).await, Some(Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn the_same_email_twice_in_one_list_counts_once_even_when_spelled_differently() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[("alice", Some("alice@example.com"), None)]).await;

    let emails = ["alice@example.com", " ALICE@example.com", "x@example.com", "X@Example.COM"];
    assert_success(app.post_v2(&one_entry(group, "subscribed", "emails", &emails)).await).await;

    assert_eq!(app.changes().await.len(), 2, "one change for alice's profile, one for the orphan x@example.com");
    app.shutdown().await;
}

#[tokio::test]
async fn the_same_phone_twice_in_one_list_counts_once() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;

    assert_success(app.post_v2(&one_entry(group, "subscribed", "phones", &["+12223334444", "+12223334444"])).await)
        .await;

    assert_eq!(app.changes().await.len(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn an_external_id_that_looks_like_an_email_is_an_external_id() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    app.import(&[("alice", Some("alice@example.com"), None)]).await;

    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["Alice@Example.com"])).await).await;

    assert_eq!(app.state_of("Alice@Example.com", group).await, Some(Subscribed));
    assert_eq!(app.state_of("alice", group).await, None, "the profile carrying that email is untouched");
    assert_eq!(app.orphan_state(&email("alice@example.com"), group).await, None);
    assert!(app.profile("alice@example.com").await.is_none(), "external ids are not normalized");
    app.shutdown().await;
}

#[tokio::test]
async fn external_ids_are_compared_exactly_without_case_folding_or_trimming() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["User", "user", " user "])).await).await;

    assert_eq!(app.changes().await.len(), 3);
    for id in ["User", "user", " user "] {
        assert_eq!(app.state_of(id, group).await, Some(Subscribed), "{id:?}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn emails_and_external_ids_in_one_entry_are_accepted() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = body(vec![json!({
        "subscription_group_id": group.to_string(),
        "subscription_state": "subscribed",
        "external_ids": ["user-1"],
        "emails": ["someone@example.com"],
    })]);
    assert_success(app.post_v2(&request).await).await;

    assert_eq!(app.state_of("user-1", group).await, Some(Subscribed));
    assert_eq!(app.orphan_state(&email("someone@example.com"), group).await, Some(Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn phones_and_external_ids_in_one_entry_are_accepted() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;

    let request = body(vec![json!({
        "subscription_group_id": group.to_string(),
        "subscription_state": "subscribed",
        "external_ids": ["user-1"],
        "phones": ["+12223334444"],
    })]);
    assert_success(app.post_v2(&request).await).await;

    assert_eq!(app.state_of("user-1", group).await, Some(Subscribed));
    assert_eq!(app.orphan_state(&phone("+12223334444"), group).await, Some(Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn external_ids_work_for_every_channel() {
    let app = spawn_app().await;
    for (name, channel) in [("e", Channel::Email), ("s", Channel::Sms), ("w", Channel::Whatsapp)] {
        let group = app.create_group(name, channel).await;
        assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["user-1"])).await).await;
        assert_eq!(app.state_of("user-1", group).await, Some(Subscribed));
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_whatsapp_group_takes_phones() {
    let app = spawn_app().await;
    let group = app.create_group("wa", Channel::Whatsapp).await;
    app.import(&[("alice", None, Some("+447700900123"))]).await;

    assert_success(app.post_v2(&one_entry(group, "subscribed", "phones", &["+447700900123"])).await).await;

    assert_eq!(app.state_of("alice", group).await, Some(Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn use_double_opt_in_logic_is_recorded_on_the_change_record() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;

    let request = body(vec![
        json!({ "subscription_group_id": group.to_string(), "subscription_state": "subscribed",
                "phones": ["+12223334444"], "use_double_opt_in_logic": true }),
        json!({ "subscription_group_id": group.to_string(), "subscription_state": "subscribed",
                "external_ids": ["absent-flag"] }),
        json!({ "subscription_group_id": group.to_string(), "subscription_state": "subscribed",
                "external_ids": ["false-flag"], "use_double_opt_in_logic": false }),
    ]);
    assert_success(app.post_v2(&request).await).await;

    let flags: Vec<bool> = app.changes().await.iter().map(|c| c.use_double_opt_in_logic).collect();
    assert_eq!(flags, vec![true, false, false]);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Limits

fn entries_for(group: GroupId, count: usize) -> Value {
    body((0..count).map(|i| entry(group, "subscribed", "external_ids", json!([format!("user-{i}")]))).collect())
}

#[tokio::test]
async fn twenty_five_entries_are_accepted() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    assert_success(app.post_v2(&entries_for(group, 25)).await).await;

    assert_eq!(app.changes().await.len(), 25);
    app.shutdown().await;
}

#[tokio::test]
async fn twenty_six_entries_are_refused() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let message = assert_bad_request(app.post_v2(&entries_for(group, 26)).await).await;

    assert!(message.starts_with("subscription_groups:"), "{message}");
    assert!(message.contains("26"), "{message}");
    assert!(app.changes().await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn an_empty_subscription_groups_array_is_refused() {
    let app = spawn_app().await;

    let message = assert_bad_request(app.post_v2(&json!({ "subscription_groups": [] })).await).await;

    assert!(message.starts_with("subscription_groups:"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_body_without_subscription_groups_is_refused() {
    let app = spawn_app().await;

    let message = assert_bad_request(app.post_v2(&json!({ "subscription_group_id": "x" })).await).await;

    assert!(message.contains("subscription_groups"), "{message}");
    app.shutdown().await;
}

fn numbered(field: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| match field {
            "external_ids" => format!("user-{i}"),
            "emails" => format!("user{i}@example.com"),
            _ => format!("+1222333{i:04}"),
        })
        .collect()
}

#[tokio::test]
async fn fifty_identifiers_in_each_list_are_accepted() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;

    for (group, field) in [(news, "external_ids"), (news, "emails"), (sms, "phones")] {
        let values = numbered(field, 50);
        assert_success(app.post_v2(&body(vec![entry(group, "subscribed", field, json!(values))])).await).await;
    }

    assert_eq!(app.changes().await.len(), 150);
    app.shutdown().await;
}

#[tokio::test]
async fn fifty_one_identifiers_in_any_list_are_refused() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;

    for (group, field) in [(news, "external_ids"), (news, "emails"), (sms, "phones")] {
        let values = numbered(field, 51);
        let message =
            assert_bad_request(app.post_v2(&body(vec![entry(group, "subscribed", field, json!(values))])).await).await;
        assert!(message.starts_with(&format!("subscription_groups[0].{field}:")), "{message}");
        assert!(message.contains("51"), "{message}");
    }

    assert!(app.changes().await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn an_empty_identifier_list_is_refused() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;

    for (group, field) in [(news, "external_ids"), (news, "emails"), (sms, "phones")] {
        let message =
            assert_bad_request(app.post_v2(&body(vec![entry(group, "subscribed", field, json!([]))])).await).await;
        assert!(message.starts_with(&format!("subscription_groups[0].{field}:")), "{message}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn an_external_id_of_512_bytes_is_accepted_and_one_of_513_is_refused() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let longest = "é".repeat(256);
    let too_long = format!("{longest}x");

    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &[&longest])).await).await;
    let message = assert_bad_request(app.post_v2(&by_external_ids(group, "subscribed", &[&too_long])).await).await;

    assert!(message.starts_with("subscription_groups[0].external_ids[0]:"), "{message}");
    assert!(message.contains("513"), "{message}");
    assert_eq!(app.state_of(&longest, group).await, Some(Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn an_empty_external_id_is_refused() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let message = assert_bad_request(app.post_v2(&by_external_ids(group, "subscribed", &["ok", ""])).await).await;

    assert!(message.starts_with("subscription_groups[0].external_ids[1]:"), "{message}");
    assert!(app.changes().await.is_empty());
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Required fields and combination rules

#[tokio::test]
async fn a_missing_subscription_group_id_is_refused() {
    let app = spawn_app().await;

    let request = json!({ "subscription_groups": [ { "subscription_state": "subscribed", "external_ids": ["u"] } ] });
    let message = assert_bad_request(app.post_v2(&request).await).await;

    assert!(message.starts_with("subscription_groups[0].subscription_group_id:"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_missing_subscription_state_is_refused() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request =
        json!({ "subscription_groups": [ { "subscription_group_id": group.to_string(), "external_ids": ["u"] } ] });
    let message = assert_bad_request(app.post_v2(&request).await).await;

    assert!(message.starts_with("subscription_groups[0].subscription_state:"), "{message}");
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn a_subscription_state_in_another_spelling_is_refused() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    for state in ["Subscribed", "SUBSCRIBED", "Unsubscribed", "subscribe", " subscribed", "opted_in", ""] {
        let message = assert_bad_request(app.post_v2(&by_external_ids(group, state, &["u"])).await).await;
        assert!(message.starts_with("subscription_groups[0].subscription_state:"), "{state:?}: {message}");
        assert!(message.contains(&serde_json::to_string(state).unwrap()), "{state:?}: {message}");
    }

    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn emails_on_an_sms_group_are_refused() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;

    let message =
        assert_bad_request(app.post_v2(&one_entry(group, "subscribed", "emails", &["a@example.com"])).await).await;

    assert!(message.starts_with("subscription_groups[0].emails:"), "{message}");
    assert!(message.contains(&group.to_string()), "{message}");
    assert_eq!(app.orphan_state(&email("a@example.com"), group).await, None);
    app.shutdown().await;
}

#[tokio::test]
async fn emails_on_a_whatsapp_group_are_refused() {
    let app = spawn_app().await;
    let group = app.create_group("wa", Channel::Whatsapp).await;

    let message =
        assert_bad_request(app.post_v2(&one_entry(group, "subscribed", "emails", &["a@example.com"])).await).await;

    assert!(message.starts_with("subscription_groups[0].emails:"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn phones_on_an_email_group_are_refused() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let message =
        assert_bad_request(app.post_v2(&one_entry(group, "subscribed", "phones", &["+12223334444"])).await).await;

    assert!(message.starts_with("subscription_groups[0].phones:"), "{message}");
    assert!(message.contains(&group.to_string()), "{message}");
    assert_eq!(app.orphan_state(&phone("+12223334444"), group).await, None);
    app.shutdown().await;
}

#[tokio::test]
async fn emails_and_phones_in_one_entry_are_refused() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = body(vec![json!({
        "subscription_group_id": group.to_string(),
        "subscription_state": "subscribed",
        "emails": ["a@example.com"],
        "phones": ["+12223334444"],
    })]);
    let message = assert_bad_request(app.post_v2(&request).await).await;

    assert!(message.starts_with("subscription_groups[0]"), "{message}");
    assert!(message.contains("emails") && message.contains("phones"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_entry_without_identifiers_is_refused() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = json!({ "subscription_groups": [ { "subscription_group_id": group.to_string(), "subscription_state": "subscribed" } ] });
    let message = assert_bad_request(app.post_v2(&request).await).await;

    assert!(message.starts_with("subscription_groups[0]: "), "{message}");
    assert!(message.contains("external_ids"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn null_identifier_lists_count_as_absent() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = body(vec![json!({
        "subscription_group_id": group.to_string(), "subscription_state": "subscribed",
        "external_ids": ["u"], "emails": null, "phones": null,
    })]);
    assert_success(app.post_v2(&request).await).await;

    assert_eq!(app.state_of("u", group).await, Some(Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn an_entry_that_is_not_an_object_is_refused() {
    let app = spawn_app().await;

    let message = assert_bad_request(app.post_v2(&json!({ "subscription_groups": ["oops"] })).await).await;

    assert!(message.starts_with("subscription_groups[0]: "), "{message}");
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Groups

#[tokio::test]
async fn an_unknown_group_is_refused_naming_the_group_id() {
    let app = spawn_app().await;
    let unknown = GroupId::generate();

    let message = assert_bad_request(app.post_v2(&by_external_ids(unknown, "subscribed", &["u"])).await).await;

    assert!(message.starts_with("subscription_groups[0].subscription_group_id:"), "{message}");
    assert!(message.contains(&unknown.to_string()), "{message}");
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn a_group_id_that_is_not_a_uuid_is_refused_naming_it() {
    let app = spawn_app().await;

    let request = json!({ "subscription_groups": [ { "subscription_group_id": "subscription_group_identifier",
        "subscription_state": "subscribed", "external_ids": ["u"] } ] });
    let message = assert_bad_request(app.post_v2(&request).await).await;

    assert!(message.contains("\"subscription_group_identifier\""), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_archived_group_is_refused_naming_the_group_id() {
    let app = spawn_app().await;
    let group = app.create_group("old", Channel::Email).await;
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["u"])).await).await;
    app.catalog.archive_group(&group.to_string()).await.unwrap();

    let message = assert_bad_request(app.post_v2(&by_external_ids(group, "unsubscribed", &["u"])).await).await;

    assert!(message.starts_with("subscription_groups[0].subscription_group_id:"), "{message}");
    assert!(message.contains(&group.to_string()), "{message}");
    assert!(message.contains("archived"), "{message}");
    assert_eq!(app.state_of("u", group).await, Some(Subscribed), "an archived group keeps its states");
    app.shutdown().await;
}

#[tokio::test]
async fn a_workspace_holds_at_most_450_groups() {
    let app = spawn_app().await;
    for i in 0..450 {
        app.create_group(&format!("group-{i}"), Channel::Email).await;
    }

    let refused = app.catalog.create_group("default", "one-too-many", Channel::Email).await;

    let message = refused.expect_err("the 451st group is refused").to_string();
    assert!(message.contains("450"), "{message}");
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Identifier validation, named by place and value

#[tokio::test]
async fn an_invalid_email_is_refused_naming_its_place_and_value() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = body(vec![
        entry(group, "subscribed", "emails", json!(["ok@example.com"])),
        entry(group, "subscribed", "emails", json!(["fine@example.com", "not-an-email"])),
    ]);
    let message = assert_bad_request(app.post_v2(&request).await).await;

    assert!(message.starts_with("subscription_groups[1].emails[1]: \"not-an-email\""), "{message}");
    assert!(message.contains("not a valid email address"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn emails_with_quoted_local_parts_or_ip_literals_are_refused() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    for bad in ["\"john doe\"@example.com", "user@[192.0.2.1]", &format!("{}@example.com", "a".repeat(250))] {
        let message = assert_bad_request(app.post_v2(&one_entry(group, "subscribed", "emails", &[bad])).await).await;
        assert!(message.starts_with("subscription_groups[0].emails[0]:"), "{bad}: {message}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_non_e164_phone_is_refused_naming_its_place_and_value() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;

    let request = body(vec![
        entry(group, "subscribed", "phones", json!(["+12223334444"])),
        entry(group, "subscribed", "phones", json!(["+12223334444", "+15556667777", "+447700900123", "+1 555"])),
    ]);
    let message = assert_bad_request(app.post_v2(&request).await).await;

    assert!(message.starts_with("subscription_groups[1].phones[3]: \"+1 555\""), "{message}");
    assert!(message.contains("E.164"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn phones_without_plus_or_with_too_many_digits_are_refused() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;

    for bad in ["12223334444", "+1222333444455556", "+1-222-333-4444", "+0123456789", "+1222"] {
        let message = assert_bad_request(app.post_v2(&one_entry(group, "subscribed", "phones", &[bad])).await).await;
        assert!(message.starts_with("subscription_groups[0].phones[0]:"), "{bad}: {message}");
        assert!(message.contains(&serde_json::to_string(bad).unwrap()), "{bad}: {message}");
    }
    assert!(app.changes().await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn every_problem_is_listed_in_errors_and_the_first_is_the_message() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = body(vec![
        entry(group, "Subscribed", "external_ids", json!(["u"])),
        entry(group, "subscribed", "emails", json!(["bad-email"])),
    ]);
    let response = app.post_v2(&request).await;
    let (status, body) = crate::helpers::status_and_json(response).await;

    assert_eq!(status, 400);
    let errors: Vec<&str> =
        body["errors"].as_array().expect("errors is a list").iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(errors.len(), 2, "{body}");
    assert_eq!(body["message"], errors[0]);
    assert!(errors[0].starts_with("subscription_groups[0].subscription_state:"), "{body}");
    assert!(errors[1].starts_with("subscription_groups[1].emails[0]:"), "{body}");
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Wrong JSON types

async fn type_error(app: &TestApp, request: Value) -> String {
    assert_bad_request(app.post_v2(&request).await).await
}

#[tokio::test]
async fn a_number_in_an_identifier_list_is_refused_naming_the_item() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let message = type_error(&app, body(vec![entry(group, "subscribed", "external_ids", json!(["u", 5]))])).await;

    assert!(message.starts_with("subscription_groups[0].external_ids[1]:"), "{message}");
    assert!(message.contains("number"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_identifier_list_that_is_an_object_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let message =
        type_error(&app, body(vec![entry(group, "subscribed", "emails", json!({ "a": "b@example.com" }))])).await;

    assert!(message.starts_with("subscription_groups[0].emails:"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_object_as_subscription_state_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = json!({ "subscription_groups": [ { "subscription_group_id": group.to_string(),
        "subscription_state": { "value": "subscribed" }, "external_ids": ["u"] } ] });
    let message = type_error(&app, request).await;

    assert!(message.starts_with("subscription_groups[0].subscription_state:"), "{message}");
    assert!(message.contains("object"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_boolean_as_subscription_group_id_is_refused_naming_the_field() {
    let app = spawn_app().await;

    let request = json!({ "subscription_groups": [ { "subscription_group_id": true,
        "subscription_state": "subscribed", "external_ids": ["u"] } ] });
    let message = type_error(&app, request).await;

    assert!(message.starts_with("subscription_groups[0].subscription_group_id:"), "{message}");
    assert!(message.contains("boolean"), "{message}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_string_as_use_double_opt_in_logic_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;

    let request = json!({ "subscription_groups": [ { "subscription_group_id": group.to_string(),
        "subscription_state": "subscribed", "phones": ["+12223334444"], "use_double_opt_in_logic": "true" } ] });
    let message = type_error(&app, request).await;

    assert!(message.starts_with("subscription_groups[0].use_double_opt_in_logic:"), "{message}");
    assert!(app.changes().await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn subscription_groups_that_is_an_object_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let request = json!({ "subscription_groups": entry(group, "subscribed", "external_ids", json!(["u"])) });
    let message = type_error(&app, request).await;

    assert!(message.starts_with("subscription_groups:"), "{message}");
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Property: random valid and invalid requests agree with a model of the semantics

/// The universe: five external ids, three emails (one shared by two profiles, one carried by
/// one profile, one carried by nobody) and two groups (an email group, an SMS group).
const EXTERNAL_IDS: [&str; 5] = ["e0", "e1", "e2", "e3", "e4"];
const EMAILS: [&str; 3] = ["shared@example.com", "solo@example.com", "orphan@example.com"];
/// Profiles present before the requests: `(external id, email)`.
const IMPORTED: [(&str, &str); 3] = [("e0", EMAILS[0]), ("e1", EMAILS[0]), ("e2", EMAILS[1])];

#[derive(Debug, Clone)]
struct ModelEntry {
    group: usize,
    subscribe: bool,
    external_ids: Vec<usize>,
    emails: Vec<(usize, u8)>,
    single_string: bool,
    double_opt_in: bool,
}

fn model_entry() -> impl Strategy<Value = ModelEntry> {
    (
        0..2usize,
        any::<bool>(),
        prop::collection::vec(0..5usize, 0..4),
        prop::collection::vec((0..3usize, 0..3u8), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(group, subscribe, external_ids, emails, single_string, double_opt_in)| ModelEntry {
            group,
            subscribe,
            external_ids,
            emails,
            single_string,
            double_opt_in,
        })
}

/// An email as a client might spell it: as stored, shouted, or padded.
fn spelled(email: &str, variant: u8) -> String {
    match variant {
        0 => email.to_string(),
        1 => email.to_uppercase(),
        _ => format!("  {email} "),
    }
}

fn list(values: Vec<String>, single_string: bool) -> Value {
    if single_string && values.len() == 1 {
        json!(values[0])
    } else {
        json!(values)
    }
}

impl ModelEntry {
    /// A request entry is valid when it names someone and sends emails only to the email group.
    fn is_valid(&self) -> bool {
        !(self.external_ids.is_empty() && self.emails.is_empty()) && (self.emails.is_empty() || self.group == 0)
    }

    fn to_json(&self, groups: &[GroupId; 2]) -> Value {
        let mut object = serde_json::Map::new();
        object.insert("subscription_group_id".into(), json!(groups[self.group].to_string()));
        object.insert("subscription_state".into(), json!(if self.subscribe { "subscribed" } else { "unsubscribed" }));
        if !self.external_ids.is_empty() {
            let ids = self.external_ids.iter().map(|&i| EXTERNAL_IDS[i].to_string()).collect();
            object.insert("external_ids".into(), list(ids, self.single_string));
        }
        if !self.emails.is_empty() {
            let emails = self.emails.iter().map(|&(i, v)| spelled(EMAILS[i], v)).collect();
            object.insert("emails".into(), list(emails, self.single_string));
        }
        if self.double_opt_in {
            object.insert("use_double_opt_in_logic".into(), json!(true));
        }
        Value::Object(object)
    }
}

/// What SPEC.md says the store should hold.
#[derive(Debug, Default)]
struct Model {
    profiles: BTreeSet<&'static str>,
    states: BTreeMap<(&'static str, usize), bool>,
    orphans: BTreeMap<(&'static str, usize), bool>,
    changes: usize,
}

impl Model {
    fn new() -> Self {
        Model { profiles: IMPORTED.iter().map(|&(id, _)| id).collect(), ..Model::default() }
    }

    fn apply(&mut self, entries: &[ModelEntry]) -> bool {
        if !entries.iter().all(ModelEntry::is_valid) {
            return false;
        }
        // One record per (subject, group) whose state the request changed, net of flips.
        // A subject is a profile's external id (Ok) or an orphaned email (Err).
        type Subject = Result<&'static str, &'static str>;
        let mut before: Vec<((Subject, usize), Option<bool>)> = Vec::new();
        for entry in entries {
            let mut targets: Vec<Result<&'static str, &'static str>> = Vec::new();
            for &i in &entry.external_ids {
                self.profiles.insert(EXTERNAL_IDS[i]);
                targets.push(Ok(EXTERNAL_IDS[i]));
            }
            for &(i, _) in &entry.emails {
                let carriers: Vec<&'static str> =
                    IMPORTED.iter().filter(|&&(_, e)| e == EMAILS[i]).map(|&(id, _)| id).collect();
                if carriers.is_empty() {
                    targets.push(Err(EMAILS[i]));
                } else {
                    targets.extend(carriers.into_iter().map(Ok));
                }
            }
            // Reaching a target twice in one entry is a no-op the second time, so the model
            // needs no de-duplication of its own.
            for target in targets {
                let old = match target {
                    Ok(id) => self.states.insert((id, entry.group), entry.subscribe),
                    Err(email) => self.orphans.insert((email, entry.group), entry.subscribe),
                };
                if !before.iter().any(|(key, _)| *key == (target, entry.group)) {
                    before.push(((target, entry.group), old));
                }
            }
        }
        for ((target, group), old) in before {
            let now = match target {
                Ok(id) => self.states.get(&(id, group)).copied(),
                Err(email) => self.orphans.get(&(email, group)).copied(),
            };
            if now != old {
                self.changes += 1;
            }
        }
        true
    }
}

fn as_bool(state: consentry::domain::subscription::SubscriptionState) -> bool {
    state == Subscribed
}

async fn run_model_case(requests: Vec<Vec<ModelEntry>>) -> Result<(), TestCaseError> {
    let app = spawn_app().await;
    let groups = [app.create_group("news", Channel::Email).await, app.create_group("sms", Channel::Sms).await];
    let imported: Vec<(&str, Option<&str>, Option<&str>)> =
        IMPORTED.iter().map(|&(id, e)| (id, Some(e), None)).collect();
    app.import(&imported).await;
    let mut model = Model::new();

    for request in &requests {
        let json = body(request.iter().map(|e| e.to_json(&groups)).collect());
        let status = app.post_v2(&json).await.status();
        let valid = model.apply(request);
        prop_assert_eq!(status.as_u16(), if valid { 201 } else { 400 }, "request {}", json);
    }

    for id in EXTERNAL_IDS {
        let profile = app.profile(id).await;
        prop_assert_eq!(profile.is_some(), model.profiles.contains(id), "profile {}", id);
        for (g, &group) in groups.iter().enumerate() {
            prop_assert_eq!(
                app.state_of(id, group).await.map(as_bool),
                model.states.get(&(id, g)).copied(),
                "{} in group {}",
                id,
                g
            );
        }
    }
    for address in EMAILS {
        for (g, &group) in groups.iter().enumerate() {
            prop_assert_eq!(
                app.orphan_state(&email(address), group).await.map(as_bool),
                model.orphans.get(&(address, g)).copied(),
                "orphan {} in group {}",
                address,
                g
            );
        }
    }
    prop_assert_eq!(app.changes().await.len(), model.changes);
    app.shutdown().await;
    Ok(())
}

#[test]
fn random_requests_agree_with_a_model_of_the_semantics() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() };
    let strategy = prop::collection::vec(prop::collection::vec(model_entry(), 1..4), 1..8);
    proptest::test_runner::TestRunner::new(config)
        .run(&strategy, |requests| runtime.block_on(run_model_case(requests)))
        .unwrap();
}
