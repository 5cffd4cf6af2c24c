//! A request is validated whole and applied atomically; concurrent requests are serialized by
//! the group-commit writer without losing or interleaving any change.

use std::collections::HashMap;

use consentry::domain::change::{ChangeRecord, Subject};
use consentry::domain::ids::GroupId;
use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::Subscribed;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_bad_request, email, spawn_app};

#[tokio::test]
async fn a_request_whose_last_entry_is_invalid_changes_nothing() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;
    app.import(&[("alice", Some("alice@example.com"), None)]).await;
    let alice_before = app.profile("alice").await.unwrap();

    let entry = |group: GroupId, field: &str, values: serde_json::Value| json!({ "subscription_group_id": group.to_string(), "subscription_state": "subscribed", field: values });
    let mut entries = vec![
        entry(news, "external_ids", json!(["new-user"])),
        entry(news, "emails", json!(["alice@example.com", "nobody@example.com"])),
        entry(sms, "external_ids", json!(["alice"])),
    ];
    entries.extend((0..21).map(|i| entry(news, "external_ids", json!([format!("filler-{i}")]))));
    entries.push(entry(sms, "phones", json!(["+1 555"])));
    assert_eq!(entries.len(), 25);
    let message = assert_bad_request(app.post_v2(&json!({ "subscription_groups": entries })).await).await;

    assert!(message.starts_with("subscription_groups[24].phones[0]:"), "{message}");
    assert!(app.profile("new-user").await.is_none(), "no profile is created");
    assert!(app.profile("filler-0").await.is_none(), "no profile is created");
    assert_eq!(app.profile("alice").await.unwrap(), alice_before, "no state is set");
    assert_eq!(app.orphan_state(&email("nobody@example.com"), news).await, None, "no orphaned state is stored");
    assert!(app.changes().await.is_empty(), "no change record is written");
    app.shutdown().await;
}

#[tokio::test]
async fn a_request_naming_an_unknown_group_in_its_last_entry_changes_nothing() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;

    let request = json!({ "subscription_groups": [
        { "subscription_group_id": news.to_string(), "subscription_state": "subscribed", "external_ids": ["u1"] },
        { "subscription_group_id": GroupId::generate().to_string(), "subscription_state": "subscribed", "external_ids": ["u2"] },
    ] });
    assert_bad_request(app.post_v2(&request).await).await;

    assert!(app.profile("u1").await.is_none());
    assert!(app.profile("u2").await.is_none());
    assert!(app.changes().await.is_empty());
    app.shutdown().await;
}

/// Checks that every (subject, group) history is an unbroken chain ending in `current`.
fn assert_unbroken_chains(
    changes: &[ChangeRecord],
) -> Vec<(Subject, GroupId, consentry::domain::subscription::SubscriptionState)> {
    let mut ids: Vec<_> = changes.iter().map(|c| c.id).collect();
    ids.sort();
    assert_eq!(ids, changes.iter().map(|c| c.id).collect::<Vec<_>>(), "records come oldest first by change id");

    // `Subject` is not `Hash`; its debug form is a faithful key.
    let mut chains: HashMap<(String, GroupId), (Subject, Vec<&ChangeRecord>)> = HashMap::new();
    for change in changes {
        chains
            .entry((format!("{:?}", change.subject), change.group.storage_id()))
            .or_insert_with(|| (change.subject.clone(), Vec::new()))
            .1
            .push(change);
    }
    let mut last = Vec::new();
    for ((_, group), (subject, chain)) in &chains {
        assert_eq!(chain[0].old, None, "the first change of {subject:?} in {group} starts from Unknown");
        for pair in chain.windows(2) {
            assert_eq!(pair[1].old, Some(pair[0].new), "broken chain for {subject:?} in {group}: {pair:#?}");
            assert_ne!(pair[1].old, Some(pair[1].new), "a no-op was recorded: {:?}", pair[1]);
        }
        last.push((subject.clone(), *group, chain.last().unwrap().new));
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_on_overlapping_profiles_all_succeed_and_leave_unbroken_histories() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let promo = app.create_group("promo", Channel::Email).await;
    let profiles: Vec<String> = (0..10).map(|i| format!("user-{i}")).collect();
    app.import(&[("carrier-a", Some("shared@example.com"), None), ("carrier-b", Some("shared@example.com"), None)])
        .await;

    let mut tasks = Vec::new();
    for task in 0..20usize {
        let client = app.client.clone();
        let url = app.url(crate::helpers::V2_PATH);
        let key = app.key.clone();
        let profiles = profiles.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in 0..20usize {
                let state = if (task + n) % 2 == 0 { "subscribed" } else { "unsubscribed" };
                let other = if (task * 7 + n) % 3 == 0 { "subscribed" } else { "unsubscribed" };
                let ids: Vec<&String> = (0..4).map(|k| &profiles[(task + n * 3 + k) % profiles.len()]).collect();
                let body = json!({ "subscription_groups": [
                    { "subscription_group_id": news.to_string(), "subscription_state": state, "external_ids": ids },
                    { "subscription_group_id": promo.to_string(), "subscription_state": other,
                      "external_ids": [&profiles[(task + n) % profiles.len()]] },
                    { "subscription_group_id": news.to_string(), "subscription_state": other,
                      "emails": ["shared@example.com", "orphan@example.com"] },
                ] });
                let response = client.post(&url).bearer_auth(&key).json(&body).send().await.expect("sent");
                statuses.push(response.status());
            }
            statuses
        }));
    }
    for task in tasks {
        for status in task.await.unwrap() {
            assert_eq!(status, StatusCode::CREATED);
        }
    }

    let changes = app.changes().await;
    assert!(changes.len() > 40, "the requests changed states: {}", changes.len());
    let mut by_profile_id = HashMap::new();
    for id in profiles.iter().map(String::as_str).chain(["carrier-a", "carrier-b"]) {
        by_profile_id.insert(app.profile(id).await.expect("profile exists").id, id.to_string());
    }
    // Each chain ends in the state stored now.
    for (subject, group, last) in assert_unbroken_chains(&changes) {
        let stored = match &subject {
            Subject::Profile(id) => app.state_of(&by_profile_id[id], group).await,
            Subject::Orphan(_, contact) => app.orphan_state(contact, group).await,
            Subject::Erased(_) => unreachable!("nothing is deleted in this test"),
        };
        assert_eq!(stored, Some(last), "stored state of {subject:?} in {group}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_writes_to_one_new_external_id_create_exactly_one_profile() {
    let app = spawn_app().await;
    let mut groups: Vec<GroupId> = Vec::new();
    for i in 0..8 {
        groups.push(app.create_group(&format!("g{i}"), Channel::Email).await);
    }

    let mut tasks = Vec::new();
    for &group in &groups {
        let client = app.client.clone();
        let url = app.url(crate::helpers::V2_PATH);
        let key = app.key.clone();
        tasks.push(tokio::spawn(async move {
            let body = crate::helpers::by_external_ids(group, "subscribed", &["newcomer"]);
            client.post(&url).bearer_auth(&key).json(&body).send().await.expect("sent").status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::CREATED);
    }

    let profile = app.profile("newcomer").await.expect("the profile exists");
    assert_eq!(profile.states.len(), groups.len(), "every group's state landed on the one profile");
    let changes = app.changes().await;
    assert_eq!(changes.len(), groups.len());
    assert!(changes.iter().all(|c| c.subject == Subject::Profile(profile.id)), "all changes name the one profile");
    for group in groups {
        assert_eq!(app.state_of("newcomer", group).await, Some(Subscribed));
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_answers_in_flight_requests_and_keeps_every_acknowledged_write() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let store = app.store.clone();
    let workspace = app.workspace;

    let mut tasks = Vec::new();
    for task in 0..40usize {
        let client = app.client.clone();
        let url = app.url(crate::helpers::V2_PATH);
        let key = app.key.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("in-flight-{task}");
            let body = crate::helpers::by_external_ids(group, "subscribed", &[&id]);
            let outcome = client.post(&url).bearer_auth(&key).json(&body).send().await.map(|r| r.status());
            (id, outcome)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // Kept until the end: the stopped store is read below.
    let _stopped = app.shutdown().await;

    let mut acknowledged = 0;
    for task in tasks {
        let (id, outcome) = task.await.unwrap();
        match outcome {
            Ok(StatusCode::CREATED) => {
                acknowledged += 1;
                assert_eq!(
                    crate::helpers::state_in(&store, workspace, &id, group).await,
                    Some(Subscribed),
                    "{id} was acknowledged"
                );
            }
            Ok(StatusCode::SERVICE_UNAVAILABLE) | Err(_) => {}
            Ok(other) => panic!("{id}: unexpected {other}"),
        }
    }
    assert_eq!(
        store.inspect().change_records(workspace).await.unwrap().len(),
        acknowledged,
        "nothing unacknowledged was written"
    );
}
