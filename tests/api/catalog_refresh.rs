//! A catalog changed by another process sharing the store (the PostgreSQL case: the command
//! line on another machine, another node) takes effect on a running server once its catalog is
//! read again. Simulated here with a second `Catalog` over the same store.

use std::time::Duration;

use consentry::catalog::{Catalog, DEFAULT_WORKSPACE};
use consentry::domain::catalog::Permission;
use consentry::domain::subscription::Channel;
use reqwest::StatusCode;

use crate::helpers::{assert_bad_request, assert_error, assert_success, by_external_ids, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_group_created_by_another_process_is_served_after_a_reload() {
    let app = spawn_app().await;
    let other_process = Catalog::load(app.store.clone()).expect("the catalog loads");
    let group = other_process.create_group(DEFAULT_WORKSPACE, "news", Channel::Email).expect("a group").id;

    assert_bad_request(app.post_v2(&by_external_ids(group, "subscribed", &["a"])).await).await;
    app.catalog.reload().await.expect("the catalog reloads");
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["a"])).await).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_key_revoked_by_another_process_stops_working_after_a_reload() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email);
    let (key, secret) = app
        .catalog
        .create_key(DEFAULT_WORKSPACE, vec![Permission::SubscriptionStatusSet], Vec::new(), "doomed")
        .expect("a key");
    let other_process = Catalog::load(app.store.clone()).expect("the catalog loads");
    other_process.revoke_key(&key.id.to_string()).expect("the key is revoked");

    assert_success(app.post_v2_with_key(&secret, &by_external_ids(group, "subscribed", &["a"])).await).await;
    app.catalog.reload().await.expect("the catalog reloads");
    assert_error(
        app.post_v2_with_key(&secret, &by_external_ids(group, "subscribed", &["a"])).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_server_with_a_catalog_refresh_picks_up_changes_by_itself() {
    let app = spawn_app_with(|settings| settings.catalog_refresh = Some(Duration::from_millis(100))).await;
    let other_process = Catalog::load(app.store.clone()).expect("the catalog loads");
    let group = other_process.create_group(DEFAULT_WORKSPACE, "news", Channel::Email).expect("a group").id;

    let mut answered = StatusCode::BAD_REQUEST;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        answered = app.post_v2(&by_external_ids(group, "subscribed", &["a"])).await.status();
        if answered == StatusCode::CREATED {
            break;
        }
    }
    assert_eq!(answered, StatusCode::CREATED, "the group was never seen");
    app.shutdown().await;
}

#[tokio::test]
async fn a_reload_keeps_what_this_catalog_itself_changed() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email);

    app.catalog.reload().await.expect("the catalog reloads");

    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["a"])).await).await;
    app.shutdown().await;
}
