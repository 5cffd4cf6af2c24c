//! `POST /users/delete`: profiles, their states and their email/phone index entries go; no
//! orphaned state is left behind; change records stay without the identifiers (SPEC.md and
//! issue3-decisions.md, "POST /users/delete").

use consentry::domain::change::Subject;
use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::{Subscribed, Unsubscribed};
use consentry::domain::tenant::Permission;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_bad_request, assert_error, assert_success, by_external_ids, email, one_entry, phone, spawn_app, state_in,
    status_and_json, statuses, TestApp, DELETE_PATH,
};

fn deleted(n: usize) -> Value {
    json!({ "message": "success", "deleted": n })
}

async fn delete_ok(app: &TestApp, ids: &[&str], n: usize) {
    let (status, body) = app.delete_users(ids).await;
    assert_eq!((status, body), (StatusCode::CREATED, deleted(n)), "deleting {ids:?}");
}

#[tokio::test]
async fn deleted_counts_the_profiles_deleted_and_unknown_ids_are_ignored() {
    let app = spawn_app().await;
    app.import(&[("a", None, None), ("b", Some("b@example.com"), None), ("c", None, None)]).await;

    delete_ok(&app, &["a", "ghost", "b"], 2).await;

    assert!(app.profile("a").await.is_none());
    assert!(app.profile("b").await.is_none());
    assert!(app.profile("c").await.is_some(), "a profile not named stays");
    delete_ok(&app, &["a", "b"], 0).await;
    app.shutdown().await;
}

#[tokio::test]
async fn the_same_id_twice_deletes_one_profile() {
    let app = spawn_app().await;
    app.import(&[("a", None, None)]).await;

    delete_ok(&app, &["a", "a"], 1).await;

    assert!(app.profile("a").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn a_single_string_is_a_list_of_one() {
    let app = spawn_app().await;
    app.import(&[("a", None, None)]).await;

    let (status, body) = status_and_json(app.post_json(DELETE_PATH, &json!({ "external_ids": "a" })).await).await;

    assert_eq!((status, body), (StatusCode::CREATED, deleted(1)));
    assert!(app.profile("a").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn the_profile_and_its_states_are_gone_for_both_read_endpoints() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;
    app.import(&[("u", Some("u@example.com"), Some("+12223334444"))]).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u"])).await).await;
    assert_success(app.post_v2(&by_external_ids(sms, "unsubscribed", &["u"])).await).await;

    delete_ok(&app, &["u"], 1).await;

    assert!(app.profile("u").await.is_none());
    assert_eq!(app.status_get(news, "external_id=u").await, (StatusCode::OK, statuses(&[("u", "Unknown")])));
    assert_eq!(
        app.status_get(news, "email=u@example.com").await,
        (StatusCode::OK, statuses(&[("u@example.com", "Unknown")]))
    );
    assert_eq!(
        app.status_get(sms, "phone=%2B12223334444").await,
        (StatusCode::OK, statuses(&[("+12223334444", "Unknown")]))
    );
    let empty = json!({ "users": [], "total_count": 0, "message": "success" });
    assert_eq!(
        app.user_status("external_id=u&email=u@example.com&phone=%2B12223334444").await,
        (StatusCode::OK, empty)
    );
    assert!(app.profile("u").await.is_none(), "reading did not bring it back");
    app.shutdown().await;
}

#[tokio::test]
async fn the_email_and_phone_index_entries_are_gone_so_a_later_set_creates_orphaned_state() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;
    app.import(&[("u", Some("u@example.com"), Some("+12223334444"))]).await;

    delete_ok(&app, &["u"], 1).await;
    assert!(app.carriers(&email("u@example.com")).await.is_empty());
    assert!(app.carriers(&phone("+12223334444")).await.is_empty());
    let before = app.changes().await.len();

    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["u@example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(sms, "subscribed", "phones", &["+12223334444"])).await).await;

    assert_eq!(app.orphan_state(&email("u@example.com"), news).await, Some(Subscribed));
    assert_eq!(app.orphan_state(&phone("+12223334444"), sms).await, Some(Subscribed));
    let changes = app.changes().await;
    assert_eq!(changes.len(), before + 2);
    assert_eq!(changes[before].subject.contact(), Some(&email("u@example.com")));
    assert_eq!(changes[before + 1].subject.contact(), Some(&phone("+12223334444")));
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn deleting_the_last_carrier_leaves_no_orphaned_state() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    app.import(&[("u", Some("only@example.com"), None)]).await;
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["only@example.com"])).await).await;
    assert_eq!(app.state_of("u", news).await, Some(Unsubscribed));

    delete_ok(&app, &["u"], 1).await;

    assert_eq!(app.orphan_state(&email("only@example.com"), news).await, None);
    assert_eq!(
        app.status_get(news, "email=only@example.com").await,
        (StatusCode::OK, statuses(&[("only@example.com", "Unknown")]))
    );
    app.shutdown().await;
}

#[tokio::test]
async fn deleting_the_last_carrier_removes_orphaned_state_stored_beside_it() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["both@example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(sms, "subscribed", "phones", &["+15556667777"])).await).await;
    // An import applies no inheritance: the orphaned states stay beside the new carrier.
    app.import(&[("u", Some("both@example.com"), Some("+15556667777"))]).await;
    assert_eq!(app.orphan_state(&email("both@example.com"), news).await, Some(Subscribed));

    delete_ok(&app, &["u"], 1).await;

    assert_eq!(app.orphan_state(&email("both@example.com"), news).await, None);
    assert_eq!(app.orphan_state(&phone("+15556667777"), sms).await, None);
    app.shutdown().await;
}

#[tokio::test]
async fn deleting_one_of_two_carriers_leaves_the_other_reachable_by_email() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    app.import(&[("a", Some("shared@example.com"), None), ("b", Some("shared@example.com"), None)]).await;

    delete_ok(&app, &["a"], 1).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["shared@example.com"])).await).await;

    assert_eq!(app.state_of("b", news).await, Some(Subscribed));
    assert_eq!(app.orphan_state(&email("shared@example.com"), news).await, None);
    let carriers = app.carriers(&email("shared@example.com")).await;
    assert_eq!(carriers.iter().map(|p| p.external_id.clone()).collect::<Vec<_>>(), vec![Some("b".to_string())]);
    app.shutdown().await;
}

#[tokio::test]
async fn change_records_are_kept_but_none_mentions_the_deleted_identifiers() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    app.import(&[("secret-id-7731", Some("secret-7731@example.com"), Some("+15556667777"))]).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["secret-id-7731"])).await).await;
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["secret-7731@example.com"])).await).await;
    let before = app.changes().await;
    assert_eq!(before.len(), 2);

    delete_ok(&app, &["secret-id-7731"], 1).await;

    let after = app.changes().await;
    for record in &before {
        assert!(after.contains(record), "a change record was lost: {record:?}");
    }
    for record in &after {
        let text = format!("{record:?} {}", serde_json::to_string(record).unwrap());
        for identifier in ["secret-id-7731", "secret-7731@example.com", "+15556667777", "5556667777"] {
            assert!(!text.contains(identifier), "a record mentions {identifier}: {text}");
        }
    }
    app.shutdown().await;
}

#[tokio::test]
async fn no_change_record_mentions_the_email_of_a_deleted_profile_even_one_whose_state_it_inherited() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    // Consent given for the email before the person had a profile, then inherited by it.
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["heir-4417@example.com"])).await).await;
    let (status, body) = app.track(json!([{ "external_id": "heir-id-4417", "email": "heir-4417@example.com" }])).await;
    assert_eq!((status, body), (StatusCode::CREATED, json!({ "message": "success", "attributes_processed": 1 })));
    assert_eq!(app.state_of("heir-id-4417", news).await, Some(Subscribed));
    let before = app.changes().await;

    delete_ok(&app, &["heir-id-4417"], 1).await;

    let after = app.changes().await;
    assert_eq!(after.len(), before.len(), "the records are kept");
    for record in &after {
        let text = format!("{record:?} {}", serde_json::to_string(record).unwrap());
        for identifier in ["heir-id-4417", "heir-4417@example.com"] {
            assert!(!text.contains(identifier), "a record mentions {identifier}: {text}");
        }
    }
    app.shutdown().await;
}

#[tokio::test]
async fn deleting_every_carrier_in_one_request_leaves_no_orphaned_state() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["pair@example.com"])).await).await;
    app.import(&[("a", Some("pair@example.com"), None), ("b", Some("pair@example.com"), None)]).await;

    delete_ok(&app, &["a", "b"], 2).await;

    assert!(app.carriers(&email("pair@example.com")).await.is_empty());
    assert_eq!(app.orphan_state(&email("pair@example.com"), news).await, None);
    app.shutdown().await;
}

#[tokio::test]
async fn a_deleted_external_id_used_again_is_a_new_profile_without_states() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let promo = app.create_group("promo", Channel::Email).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u"])).await).await;
    let old_id = app.profile("u").await.unwrap().id;

    delete_ok(&app, &["u"], 1).await;
    assert_success(app.post_v2(&by_external_ids(promo, "subscribed", &["u"])).await).await;

    let profile = app.profile("u").await.unwrap();
    assert_ne!(profile.id, old_id);
    assert_eq!(app.state_of("u", news).await, None);
    assert_eq!(app.state_of("u", promo).await, Some(Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn a_profile_of_another_workspace_is_untouched() {
    let app = spawn_app().await;
    let (other, other_key) = app.create_workspace_with_key("other", &[Permission::SubscriptionStatusSet]).await;
    let other_group = app.catalog.create_group("other", "news", Channel::Email).await.unwrap().id;
    assert_success(app.post_v2_with_key(&other_key, &by_external_ids(other_group, "subscribed", &["u"])).await).await;

    delete_ok(&app, &["u"], 0).await;

    assert_eq!(state_in(&app.store, other, "u", other_group).await, Some(Subscribed));
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[tokio::test]
async fn braze_ids_or_user_aliases_are_refused_naming_the_field_even_beside_external_ids() {
    let app = spawn_app().await;
    app.import(&[("u", None, None)]).await;

    for (field, body) in [
        ("braze_ids", json!({ "braze_ids": ["b1"] })),
        ("user_aliases", json!({ "user_aliases": [ { "alias_name": "a", "alias_label": "l" } ] })),
        ("braze_ids", json!({ "external_ids": ["u"], "braze_ids": ["b1"] })),
        (
            "user_aliases",
            json!({ "external_ids": ["u"], "user_aliases": [ { "alias_name": "a", "alias_label": "l" } ] }),
        ),
    ] {
        let message = assert_bad_request(app.post_json(DELETE_PATH, &body).await).await;
        assert!(message.contains(field), "{body}: {message}");
    }
    assert!(app.profile("u").await.is_some(), "nothing was deleted");
    app.shutdown().await;
}

#[tokio::test]
async fn zero_or_fifty_one_external_ids_are_refused_and_fifty_are_accepted() {
    let app = spawn_app().await;
    let ids: Vec<String> = (0..51).map(|i| format!("u{i}")).collect();
    let profiles: Vec<(&str, Option<&str>, Option<&str>)> = ids.iter().map(|id| (id.as_str(), None, None)).collect();
    app.import(&profiles).await;

    let message = assert_bad_request(app.post_json(DELETE_PATH, &json!({ "external_ids": [] })).await).await;
    assert!(message.contains("external_ids"), "{message}");
    let message = assert_bad_request(app.post_json(DELETE_PATH, &json!({ "external_ids": ids })).await).await;
    assert!(message.contains("external_ids"), "{message}");
    assert!(message.contains("51") || message.contains("50"), "{message}");
    assert!(app.profile("u0").await.is_some(), "nothing was deleted");

    let fifty: Vec<&str> = ids[..50].iter().map(String::as_str).collect();
    delete_ok(&app, &fifty, 50).await;
    assert!(app.profile("u50").await.is_some());
    app.shutdown().await;
}

#[tokio::test]
async fn a_body_without_external_ids_or_with_a_bad_one_is_refused() {
    let app = spawn_app().await;
    app.import(&[("u", None, None)]).await;

    for body in [
        json!({}),
        json!({ "external_id": "u" }),
        json!({ "external_ids": [ "u", 5 ] }),
        json!({ "external_ids": [ "u", "" ] }),
        json!({ "external_ids": { "u": true } }),
        json!(["u"]),
    ] {
        assert_bad_request(app.post_json(DELETE_PATH, &body).await).await;
    }
    assert!(app.profile("u").await.is_some(), "nothing was deleted");
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Authentication and permission

#[tokio::test]
async fn the_users_delete_permission_is_required() {
    let app = spawn_app().await;
    app.import(&[("u", None, None)]).await;
    let body = json!({ "external_ids": ["u"] });

    assert_error(app.post_json_with_key(DELETE_PATH, None, &body).await, StatusCode::UNAUTHORIZED).await;
    let without = app
        .create_key(&[
            Permission::SubscriptionStatusSet,
            Permission::SubscriptionStatusGet,
            Permission::SubscriptionGroupsGet,
            Permission::UsersTrack,
        ])
        .await;
    assert_error(app.post_json_with_key(DELETE_PATH, Some(&without), &body).await, StatusCode::FORBIDDEN).await;
    assert!(app.profile("u").await.is_some());

    let with = app.create_key(&[Permission::UsersDelete]).await;
    let (status, answer) = status_and_json(app.post_json_with_key(DELETE_PATH, Some(&with), &body).await).await;
    assert_eq!((status, answer), (StatusCode::CREATED, deleted(1)));
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn the_orphaned_history_of_a_deleted_profiles_email_is_kept_with_the_email_erased() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["gone@example.com"])).await).await;
    let (status, _) = app.track(json!([{ "external_id": "gone", "email": "gone@example.com" }])).await;
    assert_eq!(status, StatusCode::CREATED);
    let before = app.changes().await;

    delete_ok(&app, &["gone"], 1).await;

    let after = app.changes().await;
    assert_eq!(after.len(), before.len());
    assert!(matches!(after[0].subject, Subject::Erased(_)));
    assert_eq!((after[0].group.storage_id(), after[0].old, after[0].new), (news, None, Unsubscribed));
    assert_eq!((after[0].kind, after[0].trace), (before[0].kind, before[0].trace), "only the identifier is erased");
    assert_eq!(after[0].hash, before[0].hash, "the erasure keeps the hash");
    app.shutdown().await;
}

#[tokio::test]
async fn an_email_still_carried_by_another_profile_keeps_its_history() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["family@example.com"])).await).await;
    app.import(&[("parent", Some("family@example.com"), None), ("child", Some("family@example.com"), None)]).await;

    delete_ok(&app, &["child"], 1).await;

    assert_eq!(app.changes().await[0].subject.contact(), Some(&email("family@example.com")));
    app.shutdown().await;
}
