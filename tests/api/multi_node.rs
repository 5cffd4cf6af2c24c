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
use std::time::Duration;

use consentry::catalog::{Catalog, DEFAULT_WORKSPACE};
use consentry::domain::change::{ChangeRecord, Subject};
use consentry::domain::ids::GroupId;
use consentry::domain::ledger::ChainHash;
use consentry::domain::subscription::SubscriptionState;
use consentry::domain::time::Clock;
use consentry::store::{DatabaseLocation, Policy, Store, StoreOptions};
use reqwest::StatusCode;

use crate::admin_cli::{ok, Server};
use crate::helpers::{client, eventually, state_in, TestDatabase, V2_PATH};

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

    let store =
        Store::open(&DatabaseLocation::Postgres(database.url.clone()), &StoreOptions::default(), &Policy::default())
            .await
            .expect("the database opens");
    let catalog = Catalog::load(store.clone(), Clock::system()).await.expect("the catalog loads");
    let workspace =
        catalog.workspaces().into_iter().find(|w| w.name == DEFAULT_WORKSPACE).expect("the default workspace").id;
    let group = GroupId::parse(&group).expect("a group id");
    let changes = store.inspect().change_records(workspace).await.expect("the change records");
    let ids: HashSet<_> = changes.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), changes.len(), "no change record twice");
    for change in &changes {
        assert!(
            acknowledged.contains(&change.trace.request_id.unwrap().to_string()),
            "a change from an unacknowledged request: {change:?}"
        );
    }
    let mut by_profile = HashMap::new();
    for id in PROFILES {
        let profile = store.inspect().profile_by_external_id(workspace, id).await.unwrap().expect("the profile exists");
        by_profile.insert(profile.id, id);
    }
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
        let stored: Option<SubscriptionState> = state_in(&store, workspace, name, group).await;
        assert_eq!(stored, Some(chain.last().unwrap().new), "{name}'s stored state ends its history");
        // The hash chain the nodes sealed concurrently: numbered 1..n without a gap, each
        // record linked to the one before it, in the same order as the states.
        let seqs: Vec<u64> = chain.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (1..=chain.len() as u64).collect::<Vec<_>>(), "{name}'s chain is numbered without a gap");
        assert_eq!(chain[0].previous_hash, ChainHash::ZERO, "{name}'s chain starts from zeros");
        for pair in chain.windows(2) {
            assert_eq!(pair[1].previous_hash, pair[0].hash, "{name}'s chain is unlinked at seq {}", pair[1].seq);
        }
    }
    store.close().await;
    // `ledger verify` recomputes every hash: the chains the three nodes wrote hold.
    let verified = ok(url, &["ledger", "verify", "--workspace", "default"]);
    assert!(verified.starts_with("ok\t"), "{verified}");
}

/// Retries one request (for another profile) until the node's catalog knows the key and the
/// group; returns the accepted request's id.
async fn wait_until_accepted(client: &reqwest::Client, endpoint: &str, key: &str, group: &str) -> String {
    let body = serde_json::json!({ "subscription_groups": [{
        "subscription_group_id": group, "subscription_state": "subscribed", "external_ids": ["warm-up"] }] });
    eventually("the first node accepts the key created after it started", Duration::from_secs(10), || async {
        let response = client.post(endpoint).bearer_auth(key).json(&body).send().await.expect("the request is sent");
        (response.status() == StatusCode::CREATED)
            .then(|| response.headers()["x-request-id"].to_str().unwrap().to_string())
    })
    .await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_together_on_an_empty_database_create_one_default_workspace_and_one_key() {
    let database = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let builds = (0..NODES).map(|_| {
        let mut settings = consentry::config::Settings::for_tests(dir.path());
        settings.database = DatabaseLocation::Postgres(database.url.clone());
        settings.store.postgres.pool_size = 2;
        tokio::spawn(consentry::server::Application::build(settings))
    });
    let mut apps = Vec::new();
    for build in builds.collect::<Vec<_>>() {
        apps.push(build.await.unwrap().expect("every node starts"));
    }
    let keys: Vec<_> = apps.iter().filter_map(|app| app.bootstrap_key().cloned()).collect();
    assert_eq!(keys.len(), 1, "exactly one node creates and prints the bootstrap key");

    let store =
        Store::open(&DatabaseLocation::Postgres(database.url.clone()), &StoreOptions::default(), &Policy::default())
            .await
            .unwrap();
    let stored = store.load_catalog().await.unwrap();
    assert_eq!(stored.workspaces.len(), 1, "{:?}", stored.workspaces);
    assert_eq!(stored.api_keys.len(), 1, "{:?}", stored.api_keys);
    for app in &apps {
        // Every node, the ones that lost the race included, knows the one workspace at once, and
        // the winner's key after its next periodic read of the catalog (the winner may have
        // stored the workspace but not yet the key when the others read it).
        let workspaces = app.catalog().workspaces();
        assert_eq!(workspaces.iter().map(|w| w.id).collect::<Vec<_>>(), vec![stored.workspaces[0].id]);
        app.catalog().reload().await.unwrap();
        assert!(app.catalog().authenticate(&keys[0].1).is_some());
    }
}

/// Runs `consentry --database URL ARGS…` in `count` processes at once; returns how many
/// succeeded and the errors of the others.
fn run_together(url: &Path, count: usize, args: impl Fn(usize) -> Vec<String>) -> (usize, Vec<String>) {
    let children: Vec<_> = (0..count)
        .map(|i| {
            std::process::Command::new(env!("CARGO_BIN_EXE_consentry"))
                .env_remove("CONSENTRY_DATABASE_URL")
                .arg("--database")
                .arg(url)
                .args(args(i))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("the binary runs")
        })
        .collect();
    let mut succeeded = 0;
    let mut errors = Vec::new();
    for child in children {
        let output = child.wait_with_output().unwrap();
        if output.status.success() {
            succeeded += 1;
        } else {
            errors.push(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
    }
    (succeeded, errors)
}

#[test]
fn admin_commands_racing_on_one_database_never_create_two_workspaces_or_groups_with_one_name() {
    let database = TestDatabase::create();
    let url = Path::new(&database.url);
    let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();

    let (succeeded, errors) = run_together(url, 4, |_| strings(&["workspaces", "create", "acme"]));
    assert_eq!(succeeded, 1, "{errors:?}");
    for error in &errors {
        assert_eq!(error, "error: a workspace named \"acme\" already exists");
    }

    let group = ["groups", "create", "--workspace", "acme", "--name", "news", "--channel", "email"];
    let (succeeded, errors) = run_together(url, 4, |_| strings(&group));
    assert_eq!(succeeded, 1, "{errors:?}");
    for error in &errors {
        assert_eq!(error, "error: workspace \"acme\" already has a group named \"news\"");
    }

    // The per-workspace limit of active groups holds across processes too: 1 + 2 of 4.
    let (succeeded, errors) = run_together(url, 4, |i| {
        let name = format!("g{i}");
        let mut args = strings(&["--max-groups-per-workspace", "3", "groups", "create", "--workspace", "acme"]);
        args.extend(strings(&["--name", &name, "--channel", "sms"]));
        args
    });
    assert_eq!(succeeded, 2, "{errors:?}");
    for error in &errors {
        assert!(error.contains("already has 3 active groups, the most it may have"), "{error}");
    }
    // Four processes changing four buckets of one workspace at once: none undoes another's.
    let buckets = ["set", "get", "track", "delete"];
    let (succeeded, errors) = run_together(url, 4, |i| {
        let requests = (100 + i).to_string();
        strings(&["workspaces", "set-limit", "acme", buckets[i], &requests, "--window-seconds", "7"])
    });
    assert_eq!(succeeded, 4, "{errors:?}");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stored = runtime.block_on(async {
        let location = DatabaseLocation::Postgres(database.url.clone());
        let store = Store::open(&location, &StoreOptions::default(), &Policy::default()).await.unwrap();
        let stored = store.load_catalog().await.unwrap();
        store.close().await;
        stored
    });
    let acme: Vec<_> = stored.workspaces.iter().filter(|w| w.name == "acme").collect();
    assert_eq!(acme.len(), 1);
    assert_eq!(stored.groups.len(), 3, "{:?}", stored.groups);
    let limits: Vec<(String, u64)> =
        acme[0].rate_limits.iter().map(|(bucket, limit)| (format!("{bucket:?}"), limit.requests())).collect();
    assert_eq!(limits.len(), 4, "every bucket's change was kept: {limits:?}");
}
