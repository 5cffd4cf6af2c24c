//! Signed links: `POST /consent/links`, `consentry links sign`, link keys that rotate and
//! retire, tokens minted offline as docs/links.md says, and the one 404 page every bad token
//! gets (forged, altered, expired, retired, another workspace's).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use consentry::admin::{execute, AdminRequest};
use consentry::catalog::DEFAULT_WORKSPACE;
use consentry::domain::identifiers::Email;
use consentry::domain::links::{self, LinkClaims, LinkSubject};
use consentry::domain::subscription::Channel;
use consentry::domain::tenant::Permission;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{spawn_app, status_and_json, TestApp};

/// `POST /consent/links` with one link of `link`; the signed link it answers.
pub async fn sign(app: &TestApp, link: Value) -> Value {
    let (status, body) = status_and_json(app.post_json("/consent/links", &json!({ "links": [link] })).await).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["links"][0].clone()
}

/// The token in a signed link's unsubscribe URL.
pub fn token_of(link: &Value) -> String {
    link["unsubscribe_url"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

/// GETs `url`: status and body.
pub async fn get_page(app: &TestApp, url: &str) -> (StatusCode, String) {
    let response = app.client.get(url).send().await.expect("the request is sent");
    (response.status(), response.text().await.expect("a body"))
}

#[tokio::test]
async fn consent_links_answers_both_urls_and_the_two_email_headers() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let link = sign(&app, json!({"email": "ada@example.com", "subscription_group_id": group.to_string()})).await;
    let token = token_of(&link);
    assert_eq!(link["unsubscribe_url"], format!("{}/unsubscribe/{token}", app.address));
    assert_eq!(link["preference_url"], format!("{}/preferences/{token}", app.address));
    assert_eq!(link["list_unsubscribe"], format!("<{}/unsubscribe/{token}>", app.address));
    assert_eq!(link["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
    for url in [&link["unsubscribe_url"], &link["preference_url"]] {
        let (status, page) = get_page(&app, url.as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
    }
}

#[tokio::test]
async fn the_public_url_given_to_serve_is_the_base_of_every_link() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.public_url = Some(links::PublicUrl::parse("https://consent.example.com/p/").unwrap())
    })
    .await;
    let link = sign(&app, json!({"external_id": "u1"})).await;
    assert!(link["unsubscribe_url"].as_str().unwrap().starts_with("https://consent.example.com/p/unsubscribe/"));
    assert!(link["preference_url"].as_str().unwrap().starts_with("https://consent.example.com/p/preferences/"));
}

#[tokio::test]
async fn consent_links_needs_its_permission() {
    let app = spawn_app().await;
    let key = app.create_key(&[Permission::SubscriptionStatusSet]).await;
    let response = app.post_json_with_key("/consent/links", Some(&key), &json!({"links": [{"email": "a@b.co"}]})).await;
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["message"].as_str().unwrap().contains("consent.links.create"), "{body}");
}

#[tokio::test]
async fn bad_link_requests_name_the_field_and_the_value_and_sign_nothing() {
    let app = spawn_app().await;
    let sms = app.create_group("alerts", Channel::Sms).await;
    let cases = [
        (json!({"links": []}), "links: must hold 1 to 50 links, got 0"),
        (json!({"links": [{"email": "not-an-email"}]}), "links[0].email"),
        (
            json!({"links": [{"email": "a@b.co", "phone": "+33612345678"}]}),
            "needs exactly one of external_id, email, phone, got 2",
        ),
        (json!({"links": [{"email": "a@b.co", "subscription_group_id": sms.to_string()}]}), "is on the sms channel"),
        (
            json!({"links": [{"external_id": "u", "expires_at": "2001-01-01T00:00:00Z"}]}),
            "\"2001-01-01T00:00:00Z\" is not in the future",
        ),
        (
            json!({"links": [{"external_id": "u", "expires_at": "tomorrow"}]}),
            "links[0].expires_at: \"tomorrow\" is not an RFC 3339 time",
        ),
        (
            json!({"links": [{"external_id": "u", "subscription_group_id": "nope"}]}),
            "\"nope\" is not a subscription group of this workspace",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = status_and_json(app.post_json("/consent/links", &body).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(expected), "{body} answered {answer}, expected {expected:?}");
    }
    let too_many: Vec<Value> = (0..51).map(|i| json!({"external_id": format!("u{i}")})).collect();
    let (status, answer) = status_and_json(app.post_json("/consent/links", &json!({"links": too_many})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["message"].as_str().unwrap().contains("got 51"), "{answer}");
    assert!(app.catalog.workspace(app.workspace).unwrap().link_keys.is_empty(), "no request signed anything");
}

/// The body every bad token gets, checked once and compared with each.
async fn assert_invalid(app: &TestApp, token: &str, expected_page: &str) {
    for path in ["unsubscribe", "preferences"] {
        let url = app.url(&format!("/{path}/{token}"));
        let (status, page) = get_page(app, &url).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} {token}");
        assert_eq!(page, expected_page, "every bad token gets the very same page");
        let response = app
            .client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn forged_altered_expired_retired_and_foreign_tokens_get_the_same_404_and_change_nothing() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let link = sign(&app, json!({"external_id": "u1", "subscription_group_id": group.to_string()})).await;
    let token = token_of(&link);
    let (status, invalid_page) = get_page(&app, &app.url("/unsubscribe/garbage")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(invalid_page.contains("This link is no longer valid."), "{invalid_page}");
    let key = app.catalog.signing_key(app.workspace).await.unwrap();

    // Altered: one character of the payload changed, the MAC kept.
    let mut altered = token.clone().into_bytes();
    altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
    // Forged: a well-formed token with the right key id, signed with another secret.
    let claims = LinkClaims {
        workspace_id: app.workspace,
        key_id: key.id.clone(),
        subject: LinkSubject::Email(Email::parse("ada@example.com").unwrap()),
        group_id: None,
        expires_at: None,
    };
    let forged = links::sign(&claims, &[7u8; 32]);
    // Expired: signed with the real key, an expiry a second ago.
    let expired =
        links::sign(&LinkClaims { expires_at: Some(crate::helpers::now_secs() - 1), ..claims.clone() }, &key.secret);
    // Foreign: another workspace's key signing a token that names this workspace, and that
    // workspace's own token presented as is (it acts on its own workspace only).
    app.catalog.create_workspace("other").await.unwrap();
    let other_id = app.catalog.workspace_id("other").unwrap();
    let other_key = app.catalog.signing_key(other_id).await.unwrap();
    let foreign = links::sign(&LinkClaims { key_id: other_key.id.clone(), ..claims.clone() }, &other_key.secret);
    let truncated = &token[..token.len() - 2];
    for bad in [String::from_utf8(altered).unwrap(), forged, expired, foreign, truncated.to_string()] {
        assert_invalid(&app, &bad, &invalid_page).await;
    }
    assert!(app.changes().await.is_empty(), "no bad token changed anything");

    // The other workspace's genuine token works, on the other workspace only.
    let theirs =
        links::sign(&LinkClaims { workspace_id: other_id, key_id: other_key.id.clone(), ..claims }, &other_key.secret);
    let (status, _) = get_page(&app, &app.url(&format!("/preferences/{theirs}"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn old_link_keys_keep_working_after_rotation_until_retired() {
    let app = spawn_app().await;
    let old = token_of(&sign(&app, json!({"email": "ada@example.com"})).await);
    let rotated = execute(&app.catalog, &AdminRequest::WorkspacesRotateLinkKey { workspace: DEFAULT_WORKSPACE.into() })
        .await
        .unwrap();
    let (new_key_id, secret) = rotated.stdout.trim().split_once('\t').unwrap();
    assert_eq!(secret.len(), 64, "the secret is printed as 64 hex digits");
    let new = token_of(&sign(&app, json!({"email": "ada@example.com"})).await);
    assert_ne!(old, new);
    assert!(
        String::from_utf8(URL_SAFE_NO_PAD.decode(new.split('.').next().unwrap()).unwrap())
            .unwrap()
            .contains(new_key_id),
        "new links are signed with the new key"
    );
    for token in [&old, &new] {
        let (status, _) = get_page(&app, &app.url(&format!("/unsubscribe/{token}"))).await;
        assert_eq!(status, StatusCode::OK, "both keys verify before retirement");
    }
    let old_key_id = app.catalog.workspace(app.workspace).unwrap().link_keys[0].id.clone();
    execute(
        &app.catalog,
        &AdminRequest::WorkspacesRetireLinkKey { workspace: DEFAULT_WORKSPACE.into(), key_id: old_key_id.clone() },
    )
    .await
    .unwrap();
    let (status, page) = get_page(&app, &app.url(&format!("/unsubscribe/{old}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("This link is no longer valid."));
    let (status, _) = get_page(&app, &app.url(&format!("/unsubscribe/{new}"))).await;
    assert_eq!(status, StatusCode::OK, "the new key still verifies");
    let listed = execute(&app.catalog, &AdminRequest::WorkspacesLinkKeys { workspace: DEFAULT_WORKSPACE.into() })
        .await
        .unwrap()
        .stdout;
    assert!(!listed.contains(secret), "the list never shows a secret");
    let retired_row = listed.lines().find(|l| l.starts_with(&old_key_id)).unwrap();
    assert!(!retired_row.ends_with("\t-"), "the retired key shows when: {retired_row}");
    let unknown = execute(
        &app.catalog,
        &AdminRequest::WorkspacesRetireLinkKey { workspace: DEFAULT_WORKSPACE.into(), key_id: "nope".into() },
    )
    .await;
    assert!(unknown.unwrap_err().to_string().contains("no link key \"nope\""));
}

/// HMAC-SHA256 written from RFC 2104 here, independently of the server's, as a sender would.
fn sender_hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let inner = Sha256::new().chain_update(block.map(|b| b ^ 0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(block.map(|b| b ^ 0x5c)).chain_update(inner).finalize().into()
}

#[test]
fn the_servers_hmac_matches_rfc_4231_and_a_senders() {
    // RFC 4231, test case 2.
    let mac = links::hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assert_eq!(mac, sender_hmac(b"Jefe", b"what do ya want for nothing?"));
}

#[tokio::test]
async fn a_token_minted_offline_as_docs_links_md_says_unsubscribes() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let rotated = execute(&app.catalog, &AdminRequest::WorkspacesRotateLinkKey { workspace: DEFAULT_WORKSPACE.into() })
        .await
        .unwrap();
    let (key_id, secret_hex) = rotated.stdout.trim().split_once('\t').unwrap();
    let secret: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&secret_hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    // The sender's side: JSON, base64url without padding, MAC over "link\n" + payload.
    let payload =
        json!({"v": 1, "w": app.workspace.to_string(), "k": key_id, "x": "offline-1", "g": group.to_string()});
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    let mac = sender_hmac(&secret, format!("link\n{payload}").as_bytes());
    let token = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac));

    let response = app
        .client
        .post(app.url(&format!("/unsubscribe/{token}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.state_of("offline-1", group).await,
        Some(consentry::domain::subscription::SubscriptionState::Unsubscribed)
    );
}

#[tokio::test]
async fn links_sign_prints_links_that_work_and_refuses_bad_input() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let request = |identifier: &str, expires_at: Option<&str>| AdminRequest::LinksSign {
        workspace: DEFAULT_WORKSPACE.into(),
        kind: "email".into(),
        identifier: identifier.into(),
        group: Some(group.to_string()),
        expires_at: expires_at.map(String::from),
        public_url: app.address.clone(),
    };
    let out =
        execute(&app.catalog, &request("ada@example.com", Some("2999-01-01T00:00:00+02:00"))).await.unwrap().stdout;
    let url = out.lines().find_map(|l| l.strip_prefix("unsubscribe_url\t")).unwrap();
    assert!(out.contains(&format!("List-Unsubscribe: <{url}>")), "{out}");
    assert!(out.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), "{out}");
    let (status, _) = get_page(&app, url).await;
    assert_eq!(status, StatusCode::OK);
    let bad = execute(&app.catalog, &request("nope", None)).await.unwrap_err().to_string();
    assert!(bad.contains("nope"), "{bad}");
    let bad = execute(&app.catalog, &request("ada@example.com", Some("soon"))).await.unwrap_err().to_string();
    assert!(bad.contains("\"soon\" is not an RFC 3339 time"), "{bad}");
}

#[test]
fn rfc_3339_times_read_as_unix_seconds() {
    assert_eq!(links::parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(links::parse_rfc3339("2026-11-30T02:25:50.123456Z"), Some(1_796_005_550));
    assert_eq!(links::parse_rfc3339("2026-11-30T04:25:50+02:00"), Some(1_796_005_550));
    for bad in ["2026-02-30T00:00:00Z", "2026-11-30 02:25:50Z", "2026-11-30T02:25:50", "2026-13-01T00:00:00Z", ""] {
        assert_eq!(links::parse_rfc3339(bad), None, "{bad}");
    }
}
