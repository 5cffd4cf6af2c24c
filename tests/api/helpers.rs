//! A real server per test: a fresh store, bound to 127.0.0.1:0, driven over real HTTP. Tests
//! read state through the endpoints and, where no endpoint shows it, the store's own API.
//!
//! The store is chosen by `CONSENTRY_TEST_STORE`: `embedded` (the default: a temporary
//! directory per test) or `postgres` (a database created per test on
//! `CONSENTRY_TEST_DATABASE_URL`, by default `postgres://postgres@127.0.0.1:5432/test`, and
//! dropped with the test's app). The same tests run against both stores.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use consentry::catalog::{Catalog, DEFAULT_WORKSPACE};
use consentry::config::Settings;
use consentry::domain::catalog::Permission;
use consentry::domain::change::{ChangeRecord, Contact};
use consentry::domain::identifiers::{Email, ExternalId, Phone};
use consentry::domain::ids::{GroupId, WorkspaceId};
use consentry::domain::subscription::{Channel, SubscriptionState};
use consentry::domain::time::{Clock, Timestamp};
use consentry::server::Application;
use consentry::store::{ProfileImport, ProfileView, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The V2 endpoint under test.
pub const V2_PATH: &str = "/v2/subscription/status/set";
/// `POST /subscription/status/set` (V1).
pub const V1_PATH: &str = "/subscription/status/set";
/// `GET /subscription/status/get`.
pub const STATUS_GET_PATH: &str = "/subscription/status/get";
/// `GET /subscription/user/status`.
pub const USER_STATUS_PATH: &str = "/subscription/user/status";
/// `POST /users/track`.
pub const TRACK_PATH: &str = "/users/track";
/// `POST /users/delete`.
pub const DELETE_PATH: &str = "/users/delete";

/// A running server and handles on its catalog and store.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// The bound socket address.
    pub addr: SocketAddr,
    /// The secret of the `default` workspace's all-permission key.
    pub key: String,
    /// The `default` workspace.
    pub workspace: WorkspaceId,
    /// The server's catalog (creating a group here is seen by the server at once).
    pub catalog: Arc<Catalog>,
    /// The server's store.
    pub store: Store,
    /// The server's clock (the system's unless the test gave it a manual one).
    pub clock: Clock,
    /// A client that never goes through a proxy.
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// The test's own PostgreSQL database, dropped with the app (PostgreSQL runs only).
    _database: Option<TestDatabase>,
    // Declared last so that it is removed after everything that uses it.
    _dir: TempDir,
}

/// The data of a stopped test server, kept until this is dropped.
pub struct StoppedApp {
    _database: Option<TestDatabase>,
    _dir: TempDir,
}

impl StoppedApp {
    /// The data directory of the stopped app (its embedded store, when it ran on one).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Starts a server again on the stopped app's store, whose `default` workspace has `key`.
    pub async fn restart(self, key: String) -> TestApp {
        let mut settings = Settings::for_tests(self._dir.path());
        if let Some(database) = &self._database {
            settings.database = consentry::store::DatabaseLocation::Postgres(database.url.clone());
            settings.store.postgres.pool_size = 4;
        }
        spawn_app_on_existing(settings, key, self._database, self._dir).await
    }
}

/// The store the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStore {
    /// The embedded store, in a temporary directory.
    Embedded,
    /// PostgreSQL, a database per test.
    Postgres,
}

/// The store `CONSENTRY_TEST_STORE` asks for (`embedded` when unset).
pub fn test_store() -> TestStore {
    match std::env::var("CONSENTRY_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("embedded") => TestStore::Embedded,
        Ok("postgres") => TestStore::Postgres,
        Ok(other) => panic!("CONSENTRY_TEST_STORE={other:?}: use embedded or postgres"),
    }
}

/// Whether the suite runs against the embedded store. Tests of what only the embedded store
/// has (its data directory, lock file, admin socket) return early otherwise.
pub fn embedded_only() -> bool {
    test_store() == TestStore::Embedded
}

/// The server every test database is created on.
pub fn admin_database_url() -> String {
    std::env::var("CONSENTRY_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database of its own for one test: created fresh, dropped (with any connection still
/// open to it) when this is dropped.
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl TestDatabase {
    /// Creates a database with a random name. Panics with a clear message when PostgreSQL is
    /// not reachable: the PostgreSQL run was asked for explicitly, so it must not pass by
    /// skipping.
    pub fn create() -> TestDatabase {
        let name = format!("consentry_t_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_database_url();
        admin_statement(&admin, format!("CREATE DATABASE {name}")).unwrap_or_else(|e| {
            panic!(
                "CONSENTRY_TEST_STORE=postgres but the test database cannot be created on {}: {e} \
                 (set CONSENTRY_TEST_DATABASE_URL, or start PostgreSQL)",
                redacted(&admin)
            )
        });
        let url = with_database(&admin, &name);
        TestDatabase { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Best effort: a database left behind by a crashed run costs only disk space.
        let _ = admin_statement(&admin_database_url(), format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let mut parsed = reqwest::Url::parse(url).expect("a valid CONSENTRY_TEST_DATABASE_URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    let mut parsed = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(_) => return "(an invalid URL)".into(),
    };
    let _ = parsed.set_password(None);
    parsed.to_string()
}

/// Runs one statement on `url` from a thread of its own (a test may be inside a
/// current-thread runtime, where blocking on a future is not allowed).
pub fn admin_statement(url: &str, sql: String) -> Result<(), String> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.map_err(|e| {
                format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default())
            })?;
            let driver = tokio::spawn(connection);
            let result = client.batch_execute(&sql).await.map_err(|e| e.to_string());
            drop(client);
            let _ = driver.await;
            result
        })
    })
    .join()
    .map_err(|_| "the thread panicked".to_string())?
}

/// Settings for a fresh store of the kind the suite runs against, in `dir` or in a new
/// database (returned, to be kept alive as long as the server).
pub fn test_settings_on(store: TestStore, dir: &std::path::Path) -> (Settings, Option<TestDatabase>) {
    let mut settings = Settings::for_tests(dir);
    let database = match store {
        TestStore::Embedded => None,
        TestStore::Postgres => {
            let database = TestDatabase::create();
            settings.database = consentry::store::DatabaseLocation::Postgres(database.url.clone());
            // Tests run side by side on two cores: a few connections each is plenty.
            settings.store.postgres.pool_size = 4;
            Some(database)
        }
    };
    (settings, database)
}

/// Starts a server on a fresh store.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A manual clock at a fixed, recent time, for a test that moves time itself:
/// `spawn_app_with(|s| s.clock = clock.clone())`.
pub fn manual_clock() -> Clock {
    // 2026-01-01T00:00:00Z: after any time a store of the suite was written at.
    Clock::manual(Timestamp(1_767_225_600_000_000))
}

/// Starts a server on a fresh store, with the test settings changed by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(test_store(), configure).await
}

/// Starts a server on a fresh store of kind `store`, whatever the suite runs against.
pub async fn spawn_app_on(store: TestStore, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (mut settings, database) = test_settings_on(store, dir.path());
    configure(&mut settings);
    let app = Application::build(settings).await.expect("the server builds");
    let key = app.bootstrap_key().expect("an empty store creates a bootstrap key").1.clone();
    serve(app, key, database, dir)
}

/// Starts a server on the existing store of `settings` (a copy, say), whose `default`
/// workspace has the key `key`; `dir` and `database` are kept for as long as the app.
pub async fn spawn_app_on_existing(
    settings: Settings,
    key: String,
    database: Option<TestDatabase>,
    dir: TempDir,
) -> TestApp {
    let app = Application::build(settings).await.expect("the server builds");
    assert!(app.bootstrap_key().is_none(), "the store was empty: it got a bootstrap key");
    serve(app, key, database, dir)
}

/// Runs a built server until its `TestApp` is shut down.
fn serve(app: Application, key: String, database: Option<TestDatabase>, dir: TempDir) -> TestApp {
    let catalog = app.catalog();
    let store = app.store();
    let clock = app.clock();
    let addr = app.local_addr();
    let workspace = catalog
        .workspaces()
        .into_iter()
        .find(|w| w.name == DEFAULT_WORKSPACE)
        .expect("the default workspace exists")
        .id;
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        address: format!("http://{addr}"),
        addr,
        key,
        workspace,
        catalog,
        store,
        clock,
        client: client(),
        shutdown: Some(tx),
        server: Some(server),
        _database: database,
        _dir: dir,
    }
}

/// A reqwest client that ignores any proxy configured in the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("a reqwest client")
}

impl TestApp {
    /// Stops the server gracefully and waits until it has drained its writer. The returned
    /// guard keeps the stopped store's data (directory or database) for as long as the test
    /// holds it, for reading what the server left behind.
    pub async fn shutdown(mut self) -> StoppedApp {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task does not panic").expect("the server stops cleanly");
        }
        StoppedApp { _database: self._database.take(), _dir: self._dir }
    }

    /// The PostgreSQL URL of the app's database, when it runs on one.
    pub fn database_url(&self) -> Option<String> {
        self._database.as_ref().map(|d| d.url.clone())
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// POSTs `body` to the V2 endpoint with the default key.
    pub async fn post_v2(&self, body: &Value) -> reqwest::Response {
        self.post_v2_with_key(&self.key, body).await
    }

    /// POSTs `body` to the V2 endpoint with `key`.
    pub async fn post_v2_with_key(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.url(V2_PATH)).bearer_auth(key).json(body).send().await.expect("the request is sent")
    }

    /// POSTs raw bytes to `path`, with the given Content-Type and key (none when `None`).
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.expect("the request is sent")
    }

    /// Creates an active group in the `default` workspace.
    pub async fn create_group(&self, name: &str, channel: Channel) -> GroupId {
        self.catalog.create_group(DEFAULT_WORKSPACE, name, channel).await.expect("the group is created").id
    }

    /// Creates a workspace and a key in it with `permissions`; returns its id and the key.
    pub async fn create_workspace_with_key(&self, name: &str, permissions: &[Permission]) -> (WorkspaceId, String) {
        let workspace = self.catalog.create_workspace(name).await.expect("the workspace is created");
        let (_, secret) =
            self.catalog.create_key(name, permissions.to_vec(), Vec::new(), "test").await.expect("the key is created");
        (workspace.id, secret)
    }

    /// Creates profiles `(external id, email, phone)` in the `default` workspace.
    pub async fn import(&self, profiles: &[(&str, Option<&str>, Option<&str>)]) {
        self.import_into(self.workspace, profiles).await;
    }

    /// Creates profiles `(external id, email, phone)` in `workspace`.
    pub async fn import_into(&self, workspace: WorkspaceId, profiles: &[(&str, Option<&str>, Option<&str>)]) {
        let profiles = profiles
            .iter()
            .map(|&(external_id, email, phone)| ProfileImport {
                external_id: ExternalId::parse(external_id).expect("a valid external id"),
                email: email.map(|e| Email::parse(e).expect("a valid email")),
                phone: phone.map(|p| Phone::parse(p).expect("a valid phone")),
            })
            .collect();
        self.store.import_profiles(workspace, profiles).await.expect("the import succeeds");
    }

    /// The profile with this external id in the `default` workspace.
    pub async fn profile(&self, external_id: &str) -> Option<ProfileView> {
        self.store.inspect().profile_by_external_id(self.workspace, external_id).await.expect("the store reads")
    }

    /// The state of the profile with this external id in `group` (`None`: no profile, or
    /// `Unknown`).
    pub async fn state_of(&self, external_id: &str, group: GroupId) -> Option<SubscriptionState> {
        state_in(&self.store, self.workspace, external_id, group).await
    }

    /// The `default` workspace's change records, oldest first.
    pub async fn changes(&self) -> Vec<ChangeRecord> {
        self.store.inspect().change_records(self.workspace).await.expect("the store reads")
    }

    /// The orphaned identifier state of `contact` in `group`.
    pub async fn orphan_state(&self, contact: &Contact, group: GroupId) -> Option<SubscriptionState> {
        self.store
            .inspect()
            .orphan_states(self.workspace, contact)
            .await
            .expect("the store reads")
            .into_iter()
            .find(|s| s.group_id == group)
            .map(|s| s.state)
    }

    /// POSTs `body` as JSON to `path` with the default key.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post_json_with_key(path, Some(&self.key), body).await
    }

    /// POSTs `body` as JSON to `path` with `key` (no Authorization header when `None`).
    pub async fn post_json_with_key(&self, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.expect("the request is sent")
    }

    /// GETs `path?query` with the default key; the query goes on the wire exactly as written
    /// (a `+` stays a `+`, `[]` stays `[]`, `%5B%5D` stays encoded).
    pub async fn get_query(&self, path: &str, query: &str) -> reqwest::Response {
        self.get_query_with_key(path, query, Some(&self.key)).await
    }

    /// GETs `path?query` with `key` (no Authorization header when `None`), the query as written.
    pub async fn get_query_with_key(&self, path: &str, query: &str, key: Option<&str>) -> reqwest::Response {
        let url = reqwest::Url::parse(&format!("{}{}?{}", self.address, path, query)).expect("a valid URL");
        assert_eq!(url.query(), Some(query), "the client would re-encode this query; the test must write it encoded");
        let mut request = self.client.get(url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.expect("the request is sent")
    }

    /// Creates a key in the `default` workspace with `permissions`; returns its secret.
    pub async fn create_key(&self, permissions: &[Permission]) -> String {
        self.catalog.create_key(DEFAULT_WORKSPACE, permissions.to_vec(), Vec::new(), "limited").await.expect("a key").1
    }

    /// Archives a group.
    pub async fn archive_group(&self, group: GroupId) {
        self.catalog.archive_group(&group.to_string()).await.expect("the group is archived");
    }

    /// The profiles carrying `contact` in the `default` workspace.
    pub async fn carriers(&self, contact: &Contact) -> Vec<ProfileView> {
        self.store.inspect().profiles_by_contact(self.workspace, contact).await.expect("the store reads")
    }

    /// `GET /subscription/status/get?subscription_group_id=GROUP&rest`: status and body.
    pub async fn status_get(&self, group: GroupId, rest: &str) -> (StatusCode, Value) {
        status_and_json(self.get_query(STATUS_GET_PATH, &format!("subscription_group_id={group}&{rest}")).await).await
    }

    /// `GET /subscription/user/status?query`: status and body.
    pub async fn user_status(&self, query: &str) -> (StatusCode, Value) {
        status_and_json(self.get_query(USER_STATUS_PATH, query).await).await
    }

    /// `POST /users/track` with `{"attributes": attributes}`: status and body.
    pub async fn track(&self, attributes: Value) -> (StatusCode, Value) {
        status_and_json(self.post_json(TRACK_PATH, &json!({ "attributes": attributes })).await).await
    }

    /// `POST /users/delete` with `{"external_ids": ids}`: status and body.
    pub async fn delete_users(&self, ids: &[&str]) -> (StatusCode, Value) {
        status_and_json(self.post_json(DELETE_PATH, &json!({ "external_ids": ids })).await).await
    }

    /// Sets the `default` workspace's limit for `bucket`, as `workspaces set-limit` does.
    pub async fn set_limit(&self, bucket: consentry::domain::rate_limit::Bucket, requests: u64, window_seconds: u64) {
        self.catalog
            .set_rate_limit(DEFAULT_WORKSPACE, bucket, requests, Some(window_seconds))
            .await
            .expect("the limit is set");
    }
}

/// The state of the profile with this external id in `group`, read from `store`.
pub async fn state_in(
    store: &Store,
    workspace: WorkspaceId,
    external_id: &str,
    group: GroupId,
) -> Option<SubscriptionState> {
    store
        .inspect()
        .profile_by_external_id(workspace, external_id)
        .await
        .expect("the store reads")
        .and_then(|p| p.states.into_iter().find(|s| s.group_id == group))
        .map(|s| s.state)
}

/// An email as the store keys it.
pub fn email(raw: &str) -> Contact {
    Contact::Email(Email::parse(raw).expect("a valid email"))
}

/// A phone as the store keys it.
pub fn phone(raw: &str) -> Contact {
    Contact::Phone(Phone::parse(raw).expect("a valid phone"))
}

/// A V2 body of one entry: `field` (`external_ids`, `emails`, `phones`) set to `values`.
pub fn one_entry(group: GroupId, state: &str, field: &str, values: &[&str]) -> Value {
    json!({ "subscription_groups": [ { "subscription_group_id": group.to_string(), "subscription_state": state, field: values } ] })
}

/// A V2 body of one entry for external ids.
pub fn by_external_ids(group: GroupId, state: &str, ids: &[&str]) -> Value {
    one_entry(group, state, "external_ids", ids)
}

/// The status and JSON body of a response. Panics (with the text) if the body is not JSON.
pub async fn status_and_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("the body is read");
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("a {status} body that is not JSON ({e}): {text:?}"));
    (status, body)
}

/// Asserts the Braze success answer: 201 and exactly `{"message":"success"}`.
pub async fn assert_success(response: reqwest::Response) {
    let (status, body) = status_and_json(response).await;
    assert_eq!((status, body), (StatusCode::CREATED, json!({ "message": "success" })));
}

/// Asserts a 400 and returns its `message`.
pub async fn assert_bad_request(response: reqwest::Response) -> String {
    assert_error(response, StatusCode::BAD_REQUEST).await
}

/// Asserts an error status with a JSON body carrying a string `message`, and returns it.
pub async fn assert_error(response: reqwest::Response, expected: StatusCode) -> String {
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, expected, "unexpected status; body: {body}");
    body["message"].as_str().unwrap_or_else(|| panic!("the error body has no string message: {body}")).to_string()
}

/// The body of a successful status/get answer: `{"status": {identifier: status, ...}}`.
pub fn statuses(pairs: &[(&str, &str)]) -> Value {
    let status: serde_json::Map<String, Value> = pairs.iter().map(|&(k, v)| (k.to_string(), json!(v))).collect();
    json!({ "status": status, "message": "success" })
}

/// One group of a user/status answer.
pub fn group_json(id: GroupId, name: &str, channel: &str, status: &str) -> Value {
    json!({ "id": id.to_string(), "name": name, "channel": channel, "status": status })
}

/// A V1 body: `state` in `group` for `field` (`external_id`, `email`, `phone`) set to `values`
/// (a string or an array).
pub fn v1_body(group: GroupId, state: &str, field: &str, values: Value) -> Value {
    json!({ "subscription_group_id": group.to_string(), "subscription_state": state, field: values })
}

/// The `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset` headers of a
/// response, or `None` when it has none of them. Panics if only some are there or one is not a
/// number.
pub fn rate_limit_headers(response: &reqwest::Response) -> Option<(u64, u64, i64)> {
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().expect("a readable header").to_string());
    let (limit, remaining, reset) =
        (header("x-ratelimit-limit"), header("x-ratelimit-remaining"), header("x-ratelimit-reset"));
    match (limit, remaining, reset) {
        (None, None, None) => None,
        (Some(limit), Some(remaining), Some(reset)) => Some((
            limit.parse().expect("x-ratelimit-limit is a number"),
            remaining.parse().expect("x-ratelimit-remaining is a number"),
            reset.parse().expect("x-ratelimit-reset is a number"),
        )),
        partial => panic!("only some x-ratelimit headers: {partial:?}"),
    }
}

/// The current time in UTC epoch seconds, as `x-ratelimit-reset` counts it on a server on the
/// system clock.
pub fn now_secs() -> i64 {
    Clock::system().now().as_secs()
}

/// Runs `check` until it returns `Some`, every few milliseconds, and returns what it returned;
/// panics naming `what` when `timeout` passes first. For what happens in the background
/// (a catalog read again, a server that has stopped), never for what a test's clock decides.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Where a test that runs the real binary keeps its store: a temporary directory, or in the
/// PostgreSQL pass a database of its own. `path()` is what goes after `--database` (for
/// PostgreSQL, the URL, carried as a path so that the tests read the same for both stores).
pub struct StoreLocation {
    path: std::path::PathBuf,
    _database: Option<TestDatabase>,
    _dir: TempDir,
}

impl StoreLocation {
    /// A fresh, empty store location of the kind the suite runs against.
    pub fn new() -> StoreLocation {
        let dir = tempfile::tempdir().expect("a temporary directory");
        match test_store() {
            TestStore::Embedded => StoreLocation { path: dir.path().to_path_buf(), _database: None, _dir: dir },
            TestStore::Postgres => {
                let database = TestDatabase::create();
                StoreLocation { path: database.url.clone().into(), _database: Some(database), _dir: dir }
            }
        }
    }

    /// The `--database` argument.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}
