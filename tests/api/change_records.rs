//! Every change that changes a state is recorded, with its full provenance; a no-op records
//! nothing.

use consentry::domain::change::{Endpoint, Subject};
use consentry::domain::ids::RequestId;
use consentry::domain::rate_limit::Bucket;
use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::{Subscribed, Unsubscribed};
use consentry::domain::time::Clock;
use serde_json::json;

use crate::helpers::{assert_success, by_external_ids, email, one_entry, spawn_app};

fn request_id_of(response: &reqwest::Response) -> RequestId {
    let header = response.headers().get("x-request-id").expect("an x-request-id header").to_str().unwrap();
    RequestId::parse(header).unwrap_or_else(|| panic!("x-request-id is a request id: {header:?}"))
}

#[tokio::test]
async fn a_change_writes_exactly_one_record_with_its_full_provenance() {
    let app = spawn_app().await;
    let group = app.create_group("sms", Channel::Sms).await;
    let keys = app.catalog.keys("default").unwrap();
    assert_eq!(keys.len(), 1);

    let request = json!({ "subscription_groups": [ { "subscription_group_id": group.to_string(),
        "subscription_state": "subscribed", "external_ids": ["user-1"], "use_double_opt_in_logic": true } ] });
    let response = app.post_v2(&request).await;
    let request_id = request_id_of(&response);
    assert_success(response).await;

    let changes = app.changes().await;
    assert_eq!(changes.len(), 1);
    let change = &changes[0];
    assert_eq!(change.workspace_id, app.workspace);
    assert_eq!(change.group.storage_id(), group);
    assert_eq!(change.subject, Subject::Profile(app.profile("user-1").await.unwrap().id));
    assert_eq!(change.old, None);
    assert_eq!(change.new, Subscribed);
    assert_eq!(change.trace.api_key_id.unwrap(), keys[0].id);
    assert_eq!(change.trace.endpoint.unwrap(), Endpoint::V2StatusSet);
    assert_eq!(change.trace.endpoint.unwrap().path(), "/v2/subscription/status/set");
    assert_eq!(change.trace.request_id.unwrap(), request_id);
    assert!(change.use_double_opt_in_logic);
    app.shutdown().await;
}

#[tokio::test]
async fn a_change_of_an_orphaned_identifier_names_the_identifier() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    assert_success(app.post_v2(&one_entry(group, "unsubscribed", "emails", &["Someone@Example.com"])).await).await;

    let changes = app.changes().await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].subject.contact(), Some(&email("someone@example.com")));
    assert_eq!((changes[0].old, changes[0].new), (None, Unsubscribed));
    assert!(!changes[0].use_double_opt_in_logic);
    app.shutdown().await;
}

#[tokio::test]
async fn a_change_records_the_old_state() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["user-1"])).await).await;
    assert_success(app.post_v2(&by_external_ids(group, "unsubscribed", &["user-1"])).await).await;

    let changes = app.changes().await;
    assert_eq!(changes.len(), 2);
    assert_eq!((changes[1].old, changes[1].new), (Some(Subscribed), Unsubscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn the_records_of_one_request_share_its_request_id_and_two_requests_differ() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let first = app.post_v2(&by_external_ids(group, "subscribed", &["a", "b"])).await;
    let first_id = request_id_of(&first);
    assert_success(first).await;
    let second = app.post_v2(&by_external_ids(group, "subscribed", &["c"])).await;
    let second_id = request_id_of(&second);
    assert_success(second).await;

    assert_ne!(first_id, second_id);
    let ids: Vec<RequestId> = app.changes().await.iter().map(|c| c.trace.request_id.unwrap()).collect();
    assert_eq!(ids, vec![first_id, first_id, second_id]);
    app.shutdown().await;
}

#[tokio::test]
async fn a_record_names_the_key_that_made_the_request() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let (key, secret) = app
        .catalog
        .create_key("default", vec![consentry::domain::tenant::Permission::SubscriptionStatusSet], Vec::new(), "second")
        .await
        .unwrap();

    assert_success(app.post_v2_with_key(&secret, &by_external_ids(group, "subscribed", &["u"])).await).await;

    assert_eq!(app.changes().await[0].trace.api_key_id.unwrap(), key.id);
    app.shutdown().await;
}

#[tokio::test]
async fn setting_a_state_to_what_it_already_is_records_nothing() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["user-1"])).await).await;
    assert_success(app.post_v2(&one_entry(group, "subscribed", "emails", &["x@example.com"])).await).await;
    let before = app.changes().await;
    let updated_at = app.profile("user-1").await.unwrap().states[0].updated_at;

    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["user-1"])).await).await;
    assert_success(app.post_v2(&one_entry(group, "subscribed", "emails", &["X@example.com"])).await).await;

    assert_eq!(app.changes().await, before);
    assert_eq!(
        app.profile("user-1").await.unwrap().states[0].updated_at,
        updated_at,
        "a no-op does not touch the state"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_record_time_lies_within_the_request_wall_clock_window() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let before = Clock::system().now();
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["user-1"])).await).await;
    let after = Clock::system().now();

    let at = app.changes().await[0].at;
    assert!(before <= at && at <= after, "{before:?} <= {at:?} <= {after:?}");
    let state = app.profile("user-1").await.unwrap().states[0];
    assert_eq!(state.updated_at, at, "the state's time is the change's time");
    app.shutdown().await;
}

#[tokio::test]
async fn a_refused_request_still_carries_a_request_id() {
    let app = spawn_app().await;

    let response = app.post_v2(&json!({ "subscription_groups": [] })).await;

    request_id_of(&response);
    assert_eq!(response.status(), 400);
    app.shutdown().await;
}

/// The records come back in the order the writer applied them (change ids are time-ordered
/// and generated by the single writer). Their times must not contradict that order, or a
/// history sorted by time shows a change before the one it overwrote. The race needs two
/// requests stamped in one order and queued in the other, so the test tries a few rounds of
/// contention on one profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_times_never_go_back_in_the_order_the_changes_were_applied() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    // 5,760 requests in a few seconds: more than the default 5,000 a minute of the set bucket,
    // which this test is not about.
    app.catalog.set_rate_limit("default", Bucket::Set, 1_000_000, None).await.unwrap();

    for round in 0..4 {
        let hot = format!("hot-{round}");
        let mut tasks = Vec::new();
        for task in 0..48usize {
            let client = app.client.clone();
            let url = app.url(crate::helpers::V2_PATH);
            let key = app.key.clone();
            let hot = hot.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..30usize {
                    let state = if (task + n) % 2 == 0 { "subscribed" } else { "unsubscribed" };
                    let response =
                        client.post(&url).bearer_auth(&key).json(&by_external_ids(group, state, &[&hot])).send().await;
                    assert_eq!(response.expect("sent").status(), 201);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }

        let changes = app.changes().await;
        for pair in changes.windows(2) {
            assert!(
                pair[0].at <= pair[1].at,
                "round {round}: a change applied later carries an earlier time:\n{:?} at {:?} (request {})\nthen {:?} -> {:?} at {:?} (request {})",
                pair[0].new, pair[0].at, pair[0].trace.request_id.unwrap(), pair[1].old, pair[1].new, pair[1].at, pair[1].trace.request_id.unwrap()
            );
        }
    }
    app.shutdown().await;
}
