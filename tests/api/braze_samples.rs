//! Braze's own sample requests (an extract of its public Postman collection, copied unchanged to
//! `fixtures/braze-postman-subscription-extract.json`; see `fixtures/PROVENANCE.md`), sent as
//! published with their placeholders replaced by real ids: the valid ones succeed, the broken
//! ones get a clear 400 as JSON.

use sha2::{Digest, Sha256};

use consentry::domain::ids::GroupId;
use consentry::domain::subscription::Channel;
use consentry::domain::subscription::SubscriptionState::{Subscribed, Unsubscribed};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_success, by_external_ids, email, group_json, one_entry, phone, spawn_app, status_and_json, TestApp, V2_PATH,
};

/// One sample request as the fixture keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) folder: String,
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<String>,
}

/// Braze's Postman extract, exactly as published.
pub(crate) const BRAZE_EXTRACT: &str = include_str!("fixtures/braze-postman-subscription-extract.json");

/// The extract's SHA-256, as `fixtures/PROVENANCE.md` records it.
const BRAZE_EXTRACT_SHA256: &str = "cf89df7bce28f1c02da58b86597c45ba49861991351bde91c191792a0fbc6486";

/// Every request of the extract, in its order.
pub(crate) fn fixture_samples() -> Vec<Sample> {
    let collection: Value = serde_json::from_str(BRAZE_EXTRACT).expect("the extract is JSON");
    collection["item"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            let request = &item["request"];
            // Postman writes a URL either as a string or as an object with a `raw` string.
            let url = &request["url"];
            Sample {
                name: item["name"].as_str().expect("a name").to_string(),
                folder: item["_folder"].as_str().expect("a folder").to_string(),
                method: request["method"].as_str().expect("a method").to_string(),
                url: url.as_str().or_else(|| url["raw"].as_str()).expect("a URL").to_string(),
                headers: request["header"]
                    .as_array()
                    .expect("headers")
                    .iter()
                    .map(|h| (h["key"].as_str().unwrap().to_string(), h["value"].as_str().unwrap().to_string()))
                    .collect(),
                body: request["body"]["raw"].as_str().map(str::to_string),
            }
        })
        .collect()
}

/// The sample with this method, path and folder.
fn sample(method: &str, path: &str, folder_word: &str) -> Sample {
    let found: Vec<Sample> = fixture_samples()
        .into_iter()
        .filter(|s| s.method == method && s.folder.contains(folder_word))
        .filter(|s| s.url.split('?').next().unwrap().ends_with(&format!("}}}}{path}")))
        .collect();
    assert_eq!(found.len(), 1, "{method} {path} in {folder_word}: {found:?}");
    found.into_iter().next().unwrap()
}

/// The world the samples run against: an email group, an SMS group, and profiles that the
/// samples' identifiers reach.
struct World {
    app: TestApp,
    email_group: GroupId,
    sms_group: GroupId,
}

/// The external id the samples' `{{external_identifier}}` and `{{external_id}}` stand for.
const USER: &str = "user-1";

async fn world() -> World {
    let app = spawn_app().await;
    let email_group = app.create_group("news", Channel::Email).await;
    let sms_group = app.create_group("sms", Channel::Sms).await;
    app.import(&[(USER, Some("example@braze.com"), Some("+11112223333"))]).await;
    app.import(&[("user-2", Some("example@braze.com"), None)]).await;
    app.import(&[("user-3", None, Some("+11112223333"))]).await;
    assert_success(app.post_v2(&by_external_ids(email_group, "subscribed", &[USER])).await).await;
    assert_success(app.post_v2(&by_external_ids(sms_group, "unsubscribed", &[USER])).await).await;
    World { app, email_group, sms_group }
}

impl World {
    fn group_for(&self, sample: &Sample) -> GroupId {
        if sample.folder.contains("SMS") {
            self.sms_group
        } else {
            self.email_group
        }
    }

    fn fill(&self, sample: &Sample, text: &str) -> String {
        text.replace("https://{{instance_url}}", &self.app.address)
            .replace("{{api_key}}", &self.app.key)
            .replace("{{subscription_group_id}}", &self.group_for(sample).to_string())
            .replace("{{external_identifier}}", USER)
            .replace("{{external_id}}", USER)
            .replace("\"subscription_group_identifier\"", &format!("\"{}\"", self.group_for(sample)))
    }

    /// Sends `sample` as published, placeholders filled, the query exactly as written.
    async fn send(&self, sample: &Sample) -> reqwest::Response {
        let url = self.fill(sample, &sample.url);
        assert!(!url.contains("{{"), "a placeholder is left: {url}");
        let parsed = reqwest::Url::parse(&url).expect("a URL");
        assert_eq!(parsed.query(), url.split_once('?').map(|(_, q)| q), "the query goes on the wire as written");
        let method = reqwest::Method::from_bytes(sample.method.as_bytes()).unwrap();
        let mut request = self.app.client.request(method, parsed);
        for (name, value) in &sample.headers {
            request = request.header(name.as_str(), self.fill(sample, value));
        }
        if let Some(body) = &sample.body {
            let body = self.fill(sample, body);
            assert!(!body.contains("{{"), "a placeholder is left: {body}");
            request = request.body(body);
        }
        request.send().await.expect("the request is sent")
    }
}

// ---------------------------------------------------------------------------------------------
// The fixture is Braze's

#[test]
fn the_braze_extract_is_the_published_one_byte_for_byte() {
    let digest: String = Sha256::digest(BRAZE_EXTRACT.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(digest, BRAZE_EXTRACT_SHA256, "fixtures/braze-postman-subscription-extract.json was changed");
    let samples = fixture_samples();
    assert_eq!(samples.len(), 9, "{samples:?}");
    assert!(samples.iter().all(|s| s.url.starts_with("https://{{instance_url}}/")), "{samples:?}");
}

// ---------------------------------------------------------------------------------------------
// Each sample

#[tokio::test]
async fn the_email_status_get_sample_answers_the_external_id_and_ignores_the_email() {
    let w = world().await;

    let (status, body) = status_and_json(w.send(&sample("GET", "/subscription/status/get", "Email")).await).await;

    assert_eq!((status, body), (StatusCode::OK, json!({ "status": { USER: "Subscribed" }, "message": "success" })));
    w.app.shutdown().await;
}

#[tokio::test]
async fn the_sms_status_get_sample_with_its_raw_plus_answers_the_external_id() {
    let w = world().await;

    let (status, body) = status_and_json(w.send(&sample("GET", "/subscription/status/get", "SMS")).await).await;

    assert_eq!((status, body), (StatusCode::OK, json!({ "status": { USER: "Unsubscribed" }, "message": "success" })));
    w.app.shutdown().await;
}

#[tokio::test]
async fn the_email_user_status_sample_lists_the_user_and_the_other_carrier_of_the_email() {
    let w = world().await;

    let (status, body) = status_and_json(w.send(&sample("GET", "/subscription/user/status", "Email")).await).await;

    let user_1 = json!({ "email": "example@braze.com", "phone": "+11112223333", "external_id": USER,
        "subscription_groups": [ group_json(w.email_group, "news", "email", "Subscribed"),
                                 group_json(w.sms_group, "sms", "sms", "Unsubscribed") ] });
    let user_2 = json!({ "email": "example@braze.com", "phone": null, "external_id": "user-2",
        "subscription_groups": [] });
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "users": [user_1, user_2], "total_count": 2, "message": "success" }))
    );
    w.app.shutdown().await;
}

#[tokio::test]
async fn the_sms_user_status_sample_pages_from_offset_1_over_the_matched_profiles() {
    let w = world().await;

    let (status, body) = status_and_json(w.send(&sample("GET", "/subscription/user/status", "SMS")).await).await;

    let user_3 = json!({ "email": null, "phone": "+11112223333", "external_id": "user-3", "subscription_groups": [] });
    assert_eq!((status, body), (StatusCode::OK, json!({ "users": [user_3], "total_count": 2, "message": "success" })));
    w.app.shutdown().await;
}

#[tokio::test]
async fn the_email_v1_sample_succeeds() {
    let w = world().await;

    assert_success(w.send(&sample("POST", "/subscription/status/set", "Email")).await).await;

    assert_eq!(w.app.state_of("external_identifier", w.email_group).await, Some(Unsubscribed));
    assert_eq!(w.app.orphan_state(&email("example1@email.com"), w.email_group).await, Some(Unsubscribed));
    assert_eq!(w.app.orphan_state(&email("example2@email.com"), w.email_group).await, Some(Unsubscribed));
    w.app.shutdown().await;
}

#[tokio::test]
async fn the_sms_v1_sample_succeeds() {
    let w = world().await;

    assert_success(w.send(&sample("POST", "/subscription/status/set", "SMS")).await).await;

    assert_eq!(w.app.state_of("external_identifier", w.sms_group).await, Some(Unsubscribed));
    assert_eq!(w.app.orphan_state(&phone("+12223334444"), w.sms_group).await, Some(Unsubscribed));
    assert_eq!(w.app.state_of("user-3", w.sms_group).await, Some(Unsubscribed), "a carrier of +11112223333");
    assert_eq!(w.app.state_of(USER, w.sms_group).await, Some(Unsubscribed));
    w.app.shutdown().await;
}

#[tokio::test]
async fn the_v2_samples_as_published_answer_a_clear_400_as_json() {
    let w = world().await;
    let before = w.app.changes().await;

    for folder in ["Email", "SMS"] {
        let response = w.send(&sample("POST", V2_PATH, folder)).await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{folder}: {body}");
        let message = body["message"].as_str().unwrap_or_else(|| panic!("{folder}: no message: {body}"));
        assert!(message.contains("JSON"), "{folder}: {message}");
    }

    assert_eq!(w.app.changes().await, before);
    w.app.shutdown().await;
}

#[tokio::test]
async fn the_v2_samples_with_their_braces_restored_succeed() {
    let w = world().await;

    for folder in ["Email", "SMS"] {
        let mut fixed = sample("POST", V2_PATH, folder);
        fixed.body = fixed.body.map(|b| format!("{{{b}}}"));
        assert_success(w.send(&fixed).await).await;
    }

    assert_eq!(w.app.orphan_state(&email("example2@email.com"), w.email_group).await, Some(Subscribed));
    assert_eq!(w.app.orphan_state(&phone("+15556667777"), w.sms_group).await, Some(Subscribed));
    w.app.shutdown().await;
}

#[tokio::test]
async fn the_track_users_sample_skips_its_object_without_external_id_and_ignores_events_and_purchases() {
    let w = world().await;
    let before = w.app.changes().await;

    let (status, body) = status_and_json(w.send(&sample("POST", "/users/track", "User Data")).await).await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"], "success", "{body}");
    assert_eq!(body["attributes_processed"], 0, "{body}");
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("an errors list: {body}"));
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["input_array"], "attributes", "{body}");
    assert_eq!(errors[0]["index"], 0, "{body}");
    assert!(errors[0]["type"].as_str().is_some_and(|t| t.contains("external_id")), "{body}");
    assert!(w.app.carriers(&email("test@braze.com")).await.is_empty());
    assert_eq!(w.app.changes().await, before);
    w.app.shutdown().await;
}

#[tokio::test]
async fn the_track_users_sample_with_an_external_id_creates_the_profile() {
    let w = world().await;
    let mut with_id = sample("POST", "/users/track", "User Data");
    with_id.body = with_id.body.map(|b| {
        b.replacen("\"email\": \"test@braze.com\",", "\"external_id\": \"tracked\", \"email\": \"test@braze.com\",", 1)
    });

    let (status, body) = status_and_json(w.send(&with_id).await).await;

    assert_eq!((status, body), (StatusCode::CREATED, json!({ "message": "success", "attributes_processed": 1 })));
    assert_eq!(w.app.profile("tracked").await.unwrap().email.as_deref(), Some("test@braze.com"));
    w.app.shutdown().await;
}

#[tokio::test]
async fn every_sample_answers_json_and_never_a_server_error() {
    let w = world().await;
    // The V2 email sample, braces restored, leaves orphaned state a later sample may read.
    assert_success(w.app.post_v2(&one_entry(w.email_group, "subscribed", "emails", &["example1@email.com"])).await)
        .await;

    for sample in fixture_samples() {
        let response = w.send(&sample).await;
        let (status, body) = status_and_json(response).await;
        assert!(
            status.is_success() || status == StatusCode::BAD_REQUEST,
            "{} ({}): {status} {body}",
            sample.name,
            sample.folder
        );
        assert!(body["message"].is_string(), "{} ({}): {body}", sample.name, sample.folder);
    }
    w.app.shutdown().await;
}
