//! Rate-limit counters in a Redis that requires a password, as every managed Redis does. Each
//! test starts its own `redis-server` (the machine has the binary; the shared Redis on 6379 is
//! never reconfigured) and sets the password itself with `CONFIG SET requirepass`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use consentry::domain::ids::WorkspaceId;
use consentry::domain::rate_limit::Bucket;
use consentry::domain::subscription::{Channel, SubscriptionState};
use consentry::domain::time::Clock;
use consentry::limiter::RateLimiter;
use consentry::server::Application;
use reqwest::StatusCode;
use tempfile::TempDir;

use crate::helpers::{assert_error, assert_success, by_external_ids, spawn_app_with, test_settings_on, TestStore};
use crate::shared_rate_limits::{assert_one_budget, day_limit};

const PASSWORD: &str = "correct-horse-battery";

/// A `redis-server` of this test's own, on a free port of 127.0.0.1, persisting nothing;
/// stopped when dropped.
struct OwnRedis {
    server: Child,
    port: u16,
    _dir: TempDir,
}

impl OwnRedis {
    /// Starts the server and waits (at most 5 s) until it answers; it requires no password yet.
    async fn start() -> OwnRedis {
        // Redis cannot be told to pick a port itself: take one the kernel says is free.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let server = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed on this machine");
        let redis = OwnRedis { server, port, _dir: dir };
        for _ in 0..100 {
            if redis.command(&format!("redis://127.0.0.1:{port}"), &["PING"]).await.is_ok() {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the test's redis-server on port {port} did not answer within 5 s");
    }

    /// Starts a server and sets `PASSWORD` as the password of its default user.
    async fn with_password() -> OwnRedis {
        let redis = OwnRedis::start().await;
        redis.command(&redis.url(""), &["CONFIG", "SET", "requirepass", PASSWORD]).await.expect("the password is set");
        redis
    }

    /// `redis://{credentials}@127.0.0.1:port`.
    fn url(&self, credentials: &str) -> String {
        format!("redis://{credentials}@127.0.0.1:{}", self.port)
    }

    /// Runs one command through `url`.
    async fn command(&self, url: &str, parts: &[&str]) -> redis::RedisResult<redis::Value> {
        let mut connection = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
        let mut command = redis::cmd(parts[0]);
        for part in &parts[1..] {
            command.arg(*part);
        }
        command.query_async(&mut connection).await
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[tokio::test]
async fn two_nodes_given_the_password_share_one_budget_in_a_redis_that_requires_it() {
    let redis = OwnRedis::with_password().await;
    let url = redis.url(&format!(":{PASSWORD}"));
    let node_a = RateLimiter::in_redis(&url).await.expect("the password is accepted");
    let node_b = RateLimiter::in_redis(&url).await.expect("the password is accepted");
    assert_one_budget(&node_a, &node_b, "both nodes count in the test's Redis").await;
}

#[tokio::test]
async fn a_named_user_with_its_own_password_counts_too() {
    let redis = OwnRedis::with_password().await;
    let admin = redis.url(&format!(":{PASSWORD}"));
    // A user allowed only what the counters need, on their keys only, as a managed Redis's
    // least-privilege account would be.
    let acl = ["ACL", "SETUSER", "counters", "on", ">counter-pass", "~consentry:*", "+incr", "+expire", "+ping"];
    redis.command(&admin, &acl).await.expect("the user is created");
    let limiter = RateLimiter::in_redis(&redis.url("counters:counter-pass")).await.expect("the user is accepted");
    let (workspace, limit, now) = (WorkspaceId::generate(), day_limit(1), Clock::system().now());
    assert!(limiter.acquire(workspace, Bucket::Set, limit, now).await.allowed);
    assert!(!limiter.acquire(workspace, Bucket::Set, limit, now).await.allowed, "the second request was counted");
}

#[tokio::test]
async fn a_server_given_the_password_refuses_once_another_node_has_spent_the_budget() {
    let redis = OwnRedis::with_password().await;
    let url = redis.url(&format!(":{PASSWORD}"));
    let app = spawn_app_with(|settings| settings.rate_limit_redis = Some(url.clone())).await;
    let group = app.create_group("news", Channel::Email).await;
    app.set_limit(Bucket::Set, 2, 86_400).await;
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["a"])).await).await;

    let other_node = RateLimiter::in_redis(&url).await.expect("the password is accepted");
    other_node.acquire(app.workspace, Bucket::Set, day_limit(2), Clock::system().now()).await;

    assert_error(app.post_v2(&by_external_ids(group, "unsubscribed", &["a"])).await, StatusCode::TOO_MANY_REQUESTS)
        .await;
    assert_eq!(app.state_of("a", group).await, Some(SubscriptionState::Subscribed));
    app.shutdown().await;
}

#[tokio::test]
async fn a_wrong_or_missing_password_stops_the_start_up_naming_the_option_but_not_the_password() {
    let redis = OwnRedis::with_password().await;
    for credentials in [":wrong-horse-battery", "default:wrong-horse-battery", ""] {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let (mut settings, _) = test_settings_on(TestStore::Embedded, &store_dir);
        let url =
            if credentials.is_empty() { format!("redis://127.0.0.1:{}", redis.port) } else { redis.url(credentials) };
        settings.rate_limit_redis = Some(url);
        let Err(err) = Application::build(settings).await else { panic!("{credentials:?}: the server started") };
        let message = format!("{err:#}");
        assert!(message.starts_with("--rate-limit-redis: "), "{message}");
        assert!(message.contains(&format!("127.0.0.1:{}", redis.port)), "{message}");
        assert!(!message.contains("wrong-horse"), "the password is printed: {message}");
        assert!(!store_dir.exists(), "{credentials:?}: a store was created before the refusal");
    }
}
