//! The OpenAPI document served at `/openapi.json`: pinned by a snapshot, listing every route
//! the router serves, sound in the basics of OpenAPI 3.1, and true to the server (each
//! documented route is served, each documented permission is the one enforced, each request
//! example is accepted).

use std::collections::BTreeSet;

use consentry::domain::catalog::Permission;
use consentry::domain::subscription::Channel;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{spawn_app, status_and_json, TestApp};

/// The group id the request examples use, replaced by a real group's id to send them.
const EXAMPLE_GROUP_ID: &str = "0199a8a4-4c1e-7c3a-9c55-1f2e3d4c5b6a";

/// The document as served, and its body's exact text.
async fn fetch(app: &TestApp) -> (Value, String) {
    let response = app.client.get(app.url("/openapi.json")).send().await.expect("the request is sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get("content-type").map(|v| v.to_str().unwrap()), Some("application/json"));
    let text = response.text().await.expect("the body is read");
    let doc = serde_json::from_str(&text).expect("the document is JSON");
    (doc, text)
}

/// Every operation of the document: (method in upper case, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let paths = doc["paths"].as_object().expect("the document has paths");
    let mut out = Vec::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item is an object") {
            if ["get", "put", "post", "delete", "options", "head", "patch", "trace"].contains(&method.as_str()) {
                out.push((method.to_uppercase(), path.clone(), operation));
            }
        }
    }
    out
}

/// The served document is pinned byte for byte by an insta snapshot,
/// `snapshots/api__openapi__openapi.snap` (the server serves it pretty-printed, so the snapshot
/// is readable and its diffs reviewable).
///
/// After a deliberate change to the API, run `INSTA_UPDATE=always cargo test --test api openapi`
/// (or `cargo insta review` with cargo-insta) and review the snapshot's diff.
#[tokio::test]
async fn the_served_document_matches_its_snapshot() {
    let app = spawn_app().await;
    let (_, text) = fetch(&app).await;

    insta::assert_snapshot!("openapi", text);
    app.shutdown().await;
}

#[tokio::test]
async fn the_document_is_served_without_a_key_and_without_rate_limit_headers() {
    let app = spawn_app().await;

    let response = app.client.get(app.url("/openapi.json")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
    assert!(!response.headers().keys().any(|name| name.as_str().starts_with("x-ratelimit")));
    app.shutdown().await;
}

#[tokio::test]
async fn every_route_the_router_serves_is_in_the_document_with_its_method() {
    let app = spawn_app().await;
    let (doc, _) = fetch(&app).await;

    let served: BTreeSet<(String, String)> =
        consentry::http::routes().into_iter().map(|(method, path)| (method.to_string(), path)).collect();
    let documented: BTreeSet<(String, String)> =
        operations(&doc).into_iter().map(|(method, path, _)| (method, path)).collect();

    assert!(served.len() >= 7, "the router's registrations were not found: {served:?}");
    assert_eq!(served, documented, "the routes served and the operations documented differ");
    app.shutdown().await;
}

#[tokio::test]
async fn every_documented_operation_is_served_at_its_path_and_method() {
    let app = spawn_app().await;
    let (doc, _) = fetch(&app).await;

    for (method, path, operation) in operations(&doc) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        // No key: a protected operation answers 401 (it exists and checks keys first), the
        // public one answers its success. Neither can be a 404 or a 405.
        let status = app.client.request(method.clone(), app.url(&path)).send().await.unwrap().status();
        let public = operation["security"].as_array().is_some_and(|s| s.iter().all(|r| r == &serde_json::json!({})));
        let expected = if public { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
        assert_eq!(status, expected, "{method} {path}");
    }
    app.shutdown().await;
}

/// Follows a local `$ref` (`#/components/...`) to what it names.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` in `value`, wherever it is.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(reference)) => out.push(reference),
                    _ => refs(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_sound_openapi_3_1() {
    let app = spawn_app().await;
    let (doc, _) = fetch(&app).await;

    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "openapi is {}", doc["openapi"]);
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
    let bearer = &schemes["bearerAuth"];
    assert_eq!((bearer["type"].as_str(), bearer["scheme"].as_str()), (Some("http"), Some("bearer")));

    let mut operation_ids = BTreeSet::new();
    for (method, path, operation) in operations(&doc) {
        let name = format!("{method} {path}");
        let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{name}: no operationId"));
        assert!(operation_ids.insert(id.to_string()), "{name}: operationId {id} is used twice");
        let responses = operation["responses"].as_object().unwrap_or_else(|| panic!("{name}: no responses"));
        assert!(responses.keys().any(|status| status.starts_with('2')), "{name}: no 2XX response");
        let security = operation["security"].as_array().unwrap_or_else(|| panic!("{name}: no security"));
        assert!(!security.is_empty(), "{name}: empty security");
        for requirement in security {
            for scheme in requirement.as_object().unwrap().keys() {
                assert!(schemes.contains_key(scheme), "{name}: unknown security scheme {scheme}");
            }
        }
        if security.iter().any(|r| r.get("bearerAuth").is_some()) {
            assert!(responses.contains_key("401") && responses.contains_key("403"), "{name}: no 401/403");
            assert!(responses.contains_key("429"), "{name}: no 429");
            let permission = operation["x-permission"].as_str().unwrap_or_else(|| panic!("{name}: no x-permission"));
            assert!(
                operation["description"].as_str().unwrap().contains(permission),
                "{name}: permission not described"
            );
        }
        for (status, response) in responses {
            let response = match response.get("$ref") {
                Some(reference) => resolve(&doc, reference.as_str().unwrap()).unwrap(),
                None => response,
            };
            assert!(response["headers"].get("x-request-id").is_some(), "{name} {status}: no x-request-id header");
        }
    }

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for reference in all {
        assert!(reference.starts_with("#/components/"), "{reference} is not a component");
        assert!(resolve(&doc, reference).is_some(), "{reference} resolves to nothing");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn each_documented_permission_is_the_one_the_server_enforces() {
    let app = spawn_app().await;
    let (doc, _) = fetch(&app).await;

    for (index, (method, path, operation)) in operations(&doc).into_iter().enumerate() {
        let Some(documented) = operation["x-permission"].as_str() else { continue };
        let permission = Permission::parse(documented).unwrap_or_else(|| panic!("{path}: unknown {documented}"));
        let others: Vec<Permission> = Permission::ALL.into_iter().filter(|p| *p != permission).collect();
        let (_, without) = app.create_workspace_with_key(&format!("without-{index}"), &others).await;
        let (_, with) = app.create_workspace_with_key(&format!("with-{index}"), &[permission]).await;
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let send = |key: String| {
            let mut request = app.client.request(method.clone(), app.url(&path)).bearer_auth(key);
            if method == Method::POST {
                request = request.json(&serde_json::json!({}));
            }
            request.send()
        };

        assert_eq!(
            send(without).await.unwrap().status(),
            StatusCode::FORBIDDEN,
            "{method} {path} without {documented}"
        );
        let status = send(with).await.unwrap().status();
        assert!(status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED, "{method} {path}: {status}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn each_documented_request_example_is_accepted() {
    let app = spawn_app().await;
    let (doc, _) = fetch(&app).await;
    let group = app.create_group("news", Channel::Email).await.to_string();

    let mut sent = 0;
    for (method, path, operation) in operations(&doc) {
        let Some(reference) = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str() else {
            continue;
        };
        let schema = resolve(&doc, reference).unwrap();
        let examples = schema["examples"].as_array().unwrap_or_else(|| panic!("{method} {path}: no example"));
        for example in examples {
            let body = example.to_string().replace(EXAMPLE_GROUP_ID, &group);
            let response = app
                .client
                .request(Method::from_bytes(method.as_bytes()).unwrap(), app.url(&path))
                .bearer_auth(&app.key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let (status, answer) = status_and_json(response).await;
            assert!(status.is_success(), "{method} {path}: {status} {answer}");
            if let Some(errors) = answer.get("errors") {
                panic!("{method} {path}: the example was partly refused: {errors}");
            }
            sent += 1;
        }
    }
    assert!(sent >= 4, "only {sent} examples were sent");
    app.shutdown().await;
}
