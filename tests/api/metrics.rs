//! Prometheus metrics over real HTTP: the real binary with `--metrics-listen`, driven with
//! requests that succeed, fail authentication, hit the failed-authentication limit and a
//! workspace's rate limit, then scraped. A process of its own, because the metrics recorder is
//! global to a process: in the test binary every test's server would count into it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::admin_cli::{ok, settle};
use crate::helpers::{test_store, TestDatabase, TestStore, STATUS_GET_PATH, V2_PATH};
use crate::postgres_outage::Proxy;

/// A `consentry serve` child with its API and metrics addresses.
struct Running {
    child: Child,
    api: SocketAddr,
    metrics: SocketAddr,
    stderr: std::thread::JoinHandle<String>,
}

/// Starts `consentry --database DATABASE serve --listen 127.0.0.1:0 --metrics-listen
/// 127.0.0.1:0 ARGS…` and reads both addresses from its log.
fn start(database: &str, args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_consentry"))
        .env_remove("CONSENTRY_DATABASE_URL")
        .env_remove("CONSENTRY_LISTEN")
        .env_remove("CONSENTRY_METRICS_LISTEN")
        .env("RUST_LOG", "info")
        .args(["--database", database, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--catalog-refresh-interval-ms", &crate::admin_cli::CATALOG_REFRESH_MS.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        let mut lines = BufReader::new(err).lines();
        let address = |line: &str| line.split("address=").nth(1)?.split_whitespace().next()?.parse::<SocketAddr>().ok();
        let (mut api, mut metrics) = (None, None);
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if line.contains("serving Prometheus metrics") {
                metrics = address(&line);
            } else if line.contains("consentry is listening") {
                api = address(&line);
            }
            all.push_str(&line);
            all.push('\n');
            if let (Some(api), Some(metrics)) = (api, metrics) {
                let _ = tx.send((api, metrics));
                break;
            }
        }
        for line in lines.map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let Ok((api, metrics)) = rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("the server did not log both addresses: {}", stderr.join().unwrap())
    };
    Running { child, api, metrics, stderr }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// SIGTERM, then the exit status and stderr.
    #[allow(unsafe_code)] // std cannot send SIGTERM; `unsafe_code = "deny"` in Cargo.toml
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill sends a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        (status, self.stderr.join().unwrap())
    }
}

/// One scrape: every sample by metric name and labels, and the raw text.
struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
    text: String,
}

impl Scrape {
    async fn of(client: &reqwest::Client, server: &Running) -> Scrape {
        let response = client.get(format!("http://{}/metrics", server.metrics)).send().await.expect("a scrape");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        let text = response.text().await.unwrap();
        let samples = text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).map(parse_sample).collect();
        Scrape { samples, text }
    }

    /// The value of the one sample named `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples.iter().find(|(n, l, _)| n == name && *l == wanted).map(|(_, _, v)| *v)
    }

    /// Like [`Scrape::get`], failing the test when the sample is absent.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{}", self.text))
    }

    fn has_type(&self, name: &str, kind: &str) -> bool {
        self.text.lines().any(|l| l == format!("# TYPE {name} {kind}"))
    }
}

/// `name{a="x",b="y"} 1.5` (label values here never hold quotes or commas).
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
    let value = value.parse().unwrap_or_else(|_| panic!("not a value: {line}"));
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => {
            let labels = rest.trim_end_matches('}').split(',').filter(|p| !p.is_empty()).map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_string(), v.trim_matches('"').to_string())
            });
            (name, labels.collect())
        }
        None => (series, BTreeMap::new()),
    };
    (name.to_string(), labels, value)
}

const DURATION: &str = "consentry_http_request_duration_seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_method_and_status_and_the_refusals_and_store_commits_behind_them() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = (test_store() == TestStore::Postgres).then(TestDatabase::create);
    // On PostgreSQL the server reaches the database through a proxy, to cut it at the end.
    let proxy = match &postgres {
        Some(_) => Some(Proxy::start(crate::postgres_outage::socket_of(&crate::helpers::admin_database_url())).await),
        None => None,
    };
    let (database, served) = match (&postgres, &proxy) {
        (Some(db), Some(proxy)) => {
            let mut through_proxy = reqwest::Url::parse(&db.url).unwrap();
            through_proxy.set_port(Some(proxy.addr.port())).unwrap();
            (db.url.clone(), through_proxy.to_string())
        }
        _ => {
            let path = dir.path().join("data").to_str().unwrap().to_string();
            (path.clone(), path)
        }
    };
    let server = start(&served, &["--failed-auth-per-minute", "2"]);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // Wrong keys come from another loopback address, which the failed-authentication limit
    // then locks out, and not the client the rest of the test uses.
    let guesser = reqwest::Client::builder().no_proxy().local_address("127.0.0.2".parse().ok()).build().unwrap();
    let db = Path::new(&database);
    let key = ok(
        db,
        &[
            "keys",
            "create",
            "--workspace",
            "default",
            "--permission",
            "subscription.status.set",
            "--permission",
            "subscription.status.get",
        ],
    );
    let key = key.lines().rev().find(|l| !l.trim().is_empty()).expect("a key").trim();
    let key = key.strip_prefix("API key:").unwrap_or(key).trim().to_string();
    let group = ok(db, &["groups", "create", "--workspace", "default", "--name", "news", "--channel", "email"]);
    let group = group.trim().to_string();
    ok(db, &["workspaces", "set-limit", "default", "get", "1", "--window-seconds", "3600"]);
    settle().await;

    // Nothing is served on the API listener at /metrics, nor anything but /metrics here.
    assert_eq!(client.get(server.url("/metrics")).send().await.unwrap().status(), 404);
    let other = client.get(format!("http://{}/livez", server.metrics)).send().await.unwrap();
    assert_eq!(other.status(), 404);

    let before = Scrape::of(&client, &server).await;
    for id in ["ada", "grace"] {
        let body = json!({ "subscription_groups": [{ "subscription_group_id": group,
            "subscription_state": "subscribed", "external_ids": [id] }] });
        let response = client.post(server.url(V2_PATH)).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201);
    }
    let after = Scrape::of(&client, &server).await;

    let get = server.url(&format!("{STATUS_GET_PATH}?subscription_group_id={group}&external_id=ada"));
    let statuses = [
        client.get(&get).bearer_auth(&key).send().await.unwrap().status(),
        client.get(&get).bearer_auth(&key).send().await.unwrap().status(),
        client.get(server.url("/livez")).send().await.unwrap().status(),
        // A link token is a path: it must not become a label.
        client.get(server.url("/secret-link-token-4f2a")).send().await.unwrap().status(),
        client
            .request(reqwest::Method::from_bytes(b"BREW").unwrap(), server.url("/secret-link-token-4f2a"))
            .send()
            .await
            .unwrap()
            .status(),
        guesser.post(server.url(V2_PATH)).bearer_auth("wrong-key-1").json(&json!({})).send().await.unwrap().status(),
        guesser.post(server.url(V2_PATH)).bearer_auth("wrong-key-2").json(&json!({})).send().await.unwrap().status(),
        // After two wrong keys from its address within the minute, whatever it sends is refused.
        guesser.post(server.url(V2_PATH)).bearer_auth(&key).json(&json!({})).send().await.unwrap().status(),
    ];
    let statuses: Vec<u16> = statuses.iter().map(|s| s.as_u16()).collect();
    assert_eq!(statuses, [200, 429, 200, 404, 404, 401, 401, 429]);

    let scrape = Scrape::of(&client, &server).await;
    assert!(scrape.has_type(DURATION, "histogram"), "{}", scrape.text);
    let count = format!("{DURATION}_count");
    let requests = |method: &str, route: &str, status: &str| {
        scrape.value(&count, &[("method", method), ("route", route), ("status", status)])
    };
    assert_eq!(requests("POST", V2_PATH, "201"), 2.0);
    assert_eq!(requests("GET", STATUS_GET_PATH, "200"), 1.0);
    assert_eq!(requests("GET", STATUS_GET_PATH, "429"), 1.0);
    assert_eq!(requests("GET", "/livez", "200"), 1.0);
    // /metrics asked of the API listener, and the token.
    assert_eq!(requests("GET", "(no route)", "404"), 2.0);
    assert_eq!(requests("other", "(no route)", "404"), 1.0);
    assert_eq!(requests("POST", V2_PATH, "401"), 2.0);
    assert_eq!(requests("POST", V2_PATH, "429"), 1.0);
    let bucket_le_inf = [("method", "POST"), ("route", V2_PATH), ("status", "201"), ("le", "+Inf")];
    assert_eq!(scrape.value(&format!("{DURATION}_bucket"), &bucket_le_inf), 2.0);
    assert!(!scrape.text.contains("secret-link-token") && !scrape.text.contains("BREW"), "{}", scrape.text);
    assert_eq!(scrape.value("consentry_http_requests_in_flight", &[]), 0.0);
    // At least the scrape's own connection (a loaded machine may not have closed an earlier
    // one yet).
    let scrapers = scrape.value("consentry_http_connections_open", &[("listener", "metrics")]);
    assert!((1.0..=3.0).contains(&scrapers), "{scrapers} metrics connections open");
    assert_eq!(scrape.value("consentry_auth_failures_total", &[]), 2.0);
    assert_eq!(scrape.value("consentry_auth_failure_limit_refusals_total", &[]), 1.0);
    assert_eq!(scrape.value("consentry_rate_limit_refusals_total", &[("bucket", "get")]), 1.0);
    assert_eq!(scrape.value("consentry_rate_limit_refusals_total", &[("bucket", "set")]), 0.0);
    // The sweep runs once at start-up.
    assert_eq!(scrape.value("consentry_orphan_sweeps_total", &[("result", "ok")]), 1.0);
    assert_eq!(scrape.value("consentry_orphan_sweeps_total", &[("result", "error")]), 0.0);

    let commits = |s: &Scrape| s.value("consentry_store_commits_total", &[("result", "ok")]);
    // A histogram appears with its first sample: absent before means none.
    let commit_seconds = |s: &Scrape| s.get("consentry_store_commit_duration_seconds_count", &[]).unwrap_or(0.0);
    assert!(scrape.has_type("consentry_store_commit_duration_seconds", "histogram"));
    match test_store() {
        TestStore::Embedded => {
            // Two requests one after the other: two batches of one, each one commit.
            assert_eq!(commits(&after) - commits(&before), 2.0);
            assert_eq!(commit_seconds(&after) - commit_seconds(&before), 2.0);
            let batches =
                |s: &Scrape, part: &str| s.get(&format!("consentry_store_batch_requests_{part}"), &[]).unwrap_or(0.0);
            assert_eq!(batches(&after, "count") - batches(&before, "count"), 2.0);
            assert_eq!(batches(&after, "sum") - batches(&before, "sum"), 2.0);
            assert_eq!(scrape.value("consentry_store_write_queue_depth", &[]), 0.0);
            assert!(scrape.value("consentry_fjall_write_buffer_bytes", &[]) > 0.0);
            assert!(scrape.value("consentry_fjall_journals", &[]) >= 1.0);
            for gauge in
                ["consentry_fjall_sealed_memtables", "consentry_fjall_flushes_queued", "consentry_fjall_tables"]
            {
                scrape.value(gauge, &[]);
            }
            scrape.value("consentry_fjall_compactions_total", &[]);
            assert!(scrape.get("consentry_pg_pool_connections", &[("state", "idle")]).is_none());
        }
        TestStore::Postgres => {
            // Each set request is one transaction; the rate-limit counters and the catalog
            // commit too, so at least two.
            assert!(commits(&after) - commits(&before) >= 2.0);
            assert!(scrape.value("consentry_pg_pool_wait_seconds_count", &[]) >= 4.0);
            let idle = scrape.value("consentry_pg_pool_connections", &[("state", "idle")]);
            let busy = scrape.value("consentry_pg_pool_connections", &[("state", "busy")]);
            assert!(idle + busy >= 1.0, "{}", scrape.text);
            assert_eq!(scrape.value("consentry_pg_pool_waiters", &[]), 0.0);
            scrape.value("consentry_pg_transaction_retries_total", &[]);
            scrape.value("consentry_pg_serialization_failures_total", &[]);
            assert_eq!(scrape.value("consentry_pg_reconnects_total", &[]), 0.0);
            assert!(scrape.get("consentry_store_write_queue_depth", &[]).is_none());
            assert_eq!(scrape.value("consentry_store_unavailable_answers_total", &[]), 0.0);

            // The database goes away: a write is answered 503, and counted.
            proxy.as_ref().unwrap().fail();
            let body = json!({ "subscription_groups": [{ "subscription_group_id": group,
                "subscription_state": "unsubscribed", "external_ids": ["ada"] }] });
            let response = client.post(server.url(V2_PATH)).bearer_auth(&key).json(&body).send().await.unwrap();
            assert_eq!(response.status(), 503);
            let outage = Scrape::of(&client, &server).await;
            assert_eq!(outage.value("consentry_store_unavailable_answers_total", &[]), 1.0);
            assert_eq!(outage.value(&count, &[("method", "POST"), ("route", V2_PATH), ("status", "503")]), 1.0);
        }
    }

    let (status, stderr) = server.stop();
    assert!(status.success(), "the server exits 0 on SIGTERM: {stderr}");
}
