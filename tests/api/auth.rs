//! Authentication (401), permissions and IP allowlists (403), and the wall between
//! workspaces.

use consentry::domain::catalog::Permission;
use consentry::domain::ids::GroupId;
use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::{Subscribed, Unsubscribed};
use reqwest::StatusCode;

use crate::helpers::{assert_error, assert_success, by_external_ids, spawn_app, state_in, status_and_json, V2_PATH};

async fn post_with_authorization(
    app: &crate::helpers::TestApp,
    authorization: Option<&str>,
    group: GroupId,
) -> reqwest::Response {
    let mut request = app.client.post(app.url(V2_PATH)).json(&by_external_ids(group, "subscribed", &["u"]));
    if let Some(value) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_request_without_an_authorization_header_is_unauthorized() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let response = post_with_authorization(&app, None, group).await;

    assert_eq!(response.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
    assert_error(response, StatusCode::UNAUTHORIZED).await;
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn an_unknown_key_is_unauthorized() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    let response =
        app.post_v2_with_key(&uuid::Uuid::new_v4().to_string(), &by_external_ids(group, "subscribed", &["u"])).await;

    assert_error(response, StatusCode::UNAUTHORIZED).await;
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn an_empty_bearer_token_is_unauthorized() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    for value in ["Bearer", "Bearer ", "Bearer    "] {
        assert_error(post_with_authorization(&app, Some(value), group).await, StatusCode::UNAUTHORIZED).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_revoked_key_is_unauthorized() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let (key, secret) = app
        .catalog
        .create_key("default", vec![Permission::SubscriptionStatusSet], Vec::new(), "to revoke")
        .await
        .unwrap();
    assert_success(app.post_v2_with_key(&secret, &by_external_ids(group, "subscribed", &["before"])).await).await;

    app.catalog.revoke_key(&key.id.to_string()).await.unwrap();
    let response = app.post_v2_with_key(&secret, &by_external_ids(group, "subscribed", &["after"])).await;

    assert_error(response, StatusCode::UNAUTHORIZED).await;
    assert!(app.profile("after").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn a_scheme_other_than_bearer_is_unauthorized() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    for value in [format!("Basic {}", app.key), format!("Token {}", app.key), app.key.clone()] {
        let response = post_with_authorization(&app, Some(&value), group).await;
        assert_error(response, StatusCode::UNAUTHORIZED).await;
    }
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn the_bearer_scheme_word_is_accepted_in_any_case() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = post_with_authorization(&app, Some(&format!("{scheme} {}", app.key)), group).await;
        assert_success(response).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_key_without_the_subscription_status_set_permission_is_forbidden() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let others: Vec<Permission> =
        Permission::ALL.into_iter().filter(|&p| p != Permission::SubscriptionStatusSet).collect();
    let (_, secret) = app.catalog.create_key("default", others, Vec::new(), "read only").await.unwrap();

    let response = app.post_v2_with_key(&secret, &by_external_ids(group, "subscribed", &["u"])).await;

    let message = assert_error(response, StatusCode::FORBIDDEN).await;
    assert!(message.contains("subscription.status.set"), "{message}");
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn a_caller_outside_the_key_ip_allowlist_is_forbidden() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let nets = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    let (_, secret) =
        app.catalog.create_key("default", vec![Permission::SubscriptionStatusSet], nets, "office").await.unwrap();

    let response = app.post_v2_with_key(&secret, &by_external_ids(group, "subscribed", &["u"])).await;

    assert_error(response, StatusCode::FORBIDDEN).await;
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn a_caller_inside_the_key_ip_allowlist_is_served() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let nets = vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()];
    let (_, secret) =
        app.catalog.create_key("default", vec![Permission::SubscriptionStatusSet], nets, "local").await.unwrap();

    assert_success(app.post_v2_with_key(&secret, &by_external_ids(group, "subscribed", &["u"])).await).await;

    assert_eq!(app.state_of("u", group).await, Some(Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn an_unauthenticated_request_is_refused_before_its_body_is_examined() {
    let app = spawn_app().await;

    let response = app.post_raw(V2_PATH, Some("application/json"), b"{not json".to_vec(), None).await;
    assert_error(response, StatusCode::UNAUTHORIZED).await;
    let response = app.post_raw(V2_PATH, None, b"{not json".to_vec(), Some("wrong")).await;
    assert_error(response, StatusCode::UNAUTHORIZED).await;
    app.shutdown().await;
}

#[tokio::test]
async fn every_401_and_403_body_is_json_with_a_message() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let (_, read_only) =
        app.catalog.create_key("default", vec![Permission::UsersTrack], Vec::new(), "ro").await.unwrap();

    for (authorization, expected) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("Bearer nope".to_string()), StatusCode::UNAUTHORIZED),
        (Some(format!("Basic {}", app.key)), StatusCode::UNAUTHORIZED),
        (Some(format!("Bearer {read_only}")), StatusCode::FORBIDDEN),
    ] {
        let response = post_with_authorization(&app, authorization.as_deref(), group).await;
        assert_eq!(
            response.headers().get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{authorization:?}"
        );
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, expected, "{authorization:?}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Workspaces

#[tokio::test]
async fn a_group_of_another_workspace_answers_exactly_like_a_group_that_does_not_exist() {
    let app = spawn_app().await;
    let group_of_a = app.create_group("news", Channel::Email).await;
    let (_, key_of_b) = app.create_workspace_with_key("b", &[Permission::SubscriptionStatusSet]).await;
    let nonexistent = GroupId::generate();

    let foreign =
        status_and_json(app.post_v2_with_key(&key_of_b, &by_external_ids(group_of_a, "subscribed", &["u"])).await)
            .await;
    let missing =
        status_and_json(app.post_v2_with_key(&key_of_b, &by_external_ids(nonexistent, "subscribed", &["u"])).await)
            .await;

    assert_eq!(foreign.0, StatusCode::BAD_REQUEST);
    let placeholder = |body: &serde_json::Value, id: GroupId| body.to_string().replace(&id.to_string(), "<GROUP>");
    assert_eq!(placeholder(&foreign.1, group_of_a), placeholder(&missing.1, nonexistent));
    assert_eq!((foreign.0, missing.0), (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST));
    assert!(app.profile("u").await.is_none(), "nothing changes in workspace A");
    assert!(app.changes().await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn an_archived_group_of_another_workspace_answers_like_a_group_that_does_not_exist() {
    let app = spawn_app().await;
    let group_of_a = app.create_group("old", Channel::Email).await;
    app.catalog.archive_group(&group_of_a.to_string()).await.unwrap();
    let (_, key_of_b) = app.create_workspace_with_key("b", &[Permission::SubscriptionStatusSet]).await;
    let nonexistent = GroupId::generate();

    let foreign =
        status_and_json(app.post_v2_with_key(&key_of_b, &by_external_ids(group_of_a, "subscribed", &["u"])).await)
            .await;
    let missing =
        status_and_json(app.post_v2_with_key(&key_of_b, &by_external_ids(nonexistent, "subscribed", &["u"])).await)
            .await;

    let placeholder = |body: &serde_json::Value, id: GroupId| body.to_string().replace(&id.to_string(), "<GROUP>");
    assert_eq!(placeholder(&foreign.1, group_of_a), placeholder(&missing.1, nonexistent));
    assert!(!foreign.1.to_string().contains("archived"), "{}", foreign.1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_key_of_one_workspace_cannot_reach_the_profiles_of_another_by_email() {
    let app = spawn_app().await;
    let (b, key_of_b) = app.create_workspace_with_key("b", &[Permission::SubscriptionStatusSet]).await;
    let group_of_b = app.catalog.create_group("b", "news", Channel::Email).await.unwrap().id;
    app.import(&[("alice", Some("alice@example.com"), None)]).await;

    let body = crate::helpers::one_entry(group_of_b, "subscribed", "emails", &["alice@example.com"]);
    assert_success(app.post_v2_with_key(&key_of_b, &body).await).await;

    assert!(app.profile("alice").await.unwrap().states.is_empty(), "workspace A's profile is untouched");
    assert!(app.changes().await.is_empty());
    let orphan = app.store.inspect().orphan_states(b, &crate::helpers::email("alice@example.com")).await.unwrap();
    assert_eq!(orphan.len(), 1, "in B the email is carried by nobody, so it is orphaned there");
    app.shutdown().await;
}

#[tokio::test]
async fn the_same_external_id_in_two_workspaces_names_two_separate_profiles() {
    let app = spawn_app().await;
    let group_of_a = app.create_group("news", Channel::Email).await;
    let (b, key_of_b) = app.create_workspace_with_key("b", &[Permission::SubscriptionStatusSet]).await;
    let group_of_b = app.catalog.create_group("b", "news", Channel::Email).await.unwrap().id;

    assert_success(app.post_v2(&by_external_ids(group_of_a, "subscribed", &["user-1"])).await).await;
    assert_success(app.post_v2_with_key(&key_of_b, &by_external_ids(group_of_b, "unsubscribed", &["user-1"])).await)
        .await;

    let in_a = app.profile("user-1").await.unwrap();
    let in_b = app.store.inspect().profile_by_external_id(b, "user-1").await.unwrap().unwrap();
    assert_ne!(in_a.id, in_b.id);
    assert_eq!(in_a.states.len(), 1);
    assert_eq!(in_b.states.len(), 1);
    assert_eq!(app.state_of("user-1", group_of_a).await, Some(Subscribed));
    assert_eq!(state_in(&app.store, b, "user-1", group_of_b).await, Some(Unsubscribed));
    assert_eq!(app.changes().await.len(), 1);
    assert_eq!(app.store.inspect().change_records(b).await.unwrap().len(), 1);
    app.shutdown().await;
}
