//! The real `consentry` binary: the admin commands on a store nobody holds, the same commands
//! through a running server's admin socket, and the server's start, SIGTERM and kill -9.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use consentry::catalog::Catalog;
use consentry::domain::subscription::SubscriptionState::{Subscribed, Unsubscribed};
use consentry::domain::time::Clock;
use consentry::store::{DatabaseLocation, Policy, Store, StoreOptions};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{assert_success, client, embedded_only, state_in, StoreLocation, V2_PATH};

const BIN: &str = env!("CARGO_BIN_EXE_consentry");

/// The binary with a clean environment: no configuration inherited from the machine running
/// the tests, logs at `info` without colours.
pub(crate) fn consentry() -> Command {
    let mut command = Command::new(BIN);
    for var in [
        "CONSENTRY_DATABASE_URL",
        "CONSENTRY_LISTEN",
        "CONSENTRY_DURABILITY",
        "CONSENTRY_MAX_BATCH",
        "CONSENTRY_CACHE_MB",
        "CONSENTRY_PG_POOL_SIZE",
        "CONSENTRY_PG_STATEMENT_TIMEOUT_MS",
    ] {
        command.env_remove(var);
    }
    command.env("RUST_LOG", "info").env("NO_COLOR", "1");
    command
}

/// Runs `consentry --database DIR ARGS…` to completion.
fn run(dir: &Path, args: &[&str]) -> Output {
    consentry().arg("--database").arg(dir).args(args).output().expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a command that must succeed and returns its stdout.
pub(crate) fn ok(dir: &Path, args: &[&str]) -> String {
    let output = run(dir, args);
    assert!(output.status.success(), "{args:?} failed: {}", stderr(&output));
    stdout(&output)
}

/// Runs a command that must fail; checks that it printed nothing on stdout and returns stderr.
pub(crate) fn fails(dir: &Path, args: &[&str]) -> String {
    let output = run(dir, args);
    assert!(!output.status.success(), "{args:?} succeeded: {}", stdout(&output));
    assert_eq!(stdout(&output), "", "{args:?} printed on stdout");
    stderr(&output)
}

/// The single line a `create` prints, parsed as a UUID.
pub(crate) fn only_uuid(out: &str) -> Uuid {
    assert!(out.ends_with('\n') && out.lines().count() == 1, "more than one line on stdout: {out:?}");
    Uuid::parse_str(out.trim_end()).unwrap_or_else(|_| panic!("stdout is not only a UUID: {out:?}"))
}

/// Rows of a `list` table (header first), split on tabs.
pub(crate) fn table(out: &str) -> Vec<Vec<String>> {
    out.lines().map(|line| line.split('\t').map(str::to_string).collect()).collect()
}

/// The row whose column `column` equals `value`.
pub(crate) fn row<'a>(rows: &'a [Vec<String>], column: &str, value: &str) -> &'a [String] {
    let index = rows[0].iter().position(|c| c == column).unwrap_or_else(|| panic!("no column {column}: {:?}", rows[0]));
    rows.iter().skip(1).find(|r| r[index] == value).unwrap_or_else(|| panic!("no row with {column}={value}: {rows:?}"))
}

pub(crate) fn cell<'a>(rows: &'a [Vec<String>], row: &'a [String], column: &str) -> &'a str {
    &row[rows[0].iter().position(|c| c == column).unwrap()]
}

// ---------------------------------------------------------------------------------------------
// Admin commands on a store that no server holds

#[test]
fn workspaces_create_prints_only_the_new_id_and_list_shows_it() {
    let dir = StoreLocation::new();

    let output = run(dir.path(), &["workspaces", "create", "acme"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let id = only_uuid(&stdout(&output));
    assert!(stderr(&output).contains("acme"), "a human message on stderr");

    let rows = table(&ok(dir.path(), &["workspaces", "list"]));
    assert_eq!(cell(&rows, row(&rows, "name", "acme"), "id"), id.to_string());
}

#[test]
fn keys_create_prints_only_the_key_and_list_never_shows_it() {
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);

    let out = ok(
        dir.path(),
        &[
            "keys",
            "create",
            "--workspace",
            "acme",
            "--permission",
            "subscription.status.set",
            "--permission",
            "users.track",
            "--name",
            "ci",
        ],
    );
    let secret = only_uuid(&out).to_string();

    let listed = ok(dir.path(), &["keys", "list", "--workspace", "acme"]);
    assert!(!listed.contains(&secret), "keys list shows a secret");
    let rows = table(&listed);
    let key = row(&rows, "name", "ci");
    assert_eq!(cell(&rows, key, "permissions"), "subscription.status.set,users.track");
    assert_eq!(cell(&rows, key, "allowed_ips"), "any");
    assert_eq!(cell(&rows, key, "revoked_at"), "-");
    Uuid::parse_str(cell(&rows, key, "id")).expect("the key id is a UUID");
}

#[test]
fn keys_create_records_the_ip_allowlist() {
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);

    ok(
        dir.path(),
        &[
            "keys",
            "create",
            "--workspace",
            "acme",
            "--permission",
            "subscription.status.set",
            "--allow-ip",
            "10.0.0.0/8",
            "--allow-ip",
            "192.0.2.7",
            "--name",
            "office",
        ],
    );

    let rows = table(&ok(dir.path(), &["keys", "list", "--workspace", "acme"]));
    assert_eq!(cell(&rows, row(&rows, "name", "office"), "allowed_ips"), "10.0.0.0/8,192.0.2.7/32");
}

#[test]
fn keys_revoke_marks_the_key_revoked() {
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);
    ok(
        dir.path(),
        &["keys", "create", "--workspace", "acme", "--permission", "subscription.status.set", "--name", "ci"],
    );
    let rows = table(&ok(dir.path(), &["keys", "list", "--workspace", "acme"]));
    let id = cell(&rows, row(&rows, "name", "ci"), "id").to_string();

    let output = run(dir.path(), &["keys", "revoke", &id]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "");

    let rows = table(&ok(dir.path(), &["keys", "list", "--workspace", "acme"]));
    assert_ne!(cell(&rows, row(&rows, "name", "ci"), "revoked_at"), "-");
}

#[test]
fn groups_create_prints_only_the_new_id_and_list_and_archive_work() {
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);

    let id = only_uuid(&ok(
        dir.path(),
        &["groups", "create", "--workspace", "acme", "--name", "news", "--channel", "email"],
    ));
    only_uuid(&ok(dir.path(), &["groups", "create", "--workspace", "acme", "--name", "texts", "--channel", "sms"]));
    only_uuid(&ok(dir.path(), &["groups", "create", "--workspace", "acme", "--name", "chat", "--channel", "whatsapp"]));

    let rows = table(&ok(dir.path(), &["groups", "list", "--workspace", "acme"]));
    assert_eq!(rows.len(), 4);
    let news = row(&rows, "id", &id.to_string());
    assert_eq!(
        (cell(&rows, news, "name"), cell(&rows, news, "channel"), cell(&rows, news, "status")),
        ("news", "email", "active")
    );
    assert_eq!(cell(&rows, row(&rows, "name", "texts"), "channel"), "sms");
    assert_eq!(cell(&rows, row(&rows, "name", "chat"), "channel"), "whatsapp");

    let output = run(dir.path(), &["groups", "archive", &id.to_string()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "");
    let rows = table(&ok(dir.path(), &["groups", "list", "--workspace", "acme"]));
    assert_eq!(cell(&rows, row(&rows, "id", &id.to_string()), "status"), "archived");
}

#[test]
fn an_unknown_workspace_is_refused_naming_it() {
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);

    for args in [
        &["keys", "create", "--workspace", "nope", "--permission", "subscription.status.set"][..],
        &["keys", "list", "--workspace", "nope"],
        &["groups", "create", "--workspace", "nope", "--name", "news", "--channel", "email"],
        &["groups", "list", "--workspace", "nope"],
    ] {
        let message = fails(dir.path(), args);
        assert!(message.contains("nope"), "{args:?}: {message}");
    }
}

#[test]
fn an_unknown_permission_is_refused_naming_it() {
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);

    let message =
        fails(dir.path(), &["keys", "create", "--workspace", "acme", "--permission", "subscription.status.sett"]);

    assert!(message.contains("subscription.status.sett"), "{message}");
    assert!(message.contains("subscription.status.set,") || message.contains("subscription.status.set "), "{message}");
}

#[test]
fn a_key_without_permissions_is_refused() {
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);

    let message = fails(dir.path(), &["keys", "create", "--workspace", "acme"]);

    assert!(message.contains("--permission"), "{message}");
}

#[test]
fn a_bad_cidr_is_refused_naming_it() {
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);

    for bad in ["10.0.0.0/33", "not-an-ip", "300.1.1.1"] {
        let message = fails(
            dir.path(),
            &["keys", "create", "--workspace", "acme", "--permission", "subscription.status.set", "--allow-ip", bad],
        );
        assert!(message.contains(bad), "{bad}: {message}");
    }
    let rows = table(&ok(dir.path(), &["keys", "list", "--workspace", "acme"]));
    assert_eq!(rows.len(), 1, "no key was created");
}

#[test]
fn a_duplicate_group_name_is_refused_naming_it() {
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);
    ok(dir.path(), &["groups", "create", "--workspace", "acme", "--name", "news", "--channel", "email"]);

    let message = fails(dir.path(), &["groups", "create", "--workspace", "acme", "--name", "news", "--channel", "sms"]);

    assert!(message.contains("news"), "{message}");
    assert_eq!(table(&ok(dir.path(), &["groups", "list", "--workspace", "acme"])).len(), 2);
}

#[test]
fn a_duplicate_workspace_name_is_refused_naming_it() {
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);

    let message = fails(dir.path(), &["workspaces", "create", "acme"]);

    assert!(message.contains("acme"), "{message}");
}

#[test]
fn a_bad_channel_is_refused_naming_it() {
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);

    let message = fails(dir.path(), &["groups", "create", "--workspace", "acme", "--name", "news", "--channel", "fax"]);

    assert!(message.contains("fax"), "{message}");
}

#[test]
fn revoking_or_archiving_an_unknown_id_is_refused_naming_it() {
    let dir = StoreLocation::new();
    ok(dir.path(), &["workspaces", "create", "acme"]);
    let unknown = Uuid::new_v4().to_string();

    for args in [["keys", "revoke", &unknown], ["groups", "archive", &unknown], ["keys", "revoke", "not-a-uuid"]] {
        let message = fails(dir.path(), &args);
        assert!(message.contains(args[2]), "{args:?}: {message}");
    }
}

#[test]
fn the_database_environment_variable_works_like_the_flag() {
    let dir = StoreLocation::new();

    let output =
        consentry().env("CONSENTRY_DATABASE_URL", dir.path()).args(["workspaces", "create", "acme"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let id = only_uuid(&stdout(&output));

    let rows = table(&ok(dir.path(), &["workspaces", "list"]));
    assert_eq!(cell(&rows, row(&rows, "name", "acme"), "id"), id.to_string());
}

#[test]
fn the_database_flag_beats_the_environment_variable() {
    let flag_dir = StoreLocation::new();
    let env_dir = StoreLocation::new();

    let output = consentry()
        .env("CONSENTRY_DATABASE_URL", env_dir.path())
        .arg("--database")
        .arg(flag_dir.path())
        .args(["workspaces", "create", "acme"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    assert_eq!(table(&ok(flag_dir.path(), &["workspaces", "list"])).len(), 2);
    assert_eq!(table(&ok(env_dir.path(), &["workspaces", "list"])).len(), 1);
}

#[test]
fn an_unreachable_postgres_database_fails_with_a_clear_message_without_the_password() {
    // Port 9 (discard) on loopback: nothing listens there, so the connection is refused at once.
    for url in ["postgres://consentry:hunter2@127.0.0.1:9/consentry", "postgresql://user:hunter2@127.0.0.1:9/db"] {
        let output = consentry().args(["--database", url, "workspaces", "list"]).output().unwrap();
        assert!(!output.status.success());
        let message = stderr(&output);
        assert!(message.contains("cannot connect to PostgreSQL at 127.0.0.1:9/"), "{url}: {message}");
        assert!(!message.contains("hunter2"), "{url}: the password leaked: {message}");
        assert!(!message.contains("panicked"), "{url}: {message}");

        let output = consentry().env("CONSENTRY_DATABASE_URL", url).args(["workspaces", "list"]).output().unwrap();
        assert!(!output.status.success());
        assert!(stderr(&output).contains("PostgreSQL"), "{url}: {}", stderr(&output));

        let output = consentry().args(["--database", url, "serve", "--listen", "127.0.0.1:0"]).output().unwrap();
        assert!(!output.status.success());
        let message = stderr(&output);
        assert!(message.contains("cannot connect to PostgreSQL at 127.0.0.1:9/"), "serve {url}: {message}");
        assert!(!message.contains("hunter2") && !message.contains("panicked"), "serve {url}: {message}");
    }
}

#[test]
fn an_unsupported_database_url_scheme_fails_naming_it() {
    let output = consentry().args(["--database", "mysql://x", "workspaces", "list"]).output().unwrap();

    assert!(!output.status.success());
    assert!(stderr(&output).contains("mysql"), "{}", stderr(&output));
}

// ---------------------------------------------------------------------------------------------
// A running server

/// A `consentry serve` child process, killed if the test fails.
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) addr: SocketAddr,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

impl Server {
    /// Starts `consentry --database DIR serve --listen 127.0.0.1:0` and waits until it
    /// logs its address.
    pub(crate) fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// [`Server::start`] with more `serve` options.
    pub(crate) fn start_with(dir: &Path, options: &[&str]) -> Server {
        Server::start_with_env(dir, options, &[])
    }

    /// [`Server::start_with`] with more environment variables.
    pub(crate) fn start_with_env(dir: &Path, options: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Server {
        let mut child = consentry()
            .envs(env.iter().copied())
            .arg("--database")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--catalog-refresh-interval-ms", &CATALOG_REFRESH_MS.to_string()])
            .args(options)
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
                if let Some(addr) = listening_address(&line) {
                    let _ = tx.send(addr);
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let mut server = Server {
            child: Some(child),
            addr: "0.0.0.0:0".parse().unwrap(),
            stdout: Some(stdout),
            stderr: Some(stderr),
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => server.addr = addr,
            Err(_) => {
                let (_, _, err) = server.stop_with("KILL");
                panic!("the server did not log its address; stderr:\n{err}");
            }
        }
        // The server logs its address before it installs its SIGTERM handler (`shutdown_signal`
        // in src/server.rs registers it when first polled, in a task axum spawns once serving
        // starts), so a SIGTERM sent at once can kill it with the default action. Waiting for
        // a first answer closes that window for the tests that are about something else.
        if !answers_http(server.addr) {
            let (_, _, err) = server.stop_with("KILL");
            panic!("the server logged its address but does not answer; stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}{V2_PATH}", self.addr)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `signal` and waits for the process to exit; returns its status, stdout and stderr.
    pub(crate) fn stop_with(&mut self, signal: &str) -> (ExitStatus, String, String) {
        // `kill` fails only when the process has already exited, which the wait below reports.
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status();
        self.exit_within(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("the server did not exit within 30 s of SIG{signal}"))
    }

    /// Waits up to `timeout` for the process to exit by itself; returns its status, stdout and
    /// stderr, or `None` (and kills it) if it is still running.
    pub(crate) fn exit_within(&mut self, timeout: Duration) -> Option<(ExitStatus, String, String)> {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let out = self.stdout.take().unwrap().join().unwrap();
        let err = self.stderr.take().unwrap().join().unwrap();
        Some((status, out, err))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether the server at `addr` answers an HTTP request within 10 s.
fn answers_http(addr: SocketAddr) -> bool {
    use std::io::Write;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let request = format!("GET /ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut answer = [0u8; 12];
            if stream.write_all(request.as_bytes()).is_ok()
                && stream.read_exact(&mut answer).is_ok()
                && answer.starts_with(b"HTTP/1.1 ")
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The address in the `consentry is listening address=…` log line, colours or not.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let plain = strip_ansi(line);
    if !plain.contains("consentry is listening") {
        return None;
    }
    let start = plain.find("address=")? + "address=".len();
    plain[start..].split_whitespace().next()?.parse().ok()
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The key in the `API key: …` line of the first start's stdout.
pub(crate) fn bootstrap_key(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|line| line.trim().strip_prefix("API key:").map(|k| k.trim().to_string()))
}

/// The store at a `--database` argument, as the binary reads it.
fn location(path: &Path) -> DatabaseLocation {
    DatabaseLocation::parse(path.to_str().expect("a UTF-8 location")).expect("a valid location")
}

/// How often the servers these tests start read the catalog again (PostgreSQL only).
pub(crate) const CATALOG_REFRESH_MS: u64 = 50;

/// Waits until a running server has taken in an admin command run beside it. On the embedded
/// store the command went through the server's admin socket and took effect at once; on
/// PostgreSQL it went to the database, which the server reads again every
/// [`CATALOG_REFRESH_MS`]: five of those, for a loaded machine. Real time, in another process:
/// no test clock can stand in for it, and the checks that follow must not be repeated (they
/// change state or spend a rate limit), so this waits rather than polls.
pub(crate) async fn settle() {
    if !embedded_only() {
        tokio::time::sleep(Duration::from_millis(CATALOG_REFRESH_MS * 5)).await;
    }
}

pub(crate) async fn post(
    client: &reqwest::Client,
    server: &Server,
    key: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    client.post(server.url()).bearer_auth(key).json(body).send().await.expect("the request is sent")
}

pub(crate) fn body(group: &str, state: &str, ids: &[&str]) -> serde_json::Value {
    json!({ "subscription_groups": [ { "subscription_group_id": group, "subscription_state": state, "external_ids": ids } ] })
}

/// The default workspace's bootstrap key, read by stopping the first start of a fresh store.
pub(crate) fn first_start_key(dir: &Path) -> String {
    let mut server = Server::start(dir);
    let (status, out, err) = server.stop_with("TERM");
    assert!(status.success(), "{err}");
    bootstrap_key(&out).unwrap_or_else(|| panic!("no API key on stdout: {out:?}"))
}

#[tokio::test]
async fn serve_prints_the_bootstrap_key_once_and_sigterm_exits_zero() {
    let dir = StoreLocation::new();

    let mut first = Server::start(dir.path());
    let (status, out, err) = first.stop_with("TERM");
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0; stderr:\n{err}");
    let key = bootstrap_key(&out).unwrap_or_else(|| panic!("no API key on stdout: {out:?}"));
    Uuid::parse_str(&key).expect("the key is a UUID");
    assert_eq!(out.matches(&key).count(), 1, "the key is printed once: {out:?}");
    assert!(!err.contains(&key), "the key never reaches the logs");

    let mut second = Server::start(dir.path());
    let group = only_uuid(&ok(
        dir.path(),
        &["groups", "create", "--workspace", "default", "--name", "news", "--channel", "email"],
    ));
    settle().await;
    assert_success(post(&client(), &second, &key, &body(&group.to_string(), "subscribed", &["u"])).await).await;
    let (status, out, err) = second.stop_with("TERM");
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!out.contains("API key"), "a later start prints no key: {out:?}");
}

#[tokio::test]
async fn admin_commands_run_through_a_running_server_and_take_effect_at_once() {
    let dir = StoreLocation::new();
    let key = first_start_key(dir.path());
    let mut server = Server::start(dir.path());
    let http = client();

    let group = only_uuid(&ok(
        dir.path(),
        &["groups", "create", "--workspace", "default", "--name", "news", "--channel", "email"],
    ));
    let group = group.to_string();
    settle().await;
    assert_success(post(&http, &server, &key, &body(&group, "subscribed", &["u1"])).await).await;

    let created = ok(
        dir.path(),
        &["keys", "create", "--workspace", "default", "--permission", "subscription.status.set", "--name", "ci"],
    );
    let new_key = only_uuid(&created).to_string();
    settle().await;
    assert_success(post(&http, &server, &new_key, &body(&group, "subscribed", &["u2"])).await).await;

    let rows = table(&ok(dir.path(), &["keys", "list", "--workspace", "default"]));
    let id = cell(&rows, row(&rows, "name", "ci"), "id").to_string();
    ok(dir.path(), &["keys", "revoke", &id]);
    settle().await;
    let response = post(&http, &server, &new_key, &body(&group, "subscribed", &["u3"])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    ok(dir.path(), &["groups", "archive", &group]);
    settle().await;
    let response = post(&http, &server, &key, &body(&group, "unsubscribed", &["u1"])).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let message = fails(dir.path(), &["groups", "create", "--workspace", "nope", "--name", "x", "--channel", "email"]);
    assert!(message.contains("nope"), "errors come back through the socket: {message}");
    let rows = table(&ok(dir.path(), &["workspaces", "list"]));
    row(&rows, "name", "default");

    let (status, _, err) = server.stop_with("TERM");
    assert!(status.success(), "{err}");
    let rows = table(&ok(dir.path(), &["groups", "list", "--workspace", "default"]));
    assert_eq!(cell(&rows, row(&rows, "id", &group), "status"), "archived", "the server persisted the admin changes");
}

#[test]
fn a_second_server_on_the_same_store_refuses_to_start_with_a_clear_message() {
    if !embedded_only() {
        return; // the lock of a data directory: PostgreSQL is shared by any number of servers
    }
    let dir = StoreLocation::new();
    let mut first = Server::start(dir.path());

    let output = consentry()
        .arg("--database")
        .arg(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();

    assert!(!output.status.success());
    assert!(stderr(&output).contains("in use"), "{}", stderr(&output));
    let (status, _, err) = first.stop_with("TERM");
    assert!(status.success(), "the first server is unharmed: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_a_burst_of_acknowledged_writes_loses_none_of_them() {
    let dir = StoreLocation::new();
    let key = first_start_key(dir.path());
    let group = only_uuid(&ok(
        dir.path(),
        &["groups", "create", "--workspace", "default", "--name", "news", "--channel", "email"],
    ));
    let mut server = Server::start(dir.path());
    let http = client();

    let mut tasks = Vec::new();
    for task in 0..16usize {
        let (http, url, key) = (http.clone(), server.url(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..12usize {
                let ids: Vec<String> = (0..5).map(|k| format!("t{task}-n{n}-k{k}")).collect();
                let state = if (task + n) % 2 == 0 { "subscribed" } else { "unsubscribed" };
                let body = json!({ "subscription_groups": [ { "subscription_group_id": group.to_string(),
                    "subscription_state": state, "external_ids": ids } ] });
                let response = http.post(&url).bearer_auth(&key).json(&body).send().await.expect("sent");
                assert_eq!(response.status(), StatusCode::CREATED);
                acknowledged.push((ids, state));
            }
            acknowledged
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }
    let (status, _, _) = server.stop_with("KILL");
    assert!(!status.success(), "the server was killed");

    let store = Store::open(&location(dir.path()), &StoreOptions::default(), &Policy::default())
        .await
        .expect("the store opens after kill -9");
    let catalog = Catalog::load(store.clone(), Clock::system()).await.expect("the catalog loads");
    let workspace = catalog.workspaces().into_iter().find(|w| w.name == "default").unwrap().id;
    let group = consentry::domain::ids::GroupId::parse(&group.to_string()).unwrap();
    for (ids, state) in &acknowledged {
        let expected = if *state == "subscribed" { Subscribed } else { Unsubscribed };
        for id in ids {
            assert_eq!(
                state_in(&store, workspace, id, group).await,
                Some(expected),
                "{id} lost its acknowledged state"
            );
        }
    }
    assert_eq!(store.inspect().change_records(workspace).await.unwrap().len(), acknowledged.len() * 5);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_of_writes_exits_zero_and_keeps_every_acknowledged_write() {
    let dir = StoreLocation::new();
    let key = first_start_key(dir.path());
    let group = only_uuid(&ok(
        dir.path(),
        &["groups", "create", "--workspace", "default", "--name", "news", "--channel", "email"],
    ));
    let mut server = Server::start(dir.path());
    let http = client();

    let mut tasks = Vec::new();
    for task in 0..8usize {
        let (http, url, key) = (http.clone(), server.url(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0.. {
                let id = format!("t{task}-n{n}");
                let body = body(&group.to_string(), "subscribed", &[&id]);
                match http.post(&url).bearer_auth(&key).json(&body).send().await.map(|r| r.status()) {
                    Ok(StatusCode::CREATED) => acknowledged.push(id),
                    Ok(StatusCode::SERVICE_UNAVAILABLE) => {}
                    Ok(other) => panic!("{id}: unexpected {other}"),
                    Err(_) => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, err) = server.stop_with("TERM");
    assert_eq!(status.code(), Some(0), "{err}");
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }
    assert!(!acknowledged.is_empty(), "the burst got some writes in");

    let store = Store::open(&location(dir.path()), &StoreOptions::default(), &Policy::default()).await.unwrap();
    let workspace = Catalog::load(store.clone(), Clock::system())
        .await
        .unwrap()
        .workspaces()
        .into_iter()
        .find(|w| w.name == "default")
        .unwrap()
        .id;
    let group = consentry::domain::ids::GroupId::parse(&group.to_string()).unwrap();
    for id in &acknowledged {
        assert_eq!(state_in(&store, workspace, id, group).await, Some(Subscribed), "{id} lost its acknowledged state");
    }
    store.close().await;
}
