//! Expiry of orphaned identifier state (issue3-decisions.md, "Orphaned identifier state
//! expiry"): retention counts from the state's last real change; an expired state is invisible
//! at once and the background sweep deletes it.
//!
//! The servers here run on a manual clock that the tests move: no test waits for time to pass,
//! only (through `eventually`) for the background sweep to run.

use std::time::Duration;

use consentry::domain::ids::GroupId;
use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::{Subscribed, Unsubscribed};
use reqwest::StatusCode;
use serde_json::json;

use consentry::domain::retention::Retention;

use crate::helpers::{
    assert_success, by_external_ids, email, eventually, manual_clock, one_entry, phone, spawn_app_with, statuses,
    TestApp,
};

/// A server on a manual clock, keeping orphaned states for `retention`, sweeping every `sweep`
/// (of real time: the sweep reads the manual clock when it runs).
async fn app_with(retention: Duration, sweep: Duration) -> TestApp {
    spawn_app_with(|settings| {
        settings.orphan_retention = Retention::new(retention);
        settings.orphan_sweep_interval = sweep;
        settings.clock = manual_clock();
    })
    .await
}

const ONE_SECOND: Duration = Duration::from_secs(1);
const SWEEP: Duration = Duration::from_millis(20);
/// A sweep that never runs during a test.
const NO_SWEEP: Duration = Duration::from_secs(3600);
/// Comfortably past a 1 s retention.
const PAST_ONE_SECOND: Duration = Duration::from_millis(1400);

/// Waits up to 10 s until `contact`'s state in `group` is gone from the store.
async fn until_deleted(app: &TestApp, what: &str, contact: consentry::domain::change::Contact, group: GroupId) {
    eventually(what, Duration::from_secs(10), || {
        let contact = contact.clone();
        async move { app.orphan_state(&contact, group).await.is_none().then_some(()) }
    })
    .await
}

#[tokio::test]
async fn an_expired_orphaned_state_reads_unknown_at_once_even_before_the_sweep_deletes_it() {
    let app = app_with(ONE_SECOND, NO_SWEEP).await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["o@example.com"])).await).await;
    assert_eq!(
        app.status_get(news, "email=o@example.com").await,
        (StatusCode::OK, statuses(&[("o@example.com", "Subscribed")]))
    );

    app.clock.advance(PAST_ONE_SECOND);

    assert_eq!(
        app.status_get(news, "email=o@example.com").await,
        (StatusCode::OK, statuses(&[("o@example.com", "Unknown")]))
    );
    assert_eq!(
        app.user_status("email=o@example.com").await,
        (StatusCode::OK, json!({ "users": [], "total_count": 0, "message": "success" }))
    );
    assert_eq!(
        app.orphan_state(&email("o@example.com"), news).await,
        Some(Subscribed),
        "no sweep ran: it is still stored"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn the_sweep_physically_deletes_expired_orphaned_states() {
    let app = app_with(ONE_SECOND, SWEEP).await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["o@example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(sms, "subscribed", "phones", &["+12223334444"])).await).await;
    assert_eq!(app.orphan_state(&email("o@example.com"), news).await, Some(Unsubscribed));

    app.clock.advance(PAST_ONE_SECOND);
    until_deleted(&app, "the sweep deletes the email's state", email("o@example.com").clone(), news).await;
    until_deleted(&app, "the sweep deletes the phone's state", phone("+12223334444").clone(), sms).await;

    assert_eq!(
        app.status_get(news, "email=o@example.com").await,
        (StatusCode::OK, statuses(&[("o@example.com", "Unknown")]))
    );
    assert_eq!(app.changes().await.len(), 2, "the history of the expired states stays");
    app.shutdown().await;
}

#[tokio::test]
async fn a_state_refreshed_by_a_real_change_lives_on() {
    let retention = Duration::from_secs(2);
    let app = app_with(retention, SWEEP).await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["o@example.com"])).await).await;

    app.clock.advance(Duration::from_millis(1200));
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["o@example.com"])).await).await;
    app.clock.advance(Duration::from_millis(1200));

    // The first change is 2.4 s old, past the retention; the refresh 1.2 s, inside it.
    let answer = app.status_get(news, "email=o@example.com").await;
    assert_eq!(answer, (StatusCode::OK, statuses(&[("o@example.com", "Unsubscribed")])));
    assert_eq!(app.orphan_state(&email("o@example.com"), news).await, Some(Unsubscribed));

    app.clock.advance(Duration::from_millis(1000));
    until_deleted(&app, "the refreshed state expires in its turn", email("o@example.com").clone(), news).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_no_op_set_does_not_refresh_an_orphaned_state() {
    let app = app_with(ONE_SECOND, NO_SWEEP).await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["o@example.com"])).await).await;

    app.clock.advance(Duration::from_millis(500));
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["o@example.com"])).await).await;
    assert_eq!(app.changes().await.len(), 1, "a no-op");
    app.clock.advance(Duration::from_millis(800));

    assert_eq!(
        app.status_get(news, "email=o@example.com").await,
        (StatusCode::OK, statuses(&[("o@example.com", "Unknown")]))
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_set_after_expiry_is_a_change_from_unknown_even_to_the_same_state() {
    let app = app_with(ONE_SECOND, NO_SWEEP).await;
    let news = app.create_group("news", Channel::Email).await;
    let sms = app.create_group("sms", Channel::Sms).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["o@example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(sms, "subscribed", "phones", &["+12223334444"])).await).await;

    app.clock.advance(PAST_ONE_SECOND);
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["o@example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(sms, "unsubscribed", "phones", &["+12223334444"])).await).await;

    let changes = app.changes().await;
    assert_eq!(changes.len(), 4, "{changes:?}");
    assert_eq!(changes[2].subject.contact(), Some(&email("o@example.com")));
    assert_eq!((changes[2].old, changes[2].new), (None, Subscribed));
    assert_eq!(changes[3].subject.contact(), Some(&phone("+12223334444")));
    assert_eq!((changes[3].old, changes[3].new), (None, Unsubscribed));
    assert_eq!(
        app.status_get(news, "email=o@example.com").await,
        (StatusCode::OK, statuses(&[("o@example.com", "Subscribed")]))
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_set_after_the_sweep_deleted_a_state_records_old_unknown() {
    let app = app_with(ONE_SECOND, SWEEP).await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["o@example.com"])).await).await;

    app.clock.advance(PAST_ONE_SECOND);
    until_deleted(&app, "the sweep deletes the state", email("o@example.com").clone(), news).await;
    assert_success(app.post_v2(&one_entry(news, "unsubscribed", "emails", &["o@example.com"])).await).await;

    let last = app.changes().await.pop().unwrap();
    assert_eq!((last.old, last.new), (None, Unsubscribed));
    assert_eq!(app.orphan_state(&email("o@example.com"), news).await, Some(Unsubscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn profile_states_never_expire() {
    let app = app_with(ONE_SECOND, SWEEP).await;
    let news = app.create_group("news", Channel::Email).await;
    app.import(&[("u", Some("u@example.com"), None)]).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u"])).await).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["orphan@example.com"])).await).await;

    app.clock.advance(PAST_ONE_SECOND);
    until_deleted(&app, "the sweep deletes the orphaned state", email("orphan@example.com"), news).await;

    assert_eq!(app.state_of("u", news).await, Some(Subscribed));
    assert_eq!(
        app.status_get(news, "email=u@example.com").await,
        (StatusCode::OK, statuses(&[("u@example.com", "Subscribed")]))
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_running_at_once_delete_each_expired_state_exactly_once() {
    // As on several nodes sharing one database: four sweeps at the same moment.
    let app = app_with(ONE_SECOND, NO_SWEEP).await;
    let news = app.create_group("news", Channel::Email).await;
    let emails: Vec<String> = (0..40).map(|i| format!("o{i}@example.com")).collect();
    let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &emails)).await).await;
    app.clock.advance(PAST_ONE_SECOND);

    let sweeps: Vec<_> = (0..4)
        .map(|_| {
            let store = app.store.clone();
            tokio::spawn(async move { store.expire_orphans().await })
        })
        .collect();
    let mut deleted = 0;
    for sweep in sweeps {
        deleted += sweep.await.unwrap().expect("every sweep succeeds");
    }
    assert_eq!(deleted, emails.len(), "the sweeps together delete each expired state once");
    for address in &emails {
        assert_eq!(app.orphan_state(&email(address), news).await, None, "{address}");
    }
    assert_eq!(app.changes().await.len(), emails.len(), "the history of the expired states stays");
    app.shutdown().await;
}
