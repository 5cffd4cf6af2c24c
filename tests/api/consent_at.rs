//! `at=<RFC 3339>` on the two status reads, answered from the ledger; and `GET /consent/proof`.

use consentry::domain::history::parse_rfc3339;
use consentry::domain::subscription::Channel;
use consentry::domain::time::Timestamp;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::consent_history::history;
use crate::helpers::*;

/// The times of a subject's records, oldest first.
async fn times(app: &TestApp, query: &str) -> Vec<Timestamp> {
    let (_, body) = history(app, query).await;
    body["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| parse_rfc3339(r["time"].as_str().unwrap()).unwrap())
        .collect()
}

/// A time as a query value: UTC, `Z`.
fn q(t: Timestamp) -> String {
    t.to_rfc3339()
}

fn minus_one(t: Timestamp) -> Timestamp {
    Timestamp(t.0 - 1)
}

#[tokio::test]
async fn status_get_at_answers_the_state_before_between_and_after_records_and_now_as_live() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["u"])).await).await;
    assert_success(app.post_v2(&by_external_ids(group, "unsubscribed", &["u"])).await).await;
    let t = times(&app, "external_id=u").await;
    assert_eq!(t.len(), 2);

    for (at, expected) in [
        (minus_one(t[0]), "Unknown"),
        (t[0], "Subscribed"),
        (minus_one(t[1]).max(t[0]), "Subscribed"),
        (t[1], "Unsubscribed"),
    ] {
        let (status, body) = app.status_get(group, &format!("external_id=u&at={}", q(at))).await;
        assert_eq!((status, body), (StatusCode::OK, statuses(&[("u", expected)])), "at {}", q(at));
    }
    let (_, live) = app.status_get(group, "external_id=u&external_id=nobody").await;
    let (_, now) = app.status_get(group, &format!("external_id=u&external_id=nobody&at={}", q(app.clock.now()))).await;
    assert_eq!(live, now);

    // Any offset: the instant of the first record, written in New York time.
    let ny = Timestamp(t[0].0 - 5 * 3_600_000_000).to_rfc3339();
    let at = format!("{}-05:00", ny.trim_end_matches('Z'));
    let (_, body) = app.status_get(group, &format!("external_id=u&at={at}")).await;
    assert_eq!(body, statuses(&[("u", "Subscribed")]));
}

#[tokio::test]
async fn a_deleted_profile_is_unknown_at_any_time() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&by_external_ids(group, "subscribed", &["gone"])).await).await;
    let t = times(&app, "external_id=gone").await;
    assert_eq!(app.delete_users(&["gone"]).await.0, StatusCode::CREATED);
    let (_, body) = app.status_get(group, &format!("external_id=gone&at={}", q(t[0]))).await;
    assert_eq!(body, statuses(&[("gone", "Unknown")]));
    let (_, body) = app.user_status(&format!("external_id=gone&at={}", q(t[0]))).await;
    assert_eq!(body, json!({"users": [], "total_count": 0, "message": "success"}));
}

#[tokio::test]
async fn at_follows_an_orphaned_email_into_the_profile_that_inherited_it() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(group, "subscribed", "emails", &["heir@example.com"])).await).await;
    let orphaned = times(&app, "email=heir%40example.com").await[0];
    // Past the microsecond of the orphaned record, so that inheritance happens strictly later.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let (status, _) = app.track(json!([{"external_id": "heir", "email": "heir@example.com"}])).await;
    assert_eq!(status, StatusCode::CREATED);
    let t = times(&app, "external_id=heir").await;
    assert_eq!(t.len(), 2, "the orphaned record and the inheritance");
    let inherited = t[1];
    assert!(inherited > orphaned);

    // Before inheritance the profile had no state; the email, carried by it now, answers from
    // its carrier: Unknown too, as the live read would have for a carrier without state.
    let (_, body) = app.status_get(group, &format!("external_id=heir&at={}", q(orphaned))).await;
    assert_eq!(body, statuses(&[("heir", "Unknown")]));
    let (_, body) = app.status_get(group, &format!("external_id=heir&at={}", q(inherited))).await;
    assert_eq!(body, statuses(&[("heir", "Subscribed")]));
    let (_, body) = app.status_get(group, &format!("email=heir%40example.com&at={}", q(inherited))).await;
    assert_eq!(body, statuses(&[("heir@example.com", "Subscribed")]));
}

#[tokio::test]
async fn an_orphaned_email_answers_its_state_at_the_time_asked() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(group, "subscribed", "emails", &["lone@example.com"])).await).await;
    assert_success(app.post_v2(&one_entry(group, "unsubscribed", "emails", &["lone@example.com"])).await).await;
    let t = times(&app, "email=lone%40example.com").await;
    let (_, body) = app.status_get(group, &format!("email=lone%40example.com&at={}", q(t[0]))).await;
    assert_eq!(body, statuses(&[("lone@example.com", "Subscribed")]));
    let (_, body) = app.status_get(group, &format!("email=lone%40example.com&at={}", q(minus_one(t[0])))).await;
    assert_eq!(body, statuses(&[("lone@example.com", "Unknown")]));
    let (_, body) = app.user_status(&format!("email=lone%40example.com&at={}", q(t[0]))).await;
    assert_eq!(body["users"][0]["subscription_groups"], json!([group_json(group, "news", "email", "Subscribed")]));
    let (_, live) = app.user_status("email=lone%40example.com").await;
    let (_, now) = app.user_status(&format!("email=lone%40example.com&at={}", q(app.clock.now()))).await;
    assert_eq!(live, now);
}

#[tokio::test]
async fn user_status_at_lists_the_groups_a_profile_had_then() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let promo = app.create_group("promo", Channel::Email).await;
    assert_success(app.post_v2(&by_external_ids(news, "subscribed", &["u"])).await).await;
    assert_success(app.post_v2(&by_external_ids(promo, "unsubscribed", &["u"])).await).await;
    let t = times(&app, "external_id=u").await;

    let groups_at = |body: &Value| body["users"][0]["subscription_groups"].clone();
    let (_, body) = app.user_status(&format!("external_id=u&at={}", q(minus_one(t[0])))).await;
    assert_eq!((body["total_count"].clone(), groups_at(&body)), (json!(1), json!([])));
    let (_, body) = app.user_status(&format!("external_id=u&at={}", q(t[0]))).await;
    assert_eq!(groups_at(&body), json!([group_json(news, "news", "email", "Subscribed")]));
    let (_, live) = app.user_status("external_id=u").await;
    let (_, now) = app.user_status(&format!("external_id=u&at={}", q(app.clock.now()))).await;
    assert_eq!(live, now);
}

#[tokio::test]
async fn a_bad_at_answers_400_naming_it() {
    let app = spawn_app().await;
    let group = app.create_group("news", Channel::Email).await;
    let message = assert_bad_request(
        app.get_query(STATUS_GET_PATH, &format!("subscription_group_id={group}&external_id=u&at=noon")).await,
    )
    .await;
    assert!(message.starts_with("at: \"noon\" is not an RFC 3339 time"), "{message}");
    let message =
        assert_bad_request(app.get_query(USER_STATUS_PATH, "external_id=u&at=2025-01-01T25:00:00Z").await).await;
    assert!(message.starts_with("at: \"2025-01-01T25:00:00Z\""), "{message}");
}

#[tokio::test]
async fn the_proof_lists_states_and_verified_chains_of_the_subject() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    let promo = app.create_group("promo", Channel::Email).await;
    assert_success(app.post_v2(&one_entry(news, "subscribed", "emails", &["p@example.com"])).await).await;
    let (status, _) = app.track(json!([{"external_id": "p", "email": "p@example.com"}])).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_success(app.post_v2(&by_external_ids(news, "unsubscribed", &["p"])).await).await;
    assert_success(app.post_v2(&by_external_ids(promo, "subscribed", &["p"])).await).await;

    let (status, body) = status_and_json(app.get_query("/consent/proof", "external_id=p").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "success");
    assert_eq!(body["subject"]["external_id"], "p");
    assert_eq!(body["subject"]["profiles"], json!([{"external_id": "p", "email": "p@example.com", "phone": null}]));
    assert!(parse_rfc3339(body["generated_at"].as_str().unwrap()).is_ok());
    let mut states: Vec<(String, String)> = body["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["subscription_group_id"].as_str().unwrap().into(), s["state"].as_str().unwrap().into()))
        .collect();
    states.sort();
    let mut expected =
        vec![(news.to_string(), "unsubscribed".to_string()), (promo.to_string(), "subscribed".to_string())];
    expected.sort();
    assert_eq!(states, expected);
    let chains = body["chains"].as_array().unwrap();
    // The orphaned email's chain in news, the profile's in news, the profile's in promo.
    assert_eq!(chains.len(), 3, "{body}");
    assert_eq!(chains[0]["email"], "p@example.com");
    assert_eq!(chains[1]["records"].as_array().unwrap().len(), 2);
    assert!(chains.iter().all(|c| c["verified"] == true));
    assert_eq!(body["verified"], true);
    for chain in chains {
        let records = chain["records"].as_array().unwrap();
        assert_eq!(records[0]["previous_hash"], "0".repeat(64));
        for pair in records.windows(2) {
            assert_eq!(pair[1]["previous_hash"], pair[0]["hash"]);
        }
    }

    let (status, body) = status_and_json(app.get_query("/consent/proof", "external_id=nobody").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&body["chains"], &body["states"], &body["verified"]), (&json!([]), &json!([]), &json!(true)));
    let message = assert_bad_request(app.get_query("/consent/proof", "external_id=a&phone=%2B12025550123").await).await;
    assert!(message.starts_with("phone: cannot be asked together with external_id"), "{message}");
}

#[tokio::test]
async fn a_record_missing_at_the_end_of_a_chain_fails_the_proof_against_the_stored_head() {
    let app = spawn_app().await;
    let news = app.create_group("news", Channel::Email).await;
    for state in ["subscribed", "unsubscribed", "subscribed"] {
        assert_success(app.post_v2(&by_external_ids(news, state, &["p"])).await).await;
    }
    let (_, body) = status_and_json(app.get_query("/consent/proof", "external_id=p").await).await;
    assert_eq!(body["verified"], true, "{body}");
    let last = app.changes().await.pop().expect("three records");
    assert_eq!(last.seq, 3);

    // The chain's last record removed directly in the store, as someone hiding a change would.
    let key = app.key.clone();
    let app = match app.database_url() {
        Some(url) => {
            admin_statement(&url, format!("DELETE FROM changes WHERE change_id = '{}'", last.id)).expect("deleted");
            app
        }
        None => {
            let stopped = app.shutdown().await;
            let db = fjall::Database::builder(stopped.dir().join("engine")).open().expect("the engine opens");
            let keyspace = |name| db.keyspace(name, fjall::KeyspaceCreateOptions::default).expect("opens");
            let (changes, by_profile) = (keyspace("changes"), keyspace("changes_by_profile"));
            let consentry::domain::change::Subject::Profile(profile) = last.subject else { unreachable!() };
            let mut batch = db.batch().durability(Some(fjall::PersistMode::SyncAll));
            batch.remove(&changes, consentry::bench_support::change_key(last.workspace_id, last.id));
            batch.remove(
                &by_profile,
                consentry::bench_support::change_by_profile_key(last.workspace_id, profile, last.id),
            );
            batch.commit().expect("removed");
            drop((changes, by_profile, db));
            stopped.restart(key).await
        }
    };
    let (status, body) = status_and_json(app.get_query("/consent/proof", "external_id=p").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let chain = &body["chains"][0];
    assert_eq!(chain["records"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(chain["verified"], false, "the two records left link, but the head says three: {body}");
    assert_eq!(body["verified"], false);
}

#[tokio::test]
async fn at_reads_of_an_email_a_profile_inherited_then_dropped_answer_as_the_live_read_did_then() {
    let clock = manual_clock();
    let app = spawn_app_with(|s| s.clock = clock.clone()).await;
    let group = app.create_group("news", Channel::Email).await;
    let start = clock.now();
    let at = |seconds: i64| Timestamp(start.0 + seconds * 1_000_000);
    let ten = std::time::Duration::from_secs(10);
    // x@ is subscribed while no profile carries it; u takes it (inheriting the state) ten
    // seconds later, and drops it for y@ ten seconds after that.
    assert_success(app.post_v2(&one_entry(group, "subscribed", "emails", &["x@example.com"])).await).await;
    clock.advance(ten);
    let (status, body) = app.track(json!([{ "external_id": "u", "email": "x@example.com" }])).await;
    assert!(status.is_success(), "{body}");
    assert_eq!(app.state_of("u", group).await, Some(consentry::domain::subscription::SubscriptionState::Subscribed));
    clock.advance(ten);
    let (status, body) = app.track(json!([{ "external_id": "u", "email": "y@example.com" }])).await;
    assert!(status.is_success(), "{body}");
    clock.advance(ten);

    // Nobody carries x@ now and it holds no state of its own: it went with u.
    let (_, live) = app.status_get(group, "email=x@example.com").await;
    assert_eq!(live, statuses(&[("x@example.com", "Unknown")]));
    let (_, live_users) = app.user_status("email=x@example.com").await;
    for t in [at(25), at(30)] {
        let (status, body) = app.status_get(group, &format!("email=x@example.com&at={}", q(t))).await;
        assert_eq!((status, &body), (StatusCode::OK, &live), "status/get at {}", q(t));
        let (status, body) = app.user_status(&format!("email=x@example.com&at={}", q(t))).await;
        assert_eq!((status, &body), (StatusCode::OK, &live_users), "user/status at {}", q(t));
    }
    let (_, before) = app.status_get(group, &format!("email=x@example.com&at={}", q(at(-1)))).await;
    assert_eq!(before, statuses(&[("x@example.com", "Unknown")]), "before its first record");

    // Set again while orphaned, x@ has a state of its own from then on, and its record says it
    // had none just before.
    assert_success(app.post_v2(&one_entry(group, "unsubscribed", "emails", &["x@example.com"])).await).await;
    let (_, now) = app.status_get(group, &format!("email=x@example.com&at={}", q(clock.now()))).await;
    assert_eq!(now, statuses(&[("x@example.com", "Unsubscribed")]));
    let (_, between) = app.status_get(group, &format!("email=x@example.com&at={}", q(at(25)))).await;
    assert_eq!(between, live, "still gone then");
}
