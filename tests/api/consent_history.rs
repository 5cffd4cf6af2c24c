//! `GET /consent/history`: one subject's records, oldest first, paged by an opaque cursor that
//! stays stable while writes go on; and its bad inputs.

use std::collections::HashSet;

use consentry::domain::catalog::Permission;
use consentry::domain::history::parse_rfc3339;
use consentry::domain::subscription::Channel;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const HISTORY: &str = "/consent/history";

/// `GET /consent/history?query`: status and body.
pub async fn history(app: &TestApp, query: &str) -> (StatusCode, Value) {
    status_and_json(app.get_query(HISTORY, query).await).await
}

/// Every record of a query, page by page with `limit`.
pub async fn all_pages(app: &TestApp, query: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = format!("{query}&limit={limit}");
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = history(app, &q).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let records = body["records"].as_array().expect("records").clone();
        assert!(records.len() <= limit);
        out.extend(records);
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return out,
        }
    }
}

fn ids(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["id"].as_str().expect("an id").to_string()).collect()
}

async fn set(
    app: &TestApp,
    group: consentry::domain::ids::GroupId,
    state: &str,
    field: &str,
    values: &[&str],
) -> String {
    let response = app.post_v2(&one_entry(group, state, field, values)).await;
    let request_id = response.headers()["x-request-id"].to_str().expect("a request id").to_string();
    assert_success(response).await;
    request_id
}

#[tokio::test]
async fn history_of_an_external_id_lists_its_records_oldest_first_with_every_field_and_linked_hashes() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let first = set(&app, group, "subscribed", "external_ids", &["user-1"]).await;
    let second = set(&app, group, "unsubscribed", "external_ids", &["user-1"]).await;

    let (status, body) = history(&app, "external_id=user-1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "success");
    assert_eq!(body["next_cursor"], Value::Null);
    let records = body["records"].as_array().expect("records");
    assert_eq!(records.len(), 2, "{body}");
    let mut keys: Vec<&str> = records[0].as_object().expect("an object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = [
        "id",
        "time",
        "subscription_group_id",
        "channel",
        "external_id",
        "email",
        "phone",
        "previous_state",
        "state",
        "source",
        "endpoint",
        "api_key_id",
        "request_id",
        "use_double_opt_in_logic",
        "actor",
        "hash",
        "previous_hash",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    let r0 = &records[0];
    assert_eq!(r0["subscription_group_id"], group.to_string());
    assert_eq!(r0["channel"], "email");
    assert_eq!((&r0["external_id"], &r0["email"], &r0["phone"]), (&json!("user-1"), &Value::Null, &Value::Null));
    assert_eq!((&r0["previous_state"], &r0["state"]), (&Value::Null, &json!("subscribed")));
    assert_eq!((&records[1]["previous_state"], &records[1]["state"]), (&json!("subscribed"), &json!("unsubscribed")));
    assert_eq!(r0["source"], "api");
    assert_eq!(r0["endpoint"], "/v2/subscription/status/set");
    assert_eq!(r0["request_id"], first);
    assert_eq!(records[1]["request_id"], second);
    assert_eq!(r0["actor"], Value::Null);
    assert_eq!(r0["use_double_opt_in_logic"], false);
    let time = r0["time"].as_str().expect("a time");
    assert!(time.ends_with('Z') && time.len() == "2025-01-31T12:00:00.123456Z".len(), "{time}");
    assert!(parse_rfc3339(time).expect("RFC 3339") <= parse_rfc3339(records[1]["time"].as_str().unwrap()).unwrap());
    assert_eq!(r0["previous_hash"], "0".repeat(64));
    let hash = r0["hash"].as_str().expect("a hash");
    assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(records[1]["previous_hash"], r0["hash"]);
}

#[tokio::test]
async fn a_subject_without_records_and_an_unknown_one_answer_an_empty_page() {
    let app = spawn_app().await;
    app.import(&[("quiet", Some("quiet@example.com"), None)]).await;
    for query in ["external_id=quiet", "external_id=nobody", "email=none%40example.com", "phone=%2B12025550123"] {
        let (status, body) = history(&app, query).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"message": "success", "records": [], "next_cursor": null})));
    }
}

#[tokio::test]
async fn an_external_id_inherits_the_orphaned_records_of_its_email_and_an_email_lists_every_carrier() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    set(&app, group, "subscribed", "emails", &["Shared@Example.com"]).await;
    let (status, _) = app.track(json!([{"external_id": "heir", "email": "shared@example.com"}])).await;
    assert_eq!(status, StatusCode::CREATED);
    app.import(&[("other", Some("shared@example.com"), None)]).await;
    set(&app, group, "unsubscribed", "external_ids", &["other"]).await;

    let (_, body) = history(&app, "external_id=heir").await;
    let records = body["records"].as_array().expect("records");
    assert_eq!(records.len(), 2, "{body}");
    assert_eq!((&records[0]["email"], &records[0]["external_id"]), (&json!("shared@example.com"), &Value::Null));
    assert_eq!((&records[1]["external_id"], &records[1]["state"]), (&json!("heir"), &json!("subscribed")));
    assert_eq!(records[1]["endpoint"], "/users/track");

    let (_, body) = history(&app, "email=SHARED%40example.com").await;
    let records = body["records"].as_array().expect("records");
    let who: Vec<(&Value, &Value)> = records.iter().map(|r| (&r["external_id"], &r["email"])).collect();
    assert_eq!(
        who,
        [(&Value::Null, &json!("shared@example.com")), (&json!("heir"), &Value::Null), (&json!("other"), &Value::Null)]
    );
}

#[tokio::test]
async fn group_and_time_filters_select_records_and_global_is_accepted() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let promo = app.create_group("promo", Channel::Email).await;
    for state in ["subscribed", "unsubscribed", "subscribed"] {
        set(&app, news, state, "external_ids", &["u"]).await;
        set(&app, promo, state, "external_ids", &["u"]).await;
    }
    let all = all_pages(&app, "external_id=u", 100).await;
    assert_eq!(all.len(), 6);

    let (_, body) = history(&app, &format!("external_id=u&subscription_group_id={promo}")).await;
    let records = body["records"].as_array().expect("records");
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r["subscription_group_id"] == promo.to_string()));
    let (_, body) =
        history(&app, &format!("external_id=u&subscription_group_id[]={promo}&subscription_group_id[]={news}")).await;
    assert_eq!(body["records"].as_array().expect("records").len(), 6);
    let (_, body) = history(&app, "external_id=u&subscription_group_id=global").await;
    assert_eq!(body["records"], json!([]));

    // since is inclusive, until exclusive, any offset on input.
    let t1 = parse_rfc3339(all[1]["time"].as_str().unwrap()).unwrap();
    let t4 = parse_rfc3339(all[4]["time"].as_str().unwrap()).unwrap();
    let in_paris = |t: consentry::domain::time::Timestamp| {
        let shifted = consentry::domain::time::Timestamp(t.0 + 3_600_000_000).to_rfc3339();
        format!("{}%2B01:00", shifted.trim_end_matches('Z'))
    };
    let (status, body) = history(&app, &format!("external_id=u&since={}&until={}", in_paris(t1), in_paris(t4))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected: Vec<&Value> =
        all.iter().filter(|r| (t1..t4).contains(&parse_rfc3339(r["time"].as_str().unwrap()).unwrap())).collect();
    assert!(!expected.is_empty());
    assert_eq!(body["records"].as_array().unwrap().iter().collect::<Vec<_>>(), expected);
}

#[tokio::test]
async fn pages_cover_every_record_exactly_once_and_the_last_page_has_no_cursor() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    for i in 0..23 {
        set(&app, group, if i % 2 == 0 { "subscribed" } else { "unsubscribed" }, "external_ids", &["pager"]).await;
    }
    let whole = all_pages(&app, "external_id=pager", 1000).await;
    assert_eq!(whole.len(), 23);
    for limit in [1, 5, 10, 23] {
        assert_eq!(ids(&all_pages(&app, "external_id=pager", limit).await), ids(&whole), "limit {limit}");
    }
    let (_, body) = history(&app, "external_id=pager").await;
    assert_eq!(body["records"].as_array().unwrap().len(), 23, "the default page is 100");
}

#[tokio::test]
async fn paging_while_a_writer_adds_records_shows_every_earlier_record_exactly_once() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    for i in 0..30 {
        set(&app, group, if i % 2 == 0 { "subscribed" } else { "unsubscribed" }, "external_ids", &["busy"]).await;
    }
    let before: HashSet<String> = ids(&all_pages(&app, "external_id=busy", 1000).await).into_iter().collect();
    assert_eq!(before.len(), 30);

    let (client, url, key) = (app.client.clone(), app.url(V2_PATH), app.key.clone());
    let writer = tokio::spawn(async move {
        for i in 0..40 {
            let state = if i % 2 == 0 { "subscribed" } else { "unsubscribed" };
            let body = by_external_ids(group, state, &["busy"]);
            let response = client.post(&url).bearer_auth(&key).json(&body).send().await.expect("sent");
            assert_eq!(response.status(), StatusCode::CREATED);
        }
    });
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = "external_id=busy&limit=4".to_string();
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = history(&app, &q).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        seen.extend(ids(body["records"].as_array().unwrap()));
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    writer.await.expect("the writer finishes");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a record appeared twice");
    for id in &before {
        assert!(unique.contains(id), "record {id} that existed before paging was missed");
    }
}

#[tokio::test]
async fn bad_queries_answer_400_naming_the_parameter_and_value() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    set(&app, group, "subscribed", "external_ids", &["u"]).await;
    let (_, body) = history(&app, "external_id=u&limit=1").await;
    let other_query_cursor = body["next_cursor"].as_str().map(str::to_string);
    assert!(other_query_cursor.is_none());
    set(&app, group, "unsubscribed", "external_ids", &["u"]).await;
    let (_, body) = history(&app, "external_id=u&limit=1").await;
    let cursor = body["next_cursor"].as_str().expect("a cursor").to_string();

    let cases: Vec<(String, &str)> = vec![
        ("".into(), "query: needs one of external_id, email or phone"),
        ("external_id=u&email=a%40b.co".into(), "email: cannot be asked together with external_id"),
        ("external_id=u&external_id=v".into(), "external_id: may be given only once"),
        ("email=not-an-email".into(), "email"),
        ("external_id=u&limit=0".into(), "limit: \"0\" is not a whole number from 1 to 1000"),
        ("external_id=u&limit=1001".into(), "limit: \"1001\""),
        ("external_id=u&since=yesterday".into(), "since: \"yesterday\" is not an RFC 3339 time"),
        ("external_id=u&until=2025-02-30T00:00:00Z".into(), "until: \"2025-02-30T00:00:00Z\" is not an RFC 3339 time"),
        ("external_id=u&since=2025-01-02T00:00:00Z&until=2025-01-01T00:00:00Z".into(), "until: "),
        (
            "external_id=u&subscription_group_id=nope".into(),
            "subscription_group_id: \"nope\" is not a subscription group",
        ),
        ("external_id=u&cursor=garbage".into(), "cursor: \"garbage\" is not a cursor"),
        (format!("external_id=v&cursor={cursor}"), "cursor: "),
        (format!("external_id=u&subscription_group_id={group}&cursor={cursor}"), "belongs to another query"),
    ];
    for (query, expected) in cases {
        let message = assert_bad_request(app.get_query(HISTORY, &query).await).await;
        assert!(message.starts_with(expected) || message.contains(expected), "{query}: {message}");
    }
    // The same cursor with the same query still works.
    let (status, body) = history(&app, &format!("external_id=u&limit=1&cursor={cursor}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["records"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn history_needs_the_consent_history_permission_and_counts_against_the_get_bucket() {
    let app = spawn_app().await;
    let key = app.create_key(&[Permission::SubscriptionStatusGet]).await;
    let response = app.get_query_with_key(HISTORY, "external_id=u", Some(&key)).await;
    let message = assert_error(response, StatusCode::FORBIDDEN).await;
    assert!(message.contains("consent.history.get"), "{message}");

    let key = app.create_key(&[Permission::ConsentHistoryGet]).await;
    let response = app.get_query_with_key(HISTORY, "external_id=u", Some(&key)).await;
    let (limit, _, _) = rate_limit_headers(&response).expect("rate-limit headers");
    assert_eq!(limit, consentry::domain::rate_limit::Bucket::Get.default_limit().requests());
    assert_eq!(response.status(), StatusCode::OK);
}
