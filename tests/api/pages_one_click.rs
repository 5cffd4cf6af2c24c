//! RFC 8058 one-click unsubscribe and the unsubscribe page: the exact requests mailbox
//! providers send (both encodings), no change from GET, HEAD or OPTIONS (link scanners), the
//! headers of every page, the per-address limit, and no token in the log.

use std::path::Path;

use consentry::domain::email::GLOBAL;
use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::{Subscribed, Unsubscribed};
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_success, by_external_ids, email, spawn_app, spawn_app_with, TestApp};
use crate::pages_links::{get_page, sign, token_of};

/// What Gmail sends: a POST with the form body and nothing else of the person's (no cookie,
/// no referrer), from Google's own agent.
pub async fn gmail_one_click(app: &TestApp, url: &str) -> reqwest::Response {
    app.client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("user-agent", "Mozilla/5.0 (compatible; Google-Safety; +http://www.google.com/bot.html)")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("the request is sent")
}

/// The same request as `multipart/form-data`, as RFC 8058 allows and some providers send it.
async fn multipart_one_click(app: &TestApp, url: &str) -> reqwest::Response {
    let boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--{boundary}--\r\n"
    );
    app.client
        .post(url)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .expect("the request is sent")
}

/// Asserts RFC 8058's answer: 200, empty, no redirect, no cookie.
async fn assert_one_click_answer(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(LOCATION).is_none(), "no redirect");
    assert!(response.headers().get(SET_COOKIE).is_none(), "no cookie");
    assert_eq!(response.text().await.unwrap(), "", "an empty body");
}

#[tokio::test]
async fn gmails_form_urlencoded_one_click_unsubscribes_from_the_group_once() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let other = app.create_group("offers", Channel::Email).await;
    for group in [news, other] {
        assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["u1"])).await).await;
    }
    let link = sign(&app, json!({"external_id": "u1", "subscription_group_id": news.to_string()})).await;
    let before = app.changes().await.len();
    assert_one_click_answer(gmail_one_click(&app, link["unsubscribe_url"].as_str().unwrap()).await).await;
    assert_eq!(app.state_of("u1", news).await, Some(Unsubscribed));
    assert_eq!(app.state_of("u1", other).await, Some(Subscribed), "only the link's group");
    let changes = app.changes().await;
    assert_eq!(changes.len(), before + 1, "one change record");
    let record = changes.last().unwrap();
    assert_eq!(record.kind, consentry::domain::change::Source::OneClick);
    assert!(record.trace.api_key_id.is_none() && record.trace.request_id.is_some());
    let actor = record.actor.as_ref().expect("the person is recorded");
    assert_eq!(actor.ip, "127.0.0.1");
    assert!(actor.user_agent.contains("Google-Safety"), "{actor:?}");
    // Providers retry: the second request answers the same and records nothing.
    assert_one_click_answer(gmail_one_click(&app, link["unsubscribe_url"].as_str().unwrap()).await).await;
    assert_eq!(app.changes().await.len(), before + 1, "idempotent");
}

#[tokio::test]
async fn a_multipart_one_click_without_a_group_unsubscribes_an_email_from_all_email_by_its_global_state() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let texts = app.create_group("texts", Channel::Sms).await;
    app.import(&[("u1", Some("ada@example.com"), Some("+33612345678"))]).await;
    for group in [news, texts] {
        assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["u1"])).await).await;
    }
    let link = sign(&app, json!({"email": "ada@example.com"})).await;
    assert_one_click_answer(multipart_one_click(&app, link["unsubscribe_url"].as_str().unwrap()).await).await;
    assert_eq!(app.state_of("u1", GLOBAL).await, Some(Unsubscribed), "all email: the global state");
    assert_eq!(app.state_of("u1", news).await, Some(Subscribed), "group states are independent");
    assert_eq!(app.state_of("u1", texts).await, Some(Subscribed), "an email link leaves SMS alone");
    let record = app.changes().await.pop().unwrap();
    assert_eq!(record.group, consentry::domain::ledger::ChainGroup::Global);
    assert_eq!(record.kind, consentry::domain::change::Source::OneClick);
    assert!(record.actor.is_some());

    // An email nobody carries keeps its unsubscription as orphaned state.
    let orphan = sign(&app, json!({"email": "nobody@example.com"})).await;
    assert_one_click_answer(gmail_one_click(&app, orphan["unsubscribe_url"].as_str().unwrap()).await).await;
    assert_eq!(app.orphan_state(&email("nobody@example.com"), GLOBAL).await, Some(Unsubscribed));
}

#[tokio::test]
async fn a_link_scanner_following_every_get_head_and_options_changes_nothing() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u1"])).await).await;
    let link = sign(&app, json!({"external_id": "u1"})).await;
    let before = app.changes().await.len();
    for url in [link["unsubscribe_url"].as_str().unwrap(), link["preference_url"].as_str().unwrap()] {
        for _ in 0..3 {
            let get = app.client.get(url).send().await.unwrap();
            assert_eq!(get.status(), StatusCode::OK);
            let head = app.client.head(url).send().await.unwrap();
            assert_eq!(head.status(), StatusCode::OK);
            let options = app.client.request(reqwest::Method::OPTIONS, url).send().await.unwrap();
            assert!(!options.status().is_success(), "OPTIONS is not an action: {}", options.status());
        }
    }
    assert_eq!(app.state_of("u1", news).await, Some(Subscribed));
    assert_eq!(app.changes().await.len(), before, "no change record");

    let (_, page) = get_page(&app, link["unsubscribe_url"].as_str().unwrap()).await;
    assert_eq!(page.matches("<form").count(), 1, "{page}");
    assert!(page.contains(r#"<form method="post">"#), "{page}");
    assert_eq!(page.matches("<button").count(), 1, "one button");
    assert!(!page.contains("<script"), "no script");
}

#[tokio::test]
async fn the_pages_button_unsubscribes_and_says_so_with_a_way_to_the_preference_page() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u1"])).await).await;
    let link = sign(&app, json!({"external_id": "u1", "subscription_group_id": news.to_string()})).await;
    let url = link["unsubscribe_url"].as_str().unwrap();
    let (_, page) = get_page(&app, url).await;
    assert!(page.contains("news"), "the page names the group: {page}");
    for _ in 0..2 {
        let response = app
            .client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("confirm=unsubscribe")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let page = response.text().await.unwrap();
        assert!(page.contains("You are unsubscribed"), "{page}");
        assert!(page.contains(&format!("href=\"../preferences/{}\"", token_of(&link))), "{page}");
    }
    assert_eq!(app.state_of("u1", news).await, Some(Unsubscribed));
    let changes = app.changes().await;
    assert_eq!(changes.len(), 2, "the API's change and one from the page");
    assert_eq!(changes[1].kind, consentry::domain::change::Source::UnsubscribePage);

    // A POST that is neither one-click nor the button changes nothing.
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u1"])).await).await;
    for (content_type, body) in [
        ("application/x-www-form-urlencoded", "List-Unsubscribe=Yes"),
        ("text/plain", "List-Unsubscribe=One-Click"),
        ("application/x-www-form-urlencoded", ""),
    ] {
        let response = app.client.post(url).header("content-type", content_type).body(body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{content_type} {body}");
    }
    assert_eq!(app.state_of("u1", news).await, Some(Subscribed));
}

#[tokio::test]
async fn every_page_sends_the_security_headers_and_no_inline_script() {
    let app = spawn_app().await;
    let link = sign(&app, json!({"email": "ada@example.com"})).await;
    let urls = [
        link["unsubscribe_url"].as_str().unwrap().to_string(),
        link["preference_url"].as_str().unwrap().to_string(),
        app.url("/unsubscribe/not-a-token"),
        app.url("/pages/style.css"),
    ];
    for url in &urls {
        let response = app.client.get(url).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(headers["referrer-policy"], "no-referrer", "{url}");
        assert_eq!(headers["x-frame-options"], "DENY", "{url}");
        assert_eq!(headers[CACHE_CONTROL], "no-store", "{url}");
        let csp = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "{url}: {csp}");
        assert!(!csp.contains("script-src"), "no script source at all: {csp}");
    }
    let response = app
        .client
        .post(&urls[0])
        .body("List-Unsubscribe=One-Click")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
}

#[tokio::test]
async fn one_address_is_limited_on_the_public_pages() {
    let app = spawn_app_with(|s| s.public_rate_limit = 5).await;
    let link = sign(&app, json!({"email": "ada@example.com"})).await;
    let url = link["unsubscribe_url"].as_str().unwrap();
    for _ in 0..5 {
        assert_eq!(app.client.get(url).send().await.unwrap().status(), StatusCode::OK);
    }
    let refused = gmail_one_click(&app, url).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(app.changes().await.is_empty(), "the refused POST changed nothing");
    // The API is not the pages: its own budget is untouched.
    let (status, _) = app.status_get(app.create_group("g", Channel::Email).await, "external_id=u1").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_link_token_reaches_the_log() {
    let (database, _keep, _dir) = crate::logs::fresh_database();
    let server = crate::logs::start(Path::new(&database), "debug", &["--log-format", "json"]);
    let token = crate::admin_cli::ok(
        Path::new(&database),
        &[
            "links",
            "sign",
            "--workspace",
            "default",
            "--email",
            "leakcheck@example.com",
            "--public-url",
            &server.url(""),
        ],
    );
    let url = token.lines().find_map(|l| l.strip_prefix("unsubscribe_url\t")).expect("a URL").to_string();
    let token = url.rsplit('/').next().unwrap().to_string();
    crate::admin_cli::settle().await;
    let client = crate::helpers::client();
    assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::OK);
    let one_click = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(one_click.status(), StatusCode::OK);
    let preferences = url.replace("/unsubscribe/", "/preferences/");
    assert_eq!(client.get(&preferences).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(client.get(format!("{url}x")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let (status, _, stderr) = server.stop();
    assert!(status.success());
    let payload = token.split('.').next().unwrap();
    assert!(!stderr.contains(payload) && !stderr.contains("leakcheck"), "the token is in the log:\n{stderr}");
    assert!(stderr.contains("/unsubscribe/{token}"), "the route template is logged:\n{stderr}");
}
