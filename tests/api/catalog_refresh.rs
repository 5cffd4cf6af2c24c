//! A catalog changed by another process sharing the store (the PostgreSQL case: the command
//! line on another machine, another node) takes effect on a running server once its catalog is
//! read again. Simulated here with a second `Catalog` over the same store.

use std::time::Duration;

use consentry::catalog::{Catalog, DEFAULT_WORKSPACE};
use consentry::domain::catalog::Permission;
use consentry::domain::subscription::Channel;
use consentry::domain::time::Clock;
use reqwest::StatusCode;

use crate::helpers::{
    assert_bad_request, assert_error, assert_success, by_external_ids, eventually, spawn_app, spawn_app_with,
};

#[tokio::test]
async fn a_group_created_by_another_process_is_served_after_a_reload() {
    let app = spawn_app().await;
    let other_process = Catalog::load(app.store.clone(), Clock::system()).await.expect("the catalog loads");
    let group = other_process.create_group(DEFAULT_WORKSPACE, "news", Channel::Email).await.expect("a group").id;

    assert_bad_request(app.post_v2(&by_external_ids(group, "subscribed", &["a"])).await).await;
    app.catalog.reload().await.expect("the catalog reloads");
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["a"])).await).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_key_revoked_by_another_process_stops_working_after_a_reload() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let (key, secret) = app
        .catalog
        .create_key(DEFAULT_WORKSPACE, vec![Permission::SubscriptionStatusSet], Vec::new(), "doomed")
        .await
        .expect("a key");
    let other_process = Catalog::load(app.store.clone(), Clock::system()).await.expect("the catalog loads");
    other_process.revoke_key(&key.id.to_string()).await.expect("the key is revoked");

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
    let app = spawn_app_with(|settings| settings.catalog_refresh_interval = Some(Duration::from_millis(20))).await;
    let other_process = Catalog::load(app.store.clone(), Clock::system()).await.expect("the catalog loads");
    let group = other_process.create_group(DEFAULT_WORKSPACE, "news", Channel::Email).await.expect("a group").id;

    eventually("the server serves the group another process created", Duration::from_secs(5), || async {
        let answered = app.post_v2(&by_external_ids(group, "subscribed", &["a"])).await.status();
        (answered == StatusCode::CREATED).then_some(())
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_reload_keeps_what_this_catalog_itself_changed() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;

    app.catalog.reload().await.expect("the catalog reloads");

    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["a"])).await).await;
    app.shutdown().await;
}
