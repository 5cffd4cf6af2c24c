//! Rate-limit counters shared by several nodes: through Redis (`serve --rate-limit-redis`) or,
//! by default on the PostgreSQL store, in the database. Every node pointed at the same Redis or
//! database spends one budget per workspace. Needs the Redis on 127.0.0.1:6379 and the
//! PostgreSQL on 127.0.0.1:5432 that the machine runs; an unreachable one fails these tests
//! rather than skipping them. Redis with a password is in `redis_auth.rs`.

use consentry::domain::ids::WorkspaceId;
use consentry::domain::rate_limit::{Bucket, Limit};
use consentry::domain::subscription::Channel;
use consentry::domain::time::Clock;
use consentry::limiter::RateLimiter;
use reqwest::StatusCode;

use consentry::store::{DatabaseLocation, Policy, PostgresOptions, Store, StoreOptions};

use crate::helpers::{
    assert_error, assert_success, by_external_ids, rate_limit_headers, spawn_app_on, spawn_app_with, TestDatabase,
    TestStore,
};

const REDIS: &str = "redis://127.0.0.1:6379";

pub(crate) fn day_limit(requests: u64) -> Limit {
    Limit::new(requests, 86_400).expect("a valid limit")
}

#[tokio::test]
async fn two_nodes_counting_in_one_redis_share_one_budget() {
    let node_a = RateLimiter::in_redis(REDIS).await.expect("the machine's Redis");
    let node_b = RateLimiter::in_redis(REDIS).await.expect("the machine's Redis");
    assert_one_budget(&node_a, &node_b, "is Redis running on 127.0.0.1:6379? an unreachable Redis admits everything")
        .await;
}

/// Four requests of one workspace, alternately through `node_a` and `node_b`, against a
/// limit of 3: the fourth is refused, whichever node counts it.
pub(crate) async fn assert_one_budget(node_a: &RateLimiter, node_b: &RateLimiter, hint: &str) {
    let workspace = WorkspaceId::generate();
    let limit = day_limit(3);
    let now = Clock::system().now();
    let first = node_a.acquire(workspace, Bucket::Set, limit, now).await;
    let second = node_b.acquire(workspace, Bucket::Set, limit, now).await;
    let third = node_a.acquire(workspace, Bucket::Set, limit, now).await;
    let fourth = node_b.acquire(workspace, Bucket::Set, limit, now).await;
    assert_eq!(
        [first, second, third, fourth].map(|d| (d.allowed, d.remaining)),
        [(true, 2), (true, 1), (true, 0), (false, 0)],
        "{hint}"
    );
}

#[tokio::test]
async fn buckets_and_workspaces_count_apart_in_redis() {
    let limiter = RateLimiter::in_redis(REDIS).await.expect("the machine's Redis");
    let (one, other) = (WorkspaceId::generate(), WorkspaceId::generate());
    let limit = day_limit(1);
    let now = Clock::system().now();

    assert!(limiter.acquire(one, Bucket::Set, limit, now).await.allowed);
    assert!(limiter.acquire(one, Bucket::Get, limit, now).await.allowed, "another bucket");
    assert!(limiter.acquire(other, Bucket::Set, limit, now).await.allowed, "another workspace");
    assert!(!limiter.acquire(one, Bucket::Set, limit, now).await.allowed, "the spent one");
}

#[tokio::test]
async fn a_server_refuses_once_another_node_has_spent_the_shared_budget() {
    let app = spawn_app_with(|settings| settings.rate_limit_redis = Some(REDIS.into())).await;
    let group = app.create_group("news", Channel::Email).await;
    app.set_limit(Bucket::Set, 3, 86_400).await;
    let response = app.post_v2(&by_external_ids(group, "subscribed", &["a"])).await;
    assert_eq!(rate_limit_headers(&response).map(|(l, r, _)| (l, r)), Some((3, 2)));
    assert_success(response).await;

    // Another node serving the same workspace spends the rest of the budget.
    let other_node = RateLimiter::in_redis(REDIS).await.expect("the machine's Redis");
    let limit = day_limit(3);
    other_node.acquire(app.workspace, Bucket::Set, limit, Clock::system().now()).await;
    other_node.acquire(app.workspace, Bucket::Set, limit, Clock::system().now()).await;

    let refused = app.post_v2(&by_external_ids(group, "unsubscribed", &["a"])).await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(app.state_of("a", group).await, Some(consentry::domain::subscription::SubscriptionState::Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_redis_admits_requests_rather_than_refusing_consent_changes() {
    let app = spawn_app_with(|settings| settings.rate_limit_redis = Some("redis://127.0.0.1:1".into())).await;
    let group = app.create_group("news", Channel::Email).await;
    app.set_limit(Bucket::Set, 1, 86_400).await;

    for state in ["subscribed", "unsubscribed", "subscribed"] {
        assert_success(app.post_v2(&by_external_ids(group, state, &["a"])).await).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_redis_url_of_another_scheme_is_refused_without_repeating_it() {
    let err =
        RateLimiter::in_redis("http://user:s3cret@127.0.0.1:6379").await.err().expect("an http:// URL is refused");
    let message = err.to_string();
    assert!(message.contains("redis://") && message.contains("rediss://"), "{message}");
    assert!(!message.contains("s3cret"), "the password is repeated: {message}");
}

// ---------------------------------------------------------------------------------------------
// Counters in PostgreSQL: the default of nodes on a PostgreSQL store. These run whatever
// `CONSENTRY_TEST_STORE` says: the PostgreSQL on 127.0.0.1:5432 is part of the machine.

/// A PostgreSQL store on `database`, as another node would open it.
async fn node_on(database: &TestDatabase) -> consentry::store::postgres::PostgresStore {
    let location = DatabaseLocation::Postgres(database.url.clone());
    let options = StoreOptions {
        postgres: PostgresOptions { pool_size: 2, ..PostgresOptions::default() },
        ..StoreOptions::default()
    };
    match Store::open(&location, &options, &Policy::default()).await.expect("the store opens") {
        Store::Postgres(store) => store,
        Store::Embedded(_) => unreachable!("a postgres:// location"),
    }
}

#[tokio::test]
async fn two_nodes_counting_in_one_postgresql_database_share_one_budget() {
    let database = TestDatabase::create();
    let (node_a, node_b) =
        (RateLimiter::in_postgres(node_on(&database).await), RateLimiter::in_postgres(node_on(&database).await));
    assert_one_budget(&node_a, &node_b, "two nodes on one database").await;
    let (workspace, limit, now) = (WorkspaceId::generate(), day_limit(1), Clock::system().now());
    assert!(node_a.acquire(workspace, Bucket::Set, limit, now).await.allowed);
    assert!(node_a.acquire(workspace, Bucket::Get, limit, now).await.allowed, "another bucket counts apart");
    assert!(node_a.acquire(WorkspaceId::generate(), Bucket::Set, limit, now).await.allowed, "another workspace too");
    assert!(!node_b.acquire(workspace, Bucket::Set, limit, now).await.allowed, "the spent one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_through_two_nodes_are_admitted_exactly_up_to_the_shared_limit() {
    let database = TestDatabase::create();
    // The server admits a request uncounted when the database takes over 250 ms to count
    // (a rate limit must not become an outage); 40 racers on two-connection pools of a loaded
    // machine can wait that long, so these nodes wait as long as it takes to count exactly.
    let wait = std::time::Duration::from_secs(30);
    let nodes = [
        RateLimiter::in_postgres_waiting(node_on(&database).await, wait),
        RateLimiter::in_postgres_waiting(node_on(&database).await, wait),
    ];
    let nodes = std::sync::Arc::new(nodes);
    let workspace = WorkspaceId::generate();
    let limit = day_limit(25);
    let now = Clock::system().now();
    let racers: Vec<_> = (0..40)
        .map(|i| {
            let nodes = std::sync::Arc::clone(&nodes);
            tokio::spawn(async move { nodes[i % 2].acquire(workspace, Bucket::Set, limit, now).await.allowed })
        })
        .collect();
    let mut admitted = 0;
    for racer in racers {
        admitted += usize::from(racer.await.unwrap());
    }
    assert_eq!(admitted, 25);
}

#[tokio::test]
async fn a_server_on_postgresql_refuses_once_another_node_has_spent_the_budget_without_redis() {
    let app = spawn_app_on(TestStore::Postgres, |_| {}).await;
    let group = app.create_group("news", Channel::Email).await;
    app.set_limit(Bucket::Set, 3, 86_400).await;
    let response = app.post_v2(&by_external_ids(group, "subscribed", &["a"])).await;
    assert_eq!(rate_limit_headers(&response).map(|(l, r, _)| (l, r)), Some((3, 2)));
    assert_success(response).await;

    let Store::Postgres(shared) = &app.store else { unreachable!("a PostgreSQL app") };
    let other_node = RateLimiter::in_postgres(shared.clone());
    for _ in 0..2 {
        other_node.acquire(app.workspace, Bucket::Set, day_limit(3), Clock::system().now()).await;
    }

    let refused = app.post_v2(&by_external_ids(group, "unsubscribed", &["a"])).await;
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(app.state_of("a", group).await, Some(consentry::domain::subscription::SubscriptionState::Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn the_counters_of_ended_windows_are_deleted() {
    let database = TestDatabase::create();
    let store = node_on(&database).await;
    let limiter = RateLimiter::in_postgres(store.clone());
    let workspace = WorkspaceId::generate();
    let now = Clock::system().now();
    let short = Limit::new(10, 1).unwrap();
    limiter.acquire(workspace, Bucket::Set, short, now).await;
    limiter.acquire(workspace, Bucket::Get, day_limit(10), now).await;

    let ended = short.window_at(now).end();
    assert_eq!(store.forget_windows_ended_before(ended).await.unwrap(), 0, "a window is kept until its end");
    assert_eq!(store.forget_windows_ended_before(ended + 1).await.unwrap(), 1, "only the ended window goes");
    assert_eq!(limiter.acquire(workspace, Bucket::Get, day_limit(10), now).await.remaining, 8, "the day's count stays");
}
