//! Several `consentry serve` processes on one PostgreSQL database, as a user who outgrew one
//! machine runs them: concurrent, conflicting updates of the same profiles through all of them
//! must all be acknowledged, each change recorded exactly once, and every profile's history in
//! each group one unbroken chain ending at its stored state.
//!
//! Runs on PostgreSQL whatever `CONSENTRY_TEST_STORE` says (one embedded store cannot be shared
//! by several processes); PostgreSQL on 127.0.0.1:5432 is part of the machine, so an
//! unreachable one fails the test.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use consentry::catalog::{Catalog, DEFAULT_WORKSPACE};
use consentry::domain::change::{ChangeRecord, Subject};
use consentry::domain::ids::GroupId;
use consentry::domain::subscription::SubscriptionState;
use consentry::store::{DatabaseLocation, Store, StoreOptions};
use reqwest::StatusCode;

use crate::admin_cli::{ok, Server};
use crate::helpers::{client, state_in, TestDatabase, V2_PATH};

const NODES: usize = 3;
const PROFILES: [&str; 4] = ["p0", "p1", "p2", "p3"];
const REQUESTS_PER_NODE: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_one_database_keep_one_unbroken_history_under_conflicting_updates() {
    let database = TestDatabase::create();
    let url = Path::new(&database.url);

    // The first node bootstraps the default workspace; the rest start on a populated catalog.
    let mut first = Server::start(url);
    let group = ok(url, &["groups", "create", "--workspace", "default", "--name", "news", "--channel", "email"]);
    let group = group.trim().to_string();
    let key = ok(url, &["keys", "create", "--workspace", "default", "--permission", "subscription.status.set"]);
    let key = key.trim().to_string();
    ok(url, &["workspaces", "set-limit", "default", "set", "1000000", "--window-seconds", "60"]);
    let mut nodes = vec![];
    for _ in 1..NODES {
        nodes.push(Server::start(url));
    }
    // The first node learns of the new key and group by its periodic catalog read.
    let client = client();
    let endpoints: Vec<String> =
        std::iter::once(&first).chain(nodes.iter()).map(|n| format!("http://{}{V2_PATH}", n.addr)).collect();
    let warm_up = wait_until_accepted(&client, &endpoints[0], &key, &group).await;

    let mut tasks = Vec::new();
    for (node, endpoint) in endpoints.iter().enumerate() {
        for worker in 0..4 {
            let (client, endpoint, key, group) = (client.clone(), endpoint.clone(), key.clone(), group.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (node * 10 + worker + 1) as u64);
                let mut acknowledged = Vec::new();
                for _ in 0..REQUESTS_PER_NODE / 4 {
                    let state = if rng.next().is_multiple_of(2) { "subscribed" } else { "unsubscribed" };
                    let first = (rng.next() % PROFILES.len() as u64) as usize;
                    let ids = [PROFILES[first], PROFILES[(first + 1) % PROFILES.len()]];
                    let body = serde_json::json!({ "subscription_groups": [{
                        "subscription_group_id": group, "subscription_state": state, "external_ids": ids }] });
                    let response =
                        client.post(&endpoint).bearer_auth(&key).json(&body).send().await.expect("the request is sent");
                    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_string();
                    let status = response.status();
                    assert_eq!(status, StatusCode::CREATED, "{}", response.text().await.unwrap_or_default());
                    acknowledged.push(request_id);
                }
                acknowledged
            }));
        }
    }
    let mut acknowledged = HashSet::new();
    for task in tasks {
        acknowledged.extend(task.await.expect("a request task"));
    }
    assert_eq!(acknowledged.len(), NODES * REQUESTS_PER_NODE, "every request was acknowledged");
    acknowledged.insert(warm_up);

    for node in nodes.iter_mut().chain(std::iter::once(&mut first)) {
        let (status, _, err) = node.stop_with("TERM");
        assert!(status.success(), "a node did not stop cleanly: {err}");
    }

    let store = Store::open(&DatabaseLocation::Postgres(database.url.clone()), &StoreOptions::default())
        .expect("the database opens");
    let catalog = Catalog::load(store.clone()).expect("the catalog loads");
    let workspace =
        catalog.workspaces().into_iter().find(|w| w.name == DEFAULT_WORKSPACE).expect("the default workspace").id;
    let group = GroupId::parse(&group).expect("a group id");
    let changes = store.change_records(workspace).expect("the change records");
    let ids: HashSet<_> = changes.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), changes.len(), "no change record twice");
    for change in &changes {
        assert!(
            acknowledged.contains(&change.source.request_id.to_string()),
            "a change from an unacknowledged request: {change:?}"
        );
    }
    let by_profile: HashMap<_, _> = PROFILES
        .iter()
        .map(|id| (store.profile_by_external_id(workspace, id).unwrap().expect("the profile exists").id, *id))
        .collect();
    let mut chains: HashMap<_, Vec<&ChangeRecord>> = HashMap::new();
    for change in &changes {
        let Subject::Profile(profile) = change.subject else { panic!("only profiles were set: {change:?}") };
        if by_profile.contains_key(&profile) {
            chains.entry(profile).or_default().push(change);
        }
    }
    assert_eq!(chains.len(), PROFILES.len(), "every profile changed at least once");
    for (profile, chain) in chains.iter_mut() {
        // Commit order of one row is the order of its change times (see the PostgreSQL store's
        // write attempts); the id breaks ties within a microsecond.
        chain.sort_by_key(|c| (c.at, c.id));
        let name = by_profile[profile];
        assert_eq!(chain[0].old, None, "{name}'s history starts from Unknown");
        for pair in chain.windows(2) {
            assert_eq!(pair[1].old, Some(pair[0].new), "{name}'s history is broken: {pair:#?}");
            assert_ne!(pair[1].old, Some(pair[1].new), "a no-op was recorded: {:?}", pair[1]);
        }
        let stored: Option<SubscriptionState> = state_in(&store, workspace, name, group);
        assert_eq!(stored, Some(chain.last().unwrap().new), "{name}'s stored state ends its history");
    }
}

/// Retries one request (for another profile) until the node's catalog knows the key and the
/// group; returns the accepted request's id.
async fn wait_until_accepted(client: &reqwest::Client, endpoint: &str, key: &str, group: &str) -> String {
    let body = serde_json::json!({ "subscription_groups": [{
        "subscription_group_id": group, "subscription_state": "subscribed", "external_ids": ["warm-up"] }] });
    for _ in 0..100 {
        let response = client.post(endpoint).bearer_auth(key).json(&body).send().await.expect("the request is sent");
        if response.status() == StatusCode::CREATED {
            return response.headers()["x-request-id"].to_str().unwrap().to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the first node never accepted the key created after it started");
}

/// A small deterministic generator: the test needs varied, reproducible requests, not a crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
