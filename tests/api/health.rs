//! `GET /livez` and `GET /readyz`: no key, JSON, and readiness that follows the store (the
//! embedded writer, a reachable PostgreSQL primary). Not in the Braze API document.

use std::time::{Duration, Instant};

use consentry::store::DatabaseLocation;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{eventually, spawn_app, spawn_app_on, status_and_json, test_store, TestStore};
use crate::postgres_outage::{socket_of, Proxy};

#[tokio::test]
async fn the_probes_answer_without_a_key_and_readyz_fails_once_the_store_stops_taking_writes() {
    let app = spawn_app().await;
    for path in ["/livez", "/readyz"] {
        let (status, body) = status_and_json(app.client.get(app.url(path)).send().await.unwrap()).await;
        assert_eq!((status, body), (StatusCode::OK, json!({ "status": "ok" })), "{path}");
    }
    let (_, document) = status_and_json(app.client.get(app.url("/openapi.json")).send().await.unwrap()).await;
    assert!(document["paths"].get("/livez").is_none() && document["paths"].get("/readyz").is_none());

    app.store.close().await;
    let (status, body) = status_and_json(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body, json!({ "status": "unavailable", "message": "the store is shutting down" }));
    let (status, _) = status_and_json(app.client.get(app.url("/livez")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "the process still serves");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_while_postgresql_is_unreachable_and_200_when_it_is_back() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let proxy = Proxy::start(socket_of(&crate::helpers::admin_database_url())).await;
    let app = spawn_app_on(TestStore::Postgres, |settings| {
        let DatabaseLocation::Postgres(url) = &settings.database else { unreachable!("a PostgreSQL test app") };
        let mut through_proxy = reqwest::Url::parse(url).unwrap();
        through_proxy.set_port(Some(proxy.addr.port())).unwrap();
        settings.database = DatabaseLocation::Postgres(through_proxy.to_string());
    })
    .await;
    let readyz = || async { status_and_json(app.client.get(app.url("/readyz")).send().await.unwrap()).await };
    assert_eq!(readyz().await.0, StatusCode::OK);

    proxy.fail();
    let started = Instant::now();
    let (status, body) = readyz().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("unreachable") || m.contains("did not answer")),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "the probe took {:?}", started.elapsed());

    proxy.recover().await;
    eventually("readyz answers 200 once the database is back", Duration::from_secs(15), || async {
        (readyz().await.0 == StatusCode::OK).then_some(())
    })
    .await;
    app.shutdown().await;
}
