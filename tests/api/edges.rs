//! The edges a black-box probe found open, each reproduced with raw sockets: slow and idle
//! clients, the connection cap, a shutdown facing a half-sent header, oversized bodies, the
//! answers hyper writes by itself, encoded bodies, undecodable query escapes, and key guessing.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use consentry::domain::catalog::{ApiKey, Permission};
use consentry::domain::ids::WorkspaceId;
use consentry::domain::subscription::Channel;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{by_external_ids, spawn_app, spawn_app_with, status_and_json, STATUS_GET_PATH, V2_PATH};

/// An answer read off a raw socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Value,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().to_string())
        })
    }
}

/// Reads one answer (head, then `content-length` bytes of JSON).
async fn read_answer(stream: &mut TcpStream) -> Raw {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .expect("the socket reads");
        assert!(n > 0, "the connection closed before a whole head: {:?}", String::from_utf8_lossy(&bytes));
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let status = head[9..12].parse().expect("a status code");
    let mut raw = Raw { status, head, body: Value::Null };
    let length: usize = raw.header("content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = bytes[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.expect("the body reads");
        assert!(n > 0, "the connection closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    raw.body = serde_json::from_slice(&body[..length]).unwrap_or(Value::Null);
    raw
}

/// Waits until the server closes `stream` (a read of 0 bytes or a reset), at most `limit`;
/// returns how long that took, or `None`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_client_dribbling_its_headers_is_disconnected_after_the_header_read_timeout() {
    let app = spawn_app_with(|s| {
        s.serving.header_read_timeout = Duration::from_millis(300);
        s.serving.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    stream.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    // One more header line every 50 ms: always busy, never done.
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(3) {
        if stream.write_all(b"x-dribble: y\r\n").await.is_err() {
            closed = true;
            break;
        }
        if closed_within(&mut stream, Duration::from_millis(50)).await.is_some() {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "a connection dribbling its headers was still open after {took:?}");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_millis(1500), "closed after {took:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_and_a_silent_one_are_closed_after_the_idle_timeout() {
    let app = spawn_app_with(|s| {
        s.serving.header_read_timeout = Duration::from_secs(30);
        s.serving.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let mut kept_alive = TcpStream::connect(app.addr).await.unwrap();
    kept_alive.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    assert_eq!(read_answer(&mut kept_alive).await.status, 200);
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    for (what, stream) in [("kept alive", &mut kept_alive), ("silent", &mut silent)] {
        let took = closed_within(stream, Duration::from_secs(3)).await;
        let took = took.unwrap_or_else(|| panic!("the {what} connection was still open after 3 s"));
        assert!(took < Duration::from_millis(1500), "the {what} connection closed after {took:?}");
    }
    // A connection in use is not idle: two requests 200 ms apart on one connection.
    let mut busy = TcpStream::connect(app.addr).await.unwrap();
    for _ in 0..3 {
        busy.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert_eq!(read_answer(&mut busy).await.status, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_and_are_served_once_others_go() {
    let app = spawn_app_with(|s| s.serving.max_connections = 2).await;
    let holders = [TcpStream::connect(app.addr).await.unwrap(), TcpStream::connect(app.addr).await.unwrap()];
    // Let the server take both before the third arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(app.addr).await.expect("the kernel queues it");
    third.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(400), third.read(&mut byte)).await;
    assert!(early.is_err(), "a third connection was served with a cap of two: {early:?}");
    drop(holders);
    let answer = read_answer(&mut third).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_shutdown_facing_a_half_sent_header_ends_within_its_grace() {
    let app = spawn_app_with(|s| {
        s.serving.header_read_timeout = Duration::from_secs(60);
        s.serving.idle_timeout = Duration::from_secs(60);
        s.serving.shutdown_grace = Duration::from_millis(300);
    })
    .await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(b"POST /v2/subscription/status/set HTTP/1.1\r\nhost: x\r\ncontent-le").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), app.shutdown()).await.expect("the shutdown ends");
    assert!(started.elapsed() < Duration::from_secs(2), "the shutdown took {:?}", started.elapsed());
    assert!(closed_within(&mut stream, Duration::from_secs(1)).await.is_some(), "the connection was left open");
}

#[tokio::test]
async fn a_client_that_sends_a_whole_oversized_body_before_reading_gets_the_413() {
    let app = spawn_app().await;
    for chunked in [false, true] {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let body = vec![b' '; 5 * 1024 * 1024];
        let framing =
            if chunked { "transfer-encoding: chunked".to_string() } else { format!("content-length: {}", body.len()) };
        let head = format!(
            "POST {V2_PATH} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\n{framing}\r\n\r\n",
            app.key
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        if chunked {
            for piece in body.chunks(64 * 1024) {
                stream.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).await.unwrap();
                stream.write_all(piece).await.unwrap();
                stream.write_all(b"\r\n").await.unwrap();
            }
            stream.write_all(b"0\r\n\r\n").await.unwrap();
        } else {
            stream.write_all(&body).await.expect("the whole body is taken, not reset");
        }
        let answer = read_answer(&mut stream).await;
        assert_eq!(answer.status, 413, "chunked {chunked}: {answer:?}");
        assert_eq!(answer.body["message"], "request body is larger than the 4 MB limit", "chunked {chunked}");
        assert!(answer.header("x-request-id").is_some());
    }
    app.shutdown().await;
}

/// Sends `request` on a fresh connection and reads its answer.
async fn raw_request(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_answer(&mut stream).await
}

#[tokio::test]
async fn requests_hyper_cannot_read_and_overlong_targets_are_answered_as_json_with_a_request_id() {
    let app = spawn_app().await;
    let long_header = format!("GET /livez HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(70 * 1024));
    let many_headers = format!("GET /livez HTTP/1.1\r\nhost: x\r\n{}\r\n", "x-h: 1\r\n".repeat(101));
    let long_target =
        format!("GET {STATUS_GET_PATH}?external_id={} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(20 * 1024));
    let cases: [(&str, Vec<u8>, u16, &str); 5] = [
        (
            "a header without a colon",
            b"GET /livez HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n".to_vec(),
            400,
            "not valid HTTP/1.1",
        ),
        ("an unknown HTTP version", b"GET /livez HTTP/7.1\r\nhost: x\r\n\r\n".to_vec(), 400, "not valid HTTP/1.1"),
        ("a 70 KiB header", long_header.into_bytes(), 431, "headers are too large"),
        ("101 headers", many_headers.into_bytes(), 431, "headers are too large"),
        ("a 20 KiB target", long_target.into_bytes(), 414, "the request target is 20"),
    ];
    for (what, request, status, message) in cases {
        let answer = raw_request(app.addr, &request).await;
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        assert!(answer.body["message"].as_str().is_some_and(|m| m.contains(message)), "{what}: {answer:?}");
        assert_eq!(answer.header("content-type").as_deref(), Some("application/json"), "{what}");
        assert!(answer.header("x-request-id").is_some_and(|id| !id.is_empty()), "{what}: {answer:?}");
    }
    // The server still serves.
    assert_eq!(raw_request(app.addr, b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n").await.status, 200);
    app.shutdown().await;
}

#[tokio::test]
async fn a_compressed_body_is_refused_with_415_naming_its_encoding() {
    let app = spawn_app().await;
    let group = app.create_group("News", Channel::Email).await;
    let response = app
        .client
        .post(app.url(V2_PATH))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(by_external_ids(group, "subscribed", &["ada"]).to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["message"], "Content-Encoding \"gzip\" is not supported: send the JSON body unencoded");
    assert!(app.profile("ada").await.is_none(), "nothing was applied");
    app.shutdown().await;
}

#[tokio::test]
async fn a_query_escape_that_is_not_utf8_is_refused_naming_the_parameter() {
    let app = spawn_app().await;
    let group = app.create_group("News", Channel::Email).await;
    let (status, body) = status_and_json(
        app.get_query(STATUS_GET_PATH, &format!("subscription_group_id={group}&email=a%ff%40b.c")).await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["message"], "email: \"a%ff%40b.c\" is not valid UTF-8 once percent-decoded");
    // A valid escape of a non-ASCII character still reads.
    let (status, body) = status_and_json(
        app.get_query(STATUS_GET_PATH, &format!("subscription_group_id={group}&external_id=caf%C3%A9")).await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["status"].get("café").is_some(), "{body}");
    app.shutdown().await;
}

/// A client whose connections come from `source` (any address of 127.0.0.0/8 is loopback).
fn client_from(source: IpAddr) -> reqwest::Client {
    reqwest::Client::builder().no_proxy().local_address(source).build().unwrap()
}

#[tokio::test]
async fn wrong_keys_beyond_the_limit_get_429_from_that_address_only_until_the_window_ends() {
    let app = spawn_app_with(|s| {
        s.serving.failed_auth_limit = 3;
        s.serving.failed_auth_window = Duration::from_secs(2);
    })
    .await;
    let guesser = client_from("127.0.0.2".parse().unwrap());
    let other = client_from("127.0.0.3".parse().unwrap());
    let url = app.url(&format!("{STATUS_GET_PATH}?subscription_group_id=x&external_id=a"));
    let get = |client: &reqwest::Client, key: &str| client.get(&url).bearer_auth(key.to_string()).send();
    for attempt in 1..=3 {
        let response = get(&guesser, "wrong-key").await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let refused = get(&guesser, "wrong-key").await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "retry-after {retry_after}");
    let (_, body) = status_and_json(refused).await;
    assert!(body["message"].as_str().unwrap().starts_with("too many failed authentications from this address"));
    // The right key too: otherwise a right guess would still get through.
    assert_eq!(get(&guesser, &app.key).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    // Another address is not held back, and the probes need no key.
    assert_ne!(get(&other, &app.key).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(guesser.get(app.url("/livez")).send().await.unwrap().status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_ne!(get(&guesser, &app.key).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS, "after the window");
    app.shutdown().await;
}

#[test]
fn a_key_allowing_an_ipv4_network_admits_that_address_mapped_into_ipv6() {
    let (key, _) = ApiKey::generate(
        WorkspaceId::generate(),
        "office".into(),
        vec![Permission::SubscriptionStatusGet],
        vec!["127.0.0.0/8".parse().unwrap()],
        consentry::domain::time::Timestamp(0),
    );
    assert!(key.admits("127.0.0.1".parse().unwrap()));
    assert!(key.admits("::ffff:127.0.0.1".parse().unwrap()), "an IPv4 caller on an IPv6 socket");
    assert!(!key.admits("::ffff:10.0.0.1".parse().unwrap()));
    assert!(!key.admits("::1".parse().unwrap()));
}

#[tokio::test]
async fn a_server_on_an_ipv6_socket_admits_an_ipv4_caller_by_its_ipv4_allowlist() {
    // An IPv6 socket bound to the IPv4-mapped loopback: still loopback only, but callers
    // arrive as ::ffff:127.0.0.1, as they do on a dual-stack listener.
    let app = spawn_app_with(|s| s.listen = "[::ffff:127.0.0.1]:0".into()).await;
    let (_, secret) = app
        .catalog
        .create_key("default", vec![Permission::SubscriptionStatusGet], vec!["127.0.0.1/32".parse().unwrap()], "office")
        .await
        .expect("the key is created");
    let group = app.create_group("News", Channel::Email).await;
    let url =
        format!("http://127.0.0.1:{}{STATUS_GET_PATH}?subscription_group_id={group}&external_id=a", app.addr.port());
    let response = app.client.get(url).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text().await);
    app.shutdown().await;
}
