//! What the real binary writes: JSON log lines with one access line per request and no
//! personal data or key at any level; plain text without colour codes when stderr is not a
//! terminal; and a data directory made private at start-up.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::admin_cli::{ok, settle};
use crate::helpers::{
    embedded_only, test_store, TestDatabase, TestStore, DELETE_PATH, STATUS_GET_PATH, TRACK_PATH, USER_STATUS_PATH,
    V1_PATH, V2_PATH,
};

/// A `consentry serve` child and what it wrote.
struct Running {
    child: Child,
    addr: SocketAddr,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

/// Starts `consentry --database DATABASE serve --listen 127.0.0.1:0 ARGS…` with `RUST_LOG`,
/// and waits for its address (read from its log line, text or JSON).
fn start(database: &Path, rust_log: &str, args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_consentry"))
        .env_remove("CONSENTRY_DATABASE_URL")
        .env_remove("CONSENTRY_LISTEN")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", rust_log)
        .arg("--database")
        .arg(database)
        .args(["serve", "--listen", "127.0.0.1:0"])
        // As admin_cli's servers: `settle` waits for a few of these refreshes.
        .args(["--catalog-refresh-interval-ms", &crate::admin_cli::CATALOG_REFRESH_MS.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let mut out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let (tx, rx) = mpsc::channel();
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if line.contains("consentry is listening") {
                let address = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|v| v["fields"]["address"].as_str().map(str::to_string))
                    .or_else(|| line.split("address=").nth(1)?.split_whitespace().next().map(str::to_string));
                if let Some(addr) = address.and_then(|a| a.parse::<SocketAddr>().ok()) {
                    let _ = tx.send(addr);
                }
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let Ok(addr) = rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("the server did not log its address: {}", stderr.join().unwrap())
    };
    Running { child, addr, stdout, stderr }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, then the exit status, stdout and stderr.
    #[allow(unsafe_code)] // std cannot send SIGTERM; `unsafe_code = "deny"` in Cargo.toml
    fn stop(mut self) -> (std::process::ExitStatus, String, String) {
        // SAFETY: kill sends a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        (status, self.stdout.join().unwrap(), self.stderr.join().unwrap())
    }
}

/// The test's store, as a `--database` argument, with what keeps it alive.
fn fresh_database() -> (String, Option<TestDatabase>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    match test_store() {
        TestStore::Embedded => (dir.path().join("data").to_str().unwrap().to_string(), None, dir),
        TestStore::Postgres => {
            let database = TestDatabase::create();
            (database.url.clone(), Some(database), dir)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identifier_or_key_reaches_the_log_at_debug_level_and_every_request_has_an_access_line() {
    let (database, _keep, _dir) = fresh_database();
    let server = start(Path::new(&database), "debug", &["--log-format", "json"]);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // The bootstrap key is printed once on stdout, which is read at the end; create a key of
    // our own to use meanwhile.
    let mut args = vec!["keys", "create", "--workspace", "default", "--name", "leak"];
    for permission in
        ["subscription.status.set", "subscription.status.get", "subscription.groups.get", "users.track", "users.delete"]
    {
        args.extend(["--permission", permission]);
    }
    let key = ok(Path::new(&database), &args);
    let key = key.lines().rev().find(|l| !l.trim().is_empty()).expect("a key").trim();
    let key = key.strip_prefix("API key:").unwrap_or(key).trim().to_string();
    let group = ok(
        Path::new(&database),
        &["groups", "create", "--workspace", "default", "--name", "news", "--channel", "email"],
    );
    let group = group.trim().to_string();
    let sms = ok(
        Path::new(&database),
        &["groups", "create", "--workspace", "default", "--name", "texts", "--channel", "sms"],
    );
    let sms = sms.trim().to_string();
    settle().await;

    let email = "leakcheck-7f3a@example.com";
    let phone = "+14155550173";
    let phone_digits = "4155550173";
    let external_id = "leakcheck-ext-91c2";
    let wrong_key = "leakcheck-wrong-key-5d1e";
    let token_path = "/leakcheck-token-path-0b7e";
    let post = |path: &str, body: Value| client.post(server.url(path)).bearer_auth(&key).json(&body).send();
    let sent = [
        post(
            V2_PATH,
            json!({ "subscription_groups": [{ "subscription_group_id": group, "subscription_state": "subscribed",
            "external_ids": [external_id], "emails": [email] }] }),
        )
        .await,
        post(
            V2_PATH,
            json!({ "subscription_groups": [{ "subscription_group_id": sms, "subscription_state": "subscribed",
            "phones": [phone] }] }),
        )
        .await,
        post(V1_PATH, json!({ "subscription_group_id": group, "subscription_state": "unsubscribed", "email": email }))
            .await,
        post(TRACK_PATH, json!({ "attributes": [{ "external_id": external_id, "email": email, "phone": phone }] }))
            .await,
        client
            .get(server.url(&format!(
                "{STATUS_GET_PATH}?subscription_group_id={group}&external_id={external_id}&email={email}"
            )))
            .bearer_auth(&key)
            .send()
            .await,
        client
            .get(
                server.url(&format!("{USER_STATUS_PATH}?external_id={external_id}&email={email}&phone=%2B14155550173")),
            )
            .bearer_auth(&key)
            .send()
            .await,
        post(
            V2_PATH,
            json!({ "subscription_groups": [{ "subscription_group_id": group, "subscription_state": "bogus",
            "emails": [email] }] }),
        )
        .await,
        post(DELETE_PATH, json!({ "external_ids": [external_id] })).await,
        client.post(server.url(V2_PATH)).bearer_auth(wrong_key).json(&json!({ "emails": [email] })).send().await,
        client.get(server.url(token_path)).bearer_auth(&key).send().await,
        client.get(server.url("/openapi.json")).send().await,
        client.get(server.url("/readyz")).send().await,
    ];
    let mut statuses = Vec::new();
    for response in sent {
        statuses.push(response.expect("the request is answered").status().as_u16());
    }
    assert_eq!(statuses, [201, 201, 201, 201, 200, 200, 400, 201, 401, 404, 200, 200]);

    let (status, stdout, stderr) = server.stop();
    assert!(status.success(), "the server exits 0 on SIGTERM: {stderr}");
    // stdout holds only the bootstrap banner, whose key is shown there on purpose.
    let stdout: String = stdout.lines().filter(|l| !l.trim().starts_with("API key:")).collect();
    for value in [email, phone, phone_digits, external_id, wrong_key, &key, "leakcheck"] {
        assert!(!stderr.contains(value), "{value:?} is in the log:\n{stderr}");
        assert!(!stdout.contains(value), "{value:?} is on stdout:\n{stdout}");
    }
    // With the email percent-encoded in a query string too.
    assert!(!stderr.contains("leakcheck-7f3a%40example.com"));

    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    let access: Vec<&Value> =
        lines.iter().filter(|l| l["target"] == "consentry::access" && l["fields"]["message"] == "request").collect();
    let routes: Vec<&str> = access.iter().filter_map(|l| l["fields"]["route"].as_str()).collect();
    assert!(routes.contains(&"/v2/subscription/status/set") && routes.contains(&"(no route)"), "{routes:?}");
    let v2 = access.iter().find(|l| l["fields"]["route"] == V2_PATH && l["fields"]["status"] == 201).unwrap();
    for field in ["method", "latency_ms", "request_id", "workspace", "key"] {
        assert!(!v2["fields"][field].is_null(), "the access line lacks {field}: {v2}");
    }
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("authentication failed"))
            && l["fields"]["client"] == "127.0.0.1"),
        "the wrong key is logged by address"
    );
}

#[test]
fn an_open_data_directory_is_made_private_and_text_logs_off_a_terminal_have_no_colour_codes() {
    if !embedded_only() {
        return; // the data directory of the embedded store
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = start(&data, "info", &[]);
    let (status, _, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in a log that is not a terminal:\n{stderr}");
    assert!(stderr.contains("the data directory was open to other users; it is now 0700"), "{stderr}");
    let mode = |path: &Path| std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut checked = 0;
    let mut pending = vec![data.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path) & 0o077, 0, "{} is open to others: {:o}", path.display(), mode(&path));
            if path.is_dir() {
                pending.push(path);
            }
            checked += 1;
        }
    }
    assert!(checked > 3, "the store wrote files");
}
