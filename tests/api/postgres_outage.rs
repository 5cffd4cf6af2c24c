//! A PostgreSQL outage while the server runs: requests meet a prompt 503 with `retry-after`,
//! never a hang, a 500 or a half-applied change, and the server serves again by itself once
//! the database is back. The outage is real: the server reaches PostgreSQL through a TCP
//! proxy that the test closes (dropping every connection and refusing new ones) and opens
//! again on the same port. A statement stuck behind a lock past the statement timeout is the
//! same: a 503, and nothing applied. Runs in the suite's PostgreSQL pass.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consentry::domain::subscription::{Channel, SubscriptionState};
use consentry::store::DatabaseLocation;
use reqwest::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::helpers::{
    by_external_ids, eventually, spawn_app_on, status_and_json, test_store, TestStore, STATUS_GET_PATH,
};

/// A TCP proxy to the test PostgreSQL server that can fail and come back on the same port.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    upstream: SocketAddr,
    /// The accept loop and every relayed connection, aborted together by an outage.
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("the proxy binds");
        let proxy = Proxy { addr: listener.local_addr().unwrap(), upstream, tasks: Arc::default() };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (tasks, upstream) = (Arc::clone(&self.tasks), self.upstream);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(relay.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Drops every connection and stops listening: new connections are refused.
    pub(crate) fn fail(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub(crate) async fn recover(&self) {
        // The aborted accept loop drops its listener on its next poll; retry until the port is free.
        let listener = eventually("the proxy listens on its port again", Duration::from_secs(5), || async {
            TcpListener::bind(self.addr).await.ok()
        })
        .await;
        self.serve(listener);
    }
}

/// The host and port of a PostgreSQL URL.
pub(crate) fn socket_of(url: &str) -> SocketAddr {
    let parsed = reqwest::Url::parse(url).expect("a PostgreSQL URL");
    let host = parsed.host_str().expect("a host");
    let port = parsed.port().unwrap_or(5432);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).expect("a resolvable host").next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answers_503_while_its_database_is_down_and_serves_again_when_it_is_back() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let upstream = socket_of(&crate::helpers::admin_database_url());
    let proxy = Proxy::start(upstream).await;
    let app = spawn_app_on(TestStore::Postgres, |settings| {
        let DatabaseLocation::Postgres(url) = &settings.database else { unreachable!("a PostgreSQL test app") };
        let mut through_proxy = reqwest::Url::parse(url).unwrap();
        through_proxy.set_port(Some(proxy.addr.port())).unwrap();
        settings.database = DatabaseLocation::Postgres(through_proxy.to_string());
        settings.store.postgres.statement_timeout = Duration::from_secs(2);
    })
    .await;
    let group = app.create_group("News", Channel::Email).await;
    let (status, _) = status_and_json(app.post_v2(&by_external_ids(group, "subscribed", &["ada"])).await).await;
    assert_eq!(status, StatusCode::CREATED);

    proxy.fail();
    let started = Instant::now();
    for (what, response) in [
        ("a write", app.post_v2(&by_external_ids(group, "subscribed", &["bob"])).await),
        ("a read", app.get_query(STATUS_GET_PATH, &format!("subscription_group_id={group}&external_id=ada")).await),
    ] {
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{what} during the outage: {body}");
        assert_eq!(body["message"], "the database is unavailable; retry in a moment", "{what}");
        assert_eq!(retry_after.as_deref(), Some("1"), "{what}");
    }
    assert!(started.elapsed() < Duration::from_secs(10), "the 503s took {:?}", started.elapsed());

    proxy.recover().await;
    eventually("the server serves again after the database came back", Duration::from_secs(15), || async {
        let (status, body) = status_and_json(app.post_v2(&by_external_ids(group, "subscribed", &["bob"])).await).await;
        assert!(matches!(status, StatusCode::CREATED | StatusCode::SERVICE_UNAVAILABLE), "{status}: {body}");
        (status == StatusCode::CREATED).then_some(())
    })
    .await;
    assert_eq!(app.state_of("ada", group).await, Some(SubscriptionState::Subscribed));
    assert_eq!(app.state_of("bob", group).await, Some(SubscriptionState::Subscribed));
    // The refused write left nothing behind: one change per profile.
    assert_eq!(app.changes().await.len(), 2, "{:?}", app.changes().await);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_stuck_behind_a_lock_past_the_statement_timeout_answers_503_and_changes_nothing() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let mut url = String::new();
    let app = spawn_app_on(TestStore::Postgres, |settings| {
        settings.store.postgres.statement_timeout = Duration::from_millis(300);
        let DatabaseLocation::Postgres(database) = &settings.database else { unreachable!("a PostgreSQL test app") };
        url = database.clone();
    })
    .await;
    let group = app.create_group("News", Channel::Email).await;
    let (locker, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    locker.batch_execute("BEGIN; LOCK TABLE profiles IN ACCESS EXCLUSIVE MODE").await.unwrap();

    let started = Instant::now();
    let response = app.post_v2(&by_external_ids(group, "subscribed", &["ada"])).await;
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["message"], "the database is unavailable; retry in a moment");
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());

    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(app.state_of("ada", group).await, None, "the refused write left nothing");
    assert!(app.changes().await.is_empty());
    let (status, _) = status_and_json(app.post_v2(&by_external_ids(group, "subscribed", &["ada"])).await).await;
    assert_eq!(status, StatusCode::CREATED);
    app.shutdown().await;
}
