//! Errors outside the endpoint's own validation: unknown paths and methods, media types, body
//! size, malformed JSON, and Braze's own broken samples. Every one is JSON with a `message`.

use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::Subscribed;
use consentry::http::error::MAX_BODY_BYTES;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{assert_bad_request, assert_error, assert_success, by_external_ids, spawn_app, TestApp, V2_PATH};

const FOUR_MIB: usize = 4 * 1024 * 1024;

#[tokio::test]
async fn an_unknown_path_answers_404_as_json_with_a_message() {
    let app = spawn_app().await;

    for path in ["/v3/subscription/status/set", "/", "/v2/subscription/status/set/extra"] {
        let response = app.client.post(app.url(path)).bearer_auth(&app.key).json(&json!({})).send().await.unwrap();
        let message = assert_error(response, StatusCode::NOT_FOUND).await;
        assert!(message.contains(path), "{path}: {message}");
    }
    let response = app.client.get(app.url("/nothing/here")).send().await.unwrap();
    assert_error(response, StatusCode::NOT_FOUND).await;
    app.shutdown().await;
}

#[tokio::test]
async fn another_method_on_the_endpoint_answers_405_as_json_with_an_allow_header() {
    let app = spawn_app().await;

    for method in [reqwest::Method::GET, reqwest::Method::PUT, reqwest::Method::DELETE, reqwest::Method::PATCH] {
        let response = app.client.request(method.clone(), app.url(V2_PATH)).bearer_auth(&app.key).send().await.unwrap();
        let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
        assert!(allow.as_deref().is_some_and(|a| a.contains("POST")), "{method}: Allow is {allow:?}");
        assert_eq!(
            response.headers().get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{method}"
        );
        let message = assert_error(response, StatusCode::METHOD_NOT_ALLOWED).await;
        assert!(message.contains(method.as_str()), "{method}: {message}");
    }
    app.shutdown().await;
}

async fn valid_body(app: &TestApp) -> Vec<u8> {
    let group = app.create_group("news", Channel::Email).await;
    serde_json::to_vec(&by_external_ids(group, "subscribed", &["u"])).unwrap()
}

#[tokio::test]
async fn a_body_without_content_type_answers_415() {
    let app = spawn_app().await;
    let body = valid_body(&app).await;

    let message =
        assert_error(app.post_raw(V2_PATH, None, body, Some(&app.key)).await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    assert!(message.contains("application/json"), "{message}");
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn a_body_declared_as_another_media_type_answers_415() {
    let app = spawn_app().await;
    let body = valid_body(&app).await;

    for content_type in ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", "multipart/form-data"]
    {
        let response = app.post_raw(V2_PATH, Some(content_type), body.clone(), Some(&app.key)).await;
        let message = assert_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
        assert!(message.contains(content_type), "{content_type}: {message}");
    }
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn json_with_a_charset_parameter_or_in_upper_case_is_accepted() {
    let app = spawn_app().await;
    let body = valid_body(&app).await;

    for content_type in ["application/json; charset=utf-8", "application/json;charset=UTF-8", "Application/JSON"] {
        assert_success(app.post_raw(V2_PATH, Some(content_type), body.clone(), Some(&app.key)).await).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn malformed_json_answers_400_with_a_message() {
    let app = spawn_app().await;

    for raw in ["{", "{\"subscription_groups\": [}", "{'subscription_groups': []}", "{\"a\":1,}", "nul", "{} {}"] {
        let response = app.post_raw(V2_PATH, Some("application/json"), raw.as_bytes().to_vec(), Some(&app.key)).await;
        let message = assert_bad_request(response).await;
        assert!(message.contains("JSON"), "{raw}: {message}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn an_empty_body_answers_400() {
    let app = spawn_app().await;

    let message =
        assert_bad_request(app.post_raw(V2_PATH, Some("application/json"), Vec::new(), Some(&app.key)).await).await;

    assert!(message.contains("empty"), "{message}");
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Body size

/// A valid request padded with trailing white space to exactly `size` bytes.
async fn padded_body(app: &TestApp, size: usize) -> Vec<u8> {
    let mut body = valid_body(app).await;
    assert!(body.len() < size);
    body.resize(size, b' ');
    body
}

#[tokio::test]
async fn a_body_of_four_million_bytes_is_accepted() {
    let app = spawn_app().await;
    let body = padded_body(&app, 4_000_000).await;

    assert_success(app.post_raw(V2_PATH, Some("application/json"), body, Some(&app.key)).await).await;

    app.shutdown().await;
}

/// The limit is 4 MB; whether that means 4,000,000 bytes or 4 MiB is the server's choice, and
/// this pins only that a body of exactly the limit is accepted.
#[tokio::test]
async fn a_body_of_exactly_the_size_limit_is_accepted() {
    let app = spawn_app().await;
    let body = padded_body(&app, MAX_BODY_BYTES).await;

    assert_success(app.post_raw(V2_PATH, Some("application/json"), body, Some(&app.key)).await).await;

    app.shutdown().await;
}

#[tokio::test]
async fn a_body_one_byte_over_the_size_limit_answers_413() {
    let app = spawn_app().await;
    let body = padded_body(&app, MAX_BODY_BYTES + 1).await;

    assert_error(
        app.post_raw(V2_PATH, Some("application/json"), body, Some(&app.key)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;

    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn a_body_over_four_megabytes_with_content_length_answers_413_as_json() {
    let app = spawn_app().await;
    let body = padded_body(&app, FOUR_MIB + 1).await;

    let response = app.post_raw(V2_PATH, Some("application/json"), body, Some(&app.key)).await;

    let message = assert_error(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(message.contains("4 MB"), "{message}");
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

/// Sends raw bytes on a fresh connection (writing from another task, so that a server that
/// answers before reading everything is not blocked) and returns the status and JSON body.
async fn raw_exchange(app: &TestApp, head: String, body_chunks: Vec<Vec<u8>>) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        for chunk in body_chunks {
            write.write_all(&chunk).await?;
        }
        write.flush().await?;
        // Keep the write half open until the server has answered.
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        Ok::<_, std::io::Error>(())
    });
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let answer = loop {
        let n = match read.read(&mut buffer).await {
            Ok(0) | Err(_) => break None,
            Ok(n) => n,
        };
        received.extend_from_slice(&buffer[..n]);
        if let Some(answer) = parse_response(&received) {
            break Some(answer);
        }
    };
    writer.abort();
    answer.unwrap_or_else(|| panic!("no complete response; got {:?}", String::from_utf8_lossy(&received)))
}

/// A complete HTTP/1.1 response with a Content-Length body, if `bytes` holds one.
fn parse_response(bytes: &[u8]) -> Option<(u16, Value)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head.lines().find_map(|line| {
        line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
    })?;
    let body = bytes.get(end + 4..end + 4 + length)?;
    Some((status, serde_json::from_slice(body).expect("a JSON body")))
}

#[tokio::test]
async fn a_declared_content_length_over_four_megabytes_answers_413_without_sending_the_body() {
    let app = spawn_app().await;
    let head = format!(
        "POST {V2_PATH} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        app.addr,
        app.key,
        FOUR_MIB + 1
    );

    let (status, body) = raw_exchange(&app, head, vec![b"{".to_vec()]).await;

    assert_eq!(status, 413, "{body}");
    assert!(body["message"].is_string(), "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_chunked_body_over_four_megabytes_answers_413_as_json() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let head = format!(
        "POST {V2_PATH} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        app.addr, app.key
    );
    let mut chunks = Vec::new();
    let start = serde_json::to_vec(&by_external_ids(group, "subscribed", &["u"])).unwrap();
    chunks.push(format!("{:x}\r\n", start.len()).into_bytes());
    chunks.push(start);
    chunks.push(b"\r\n".to_vec());
    let padding = vec![b' '; 64 * 1024];
    for _ in 0..(FOUR_MIB / padding.len() + 2) {
        chunks.push(format!("{:x}\r\n", padding.len()).into_bytes());
        chunks.push(padding.clone());
        chunks.push(b"\r\n".to_vec());
    }
    chunks.push(b"0\r\n\r\n".to_vec());

    let (status, body) = raw_exchange(&app, head, chunks).await;

    assert_eq!(status, 413, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(app.profile("u").await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn a_small_chunked_body_is_accepted() {
    let app = spawn_app().await;
    let body = valid_body(&app).await;
    let head = format!(
        "POST {V2_PATH} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        app.addr, app.key
    );
    let (first, second) = body.split_at(body.len() / 2);
    let chunks = vec![
        format!("{:x}\r\n", first.len()).into_bytes(),
        first.to_vec(),
        b"\r\n".to_vec(),
        format!("{:x}\r\n", second.len()).into_bytes(),
        second.to_vec(),
        b"\r\n0\r\n\r\n".to_vec(),
    ];

    let (status, body) = raw_exchange(&app, head, chunks).await;

    assert_eq!((status, body), (201, json!({ "message": "success" })));
    assert!(app.profile("u").await.is_some());
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Braze's own sample requests

/// The V2 sample bodies of Braze's Postman collection (`fixtures/PROVENANCE.md`).
fn fixture_samples() -> Vec<String> {
    let samples: Vec<String> = crate::braze_samples::fixture_samples()
        .into_iter()
        .filter(|s| s.method == "POST" && s.url.ends_with("/v2/subscription/status/set"))
        .map(|s| s.body.expect("a V2 sample has a body"))
        .collect();
    assert_eq!(samples.len(), 2, "the email and the SMS V2 samples: {samples:?}");
    samples
}

async fn assert_samples_answer_a_clear_400(app: &TestApp, samples: &[String]) {
    assert!(!samples.is_empty());
    for sample in samples {
        let response =
            app.post_raw(V2_PATH, Some("application/json"), sample.as_bytes().to_vec(), Some(&app.key)).await;
        let message = assert_bad_request(response).await;
        assert!(message.contains("not valid JSON"), "{sample}: {message}");
        assert!(message.contains("line") && message.contains("column"), "{sample}: {message}");
    }
}

#[tokio::test]
async fn braze_v2_sample_requests_missing_their_braces_answer_a_clear_400() {
    let app = spawn_app().await;

    assert_samples_answer_a_clear_400(&app, &fixture_samples()).await;

    app.shutdown().await;
}

#[tokio::test]
async fn braze_v2_sample_requests_with_their_braces_restored_succeed_on_real_groups() {
    let app = spawn_app().await;
    let email_group = app.create_group("news", Channel::Email).await;
    let sms_group = app.create_group("sms", Channel::Sms).await;

    for sample in fixture_samples() {
        let group = if sample.contains("\"emails\"") { email_group } else { sms_group };
        let fixed = format!("{{{}}}", sample.replace("subscription_group_identifier", &group.to_string()));
        let response = app.post_raw(V2_PATH, Some("application/json"), fixed.into_bytes(), Some(&app.key)).await;
        assert_success(response).await;
    }

    assert_eq!(app.orphan_state(&crate::helpers::email("example1@email.com"), email_group).await, Some(Subscribed));
    assert_eq!(app.orphan_state(&crate::helpers::phone("+15556667777"), sms_group).await, Some(Subscribed));
    app.shutdown().await;
}
