//! PostgreSQL failover with nothing lost: a pg_auto_failover formation (a monitor, a primary and
//! two standbys, `number-sync-standbys 1`, so that a commit is acknowledged only once a standby
//! has it) on this machine, two Consentry servers on its multi-host URL
//! (`target_session_attrs=read-write`) under write load, a planned failover
//! (`pg_autoctl perform failover`), then a kill -9 of the new primary (its postgres and the
//! pg_autoctl keeper that would restart it: the machine is gone, and the monitor promotes a
//! standby). Every acknowledged write and its change record must be on the final primary, the
//! ledger must verify, both servers must serve again by themselves, and the only failures a
//! client sees are 503s, whose window the test prints for each event.
//!
//! Runs in the suite's PostgreSQL pass. It needs Debian's `postgresql-15-auto-failover`
//! (`pg_autoctl`, which `.ci/run` installs); without it the test fails under `CI=true` and is
//! skipped, saying so, elsewhere. pg_autoctl refuses to run as root: as root the formation
//! runs as the `postgres` user. `PG_FAILOVER_TIMELINE=1` prints every request of each event
//! (sent and answered, in seconds after it began, and the status).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consentry::catalog::DEFAULT_WORKSPACE;
use consentry::config::Settings;
use consentry::domain::rate_limit::Bucket;
use consentry::domain::subscription::{Channel, SubscriptionState};
use consentry::store::{DatabaseLocation, Policy, Store, StoreOptions};
use reqwest::StatusCode;

use crate::helpers::{
    by_external_ids, client, eventually, spawn_app_on, spawn_app_on_existing, state_in, test_store, TestApp, TestStore,
    V2_PATH,
};

/// The database the formation's nodes create and Consentry uses.
const DATABASE: &str = "consentry";
/// Writers per Consentry server, each sending one request at a time.
const WRITERS: usize = 2;

#[test]
fn a_multi_host_url_with_target_session_attrs_is_accepted_and_described_with_every_host() {
    let url =
        "postgres://app@10.0.0.1:5433,10.0.0.2:5434,db3/consentry?target_session_attrs=read-write&sslmode=disable";
    let (config, connector) =
        consentry::store::postgres::connection_settings(url, &Default::default()).expect("the URL is accepted");
    assert_eq!(config.get_hosts().len(), 3);
    assert_eq!(config.get_ports(), &[5433, 5434, 5432]);
    assert_eq!(config.get_target_session_attrs(), tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    assert_eq!(connector.mode().as_str(), "disable");
    let location = DatabaseLocation::parse(url).expect("a database location");
    assert_eq!(location.to_string(), "postgres://10.0.0.1:5433,10.0.0.2:5434,db3:5432/consentry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_meeting_a_pooled_connection_to_a_server_that_takes_no_writes_runs_again_on_a_new_one() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    // One pooled connection, and rate limits counted in Redis, so that the write's own
    // transaction is the first to meet it.
    let mut url = String::new();
    let app = spawn_app_on(TestStore::Postgres, |settings| {
        settings.store.postgres.pool_size = 1;
        settings.rate_limit_redis = Some("redis://127.0.0.1:6379".into());
        let DatabaseLocation::Postgres(database) = &settings.database else { unreachable!("a PostgreSQL test app") };
        url = database.clone();
    })
    .await;
    let group = app.create_group("News", Channel::Email).await;
    let database = reqwest::Url::parse(&url).unwrap().path().trim_start_matches('/').to_string();
    let admin = crate::helpers::admin_database_url();

    // The server's connection is replaced by one made while the database refused writes, as a
    // connection to a primary that is then demoted refuses them (SQLSTATE 25006); the database
    // takes writes again on new connections.
    admin_sql(&admin, &format!("ALTER DATABASE {database} SET default_transaction_read_only = on"));
    admin_sql(&admin, &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"));
    eventually("the server reads on a new connection", Duration::from_secs(10), || async {
        let response = app
            .get_query(crate::helpers::STATUS_GET_PATH, &format!("subscription_group_id={group}&external_id=ada"))
            .await;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    admin_sql(&admin, &format!("ALTER DATABASE {database} RESET default_transaction_read_only"));

    let response = app.post_v2(&by_external_ids(group, "subscribed", &["ada"])).await;
    assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap_or_default());
    assert_eq!(app.state_of("ada", group).await, Some(SubscriptionState::Subscribed));
    assert_eq!(app.changes().await.len(), 1);
    app.shutdown().await;
}

/// Runs one statement on `url`, which must succeed.
fn admin_sql(url: &str, sql: &str) {
    query(url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_lose_no_acknowledged_write_through_a_planned_failover_and_a_killed_primary() {
    if test_store() != TestStore::Postgres {
        return; // needs PostgreSQL: runs in the suite's PostgreSQL pass
    }
    let Some(tools) = Tools::find() else { return };
    let formation = tokio::task::spawn_blocking(move || Formation::start(tools)).await.expect("the formation starts");
    let url = formation.url();

    // Two servers on the multi-host URL; the first creates the store, the second finds it.
    let first = spawn_app_on(TestStore::Postgres, |settings| on_formation(settings, &url)).await;
    let group = first.create_group("News", Channel::Email).await;
    first.set_limit(Bucket::Set, 1_000_000, 60).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_tests(dir.path());
    on_formation(&mut settings, &url);
    let second = spawn_app_on_existing(settings, first.key.clone(), None, dir).await;
    let nodes = [&first, &second];

    let load = Load::start(&nodes, group);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A planned failover: the monitor demotes the primary and promotes a standby.
    let planned = Instant::now();
    let old_primary = formation.primary().await;
    let monitor = formation.monitor_url();
    let pg_autoctl = formation.tools.pg_autoctl.clone();
    let run_as = formation.tools.run_as;
    let output = tokio::task::spawn_blocking(move || {
        autoctl(&pg_autoctl, run_as).args(["perform", "failover", "--monitor", &monitor]).output()
    })
    .await
    .unwrap()
    .expect("pg_autoctl runs");
    assert!(output.status.success(), "pg_autoctl perform failover: {}", String::from_utf8_lossy(&output.stderr));
    let new_primary = formation.primary().await;
    assert_ne!(new_primary, old_primary, "the planned failover moved the primary");
    load.served_again_since(planned, "after the planned failover").await;
    // The old primary rejoins as a standby: two standbys again, either of which may be promoted.
    formation.wait_until_healthy().await;

    // The new primary's machine dies: its postgres and its keeper, kill -9.
    let killed = Instant::now();
    formation.kill(new_primary);
    let final_primary = formation.promoted_instead_of(new_primary).await;
    load.served_again_since(killed, "after the primary was killed").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (acknowledged, samples) = load.stop().await;

    let report = |name: &str, from: Instant, to: Option<Instant>| {
        let refused: Vec<&Sample> =
            samples.iter().filter(|s| s.sent >= from && to.is_none_or(|to| s.sent < to)).collect();
        let failed: Vec<&&Sample> = refused.iter().filter(|s| s.status != StatusCode::CREATED).collect();
        let window = match (failed.first(), failed.iter().map(|s| s.answered).max()) {
            (Some(first), Some(last)) => format!(
                "503s from {:.2} s to {:.2} s after it began: a window of {:.2} s",
                (first.answered - from).as_secs_f64(),
                (last - from).as_secs_f64(),
                (last - first.answered).as_secs_f64()
            ),
            _ => "no 503".into(),
        };
        println!("{name}: {} of {} requests answered 503; {window}", failed.len(), refused.len());
        if std::env::var_os("PG_FAILOVER_TIMELINE").is_some() {
            for s in &refused {
                println!(
                    "  {:7.3} {:7.3} {}",
                    (s.sent - from).as_secs_f64(),
                    (s.answered - from).as_secs_f64(),
                    s.status.as_u16()
                );
            }
        }
    };
    report("planned failover (pg_autoctl perform failover)", planned, Some(killed));
    report("kill -9 of the primary's postgres and keeper", killed, None);
    let unexpected: Vec<&Sample> =
        samples.iter().filter(|s| !matches!(s.status, StatusCode::CREATED | StatusCode::SERVICE_UNAVAILABLE)).collect();
    assert!(unexpected.is_empty(), "answers other than 201 and 503: {unexpected:?}");
    assert!(acknowledged.len() > 20, "the load ran: {} acknowledged writes", acknowledged.len());

    // Everything acknowledged is on the final primary, read there directly.
    let direct = formation.node_url(final_primary);
    let store = Store::open(&DatabaseLocation::Postgres(direct.clone()), &StoreOptions::default(), &Policy::default())
        .await
        .expect("the final primary opens");
    let workspace = first.workspace;
    let changes = store.inspect().change_records(workspace).await.expect("the change records");
    let recorded: HashSet<String> =
        changes.iter().filter_map(|c| c.trace.request_id.map(|id| id.to_string())).collect();
    for write in &acknowledged {
        assert_eq!(
            state_in(&store, workspace, &write.external_id, group).await,
            Some(SubscriptionState::Subscribed),
            "an acknowledged write is missing on the final primary: {write:?}"
        );
        assert!(recorded.contains(&write.request_id), "an acknowledged write has no change record: {write:?}");
    }
    let ids: HashSet<_> = changes.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), changes.len(), "no change record twice");
    store.close().await;
    let verify = tokio::task::spawn_blocking(move || {
        crate::admin_cli::consentry().args(["--database", &direct, "ledger", "verify"]).output()
    })
    .await
    .unwrap()
    .expect("consentry runs");
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "ledger verify: {stdout} {}", String::from_utf8_lossy(&verify.stderr));
    assert!(stdout.starts_with("ok\t"), "{stdout}");
    assert_eq!(catalog_has_default(&first), Some(workspace));

    first.shutdown().await;
    second.shutdown().await;
    tokio::task::spawn_blocking(move || drop(formation)).await.unwrap();
}

/// The id of the `default` workspace, as the first server's catalog knows it.
fn catalog_has_default(app: &TestApp) -> Option<consentry::domain::ids::WorkspaceId> {
    app.catalog.workspaces().into_iter().find(|w| w.name == DEFAULT_WORKSPACE).map(|w| w.id)
}

/// Points a server at the formation, with a pool small enough for two servers on two cores.
fn on_formation(settings: &mut Settings, url: &str) {
    settings.database = DatabaseLocation::Postgres(url.to_string());
    settings.store.postgres.pool_size = 4;
    settings.catalog_refresh_interval = Some(Duration::from_secs(1));
}

/// One request of the load and its answer.
#[derive(Debug)]
struct Sample {
    sent: Instant,
    answered: Instant,
    status: StatusCode,
}

/// An acknowledged write: a profile subscribed, and the request's id (its change record's).
#[derive(Debug)]
struct Acknowledged {
    external_id: String,
    request_id: String,
}

/// Writers on every server, each setting a new profile subscribed one request at a time.
struct Load {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<(usize, Instant, Acknowledged)>>>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    nodes: usize,
}

impl Load {
    fn start(nodes: &[&TestApp], group: consentry::domain::ids::GroupId) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (node, app) in nodes.iter().enumerate() {
            for writer in 0..WRITERS {
                let endpoint = app.url(V2_PATH);
                let key = app.key.clone();
                let (stop, acknowledged, samples) = (stop.clone(), acknowledged.clone(), samples.clone());
                tasks.push(tokio::spawn(async move {
                    let client = client();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let external_id = format!("n{node}-w{writer}-{n}");
                        let body = by_external_ids(group, "subscribed", &[&external_id]);
                        let sent = Instant::now();
                        let response = client
                            .post(&endpoint)
                            .bearer_auth(&key)
                            .json(&body)
                            .timeout(Duration::from_secs(30))
                            .send()
                            .await
                            .expect("the server answers");
                        let answered = Instant::now();
                        let status = response.status();
                        if status == StatusCode::CREATED {
                            let request_id = response.headers()["x-request-id"].to_str().unwrap().to_string();
                            acknowledged.lock().unwrap().push((node, sent, Acknowledged { external_id, request_id }));
                        } else if status == StatusCode::SERVICE_UNAVAILABLE {
                            let body: serde_json::Value = response.json().await.expect("a JSON error");
                            assert_eq!(body["message"], "the database is unavailable; retry in a moment");
                        }
                        samples.lock().unwrap().push(Sample { sent, answered, status });
                        // A bounded load: a short pause between one writer's requests.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }));
            }
        }
        Load { stop, acknowledged, samples, tasks, nodes: nodes.len() }
    }

    /// Waits until every server has acknowledged a write sent after `since`.
    async fn served_again_since(&self, since: Instant, what: &str) {
        eventually(&format!("both servers serve again {what}"), Duration::from_secs(60), || async {
            let acknowledged = self.acknowledged.lock().unwrap();
            let serving: HashSet<usize> =
                acknowledged.iter().filter(|(_, sent, _)| *sent > since).map(|(node, _, _)| *node).collect();
            (serving.len() == self.nodes).then_some(())
        })
        .await;
    }

    /// Stops the writers; returns every acknowledged write and every request, in sending order.
    async fn stop(self) -> (Vec<Acknowledged>, Vec<Sample>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a writer does not panic");
        }
        let acknowledged = std::mem::take(&mut *self.acknowledged.lock().unwrap());
        let mut samples = std::mem::take(&mut *self.samples.lock().unwrap());
        samples.sort_by_key(|s| s.sent);
        (acknowledged.into_iter().map(|(_, _, a)| a).collect(), samples)
    }
}

/// What the formation runs with.
#[derive(Clone)]
struct Tools {
    pg_autoctl: PathBuf,
    /// The `pg_ctl` of the PostgreSQL that has the pgautofailover extension.
    pg_ctl: PathBuf,
    /// The user and group to run as, when the tests run as root (pg_autoctl refuses root).
    run_as: Option<(u32, u32)>,
    /// The database superuser: the name of the user that runs the formation.
    superuser: String,
}

impl Tools {
    /// Finds pg_autoctl and the PostgreSQL it works with; `None` (having said why) when they are
    /// missing outside CI, a panic under `CI=true`.
    fn find() -> Option<Tools> {
        let pg_autoctl = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .map(|dir| dir.join("pg_autoctl"))
            .find(|candidate| candidate.is_file());
        let pg_ctl = std::fs::read_dir("/usr/share/postgresql").ok().and_then(|versions| {
            versions
                .filter_map(Result::ok)
                .filter(|v| v.path().join("extension/pgautofailover.control").is_file())
                .map(|v| PathBuf::from("/usr/lib/postgresql").join(v.file_name()).join("bin/pg_ctl"))
                .find(|pg_ctl| pg_ctl.is_file())
        });
        let (Some(pg_autoctl), Some(pg_ctl)) = (pg_autoctl, pg_ctl) else {
            let why = "pg_autoctl and the pgautofailover extension are not installed \
                       (apt-get install postgresql-15-auto-failover)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true: {why}");
            eprintln!("skipped: {why}");
            return None;
        };
        let id = |flag: &str, user: Option<&str>| {
            let output = Command::new("id").arg(flag).args(user).output().expect("id runs");
            assert!(output.status.success(), "id {flag} {user:?}: {}", String::from_utf8_lossy(&output.stderr));
            String::from_utf8(output.stdout).unwrap().trim().to_string()
        };
        let (run_as, superuser) = if id("-u", None) == "0" {
            let uid = id("-u", Some("postgres")).parse().unwrap();
            let gid = id("-g", Some("postgres")).parse().unwrap();
            (Some((uid, gid)), "postgres".to_string())
        } else {
            (None, id("-un", None))
        };
        Some(Tools { pg_autoctl, pg_ctl, run_as, superuser })
    }
}

/// A `pg_autoctl` command as the formation's user, with nothing of this process's PostgreSQL
/// environment.
fn autoctl(pg_autoctl: &Path, run_as: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(pg_autoctl);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("PG") {
            command.env_remove(var);
        }
    }
    if let Some((uid, gid)) = run_as {
        command.uid(uid).gid(gid);
    }
    command.stdin(Stdio::null());
    command
}

/// A pg_auto_failover formation in a temporary directory: a monitor and three nodes, each
/// a `pg_autoctl` process of ours supervising its postgres.
struct Formation {
    tools: Tools,
    dir: tempfile::TempDir,
    monitor_port: u16,
    /// The nodes' ports; node `i` is named `node{i+1}`.
    ports: [u16; 3],
    monitor: Option<Child>,
    keepers: Vec<Option<Child>>,
}

impl Formation {
    /// Creates and starts the formation and waits until it has a primary and two synchronous
    /// standbys.
    fn start(tools: Tools) -> Formation {
        let dir = tempfile::tempdir().unwrap();
        if let Some((uid, gid)) = tools.run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("the formation's directory is chowned");
        }
        let ports = free_ports();
        let mut formation = Formation {
            tools,
            dir,
            monitor_port: ports[0],
            ports: [ports[1], ports[2], ports[3]],
            monitor: None,
            keepers: Vec::new(),
        };
        let monitor_data = formation.path("monitor");
        let output = formation
            .command()
            .args(["create", "monitor", "--auth", "trust", "--no-ssl", "--hostname", "127.0.0.1"])
            .arg("--pgctl")
            .arg(&formation.tools.pg_ctl)
            .arg("--pgdata")
            .arg(&monitor_data)
            .args(["--pgport", &formation.monitor_port.to_string()])
            .output()
            .expect("pg_autoctl runs");
        assert!(output.status.success(), "pg_autoctl create monitor: {}", String::from_utf8_lossy(&output.stderr));
        // The monitor listens on every interface unless told otherwise; tests bind loopback.
        let output = formation
            .command()
            .args(["config", "set", "--pgdata"])
            .arg(&monitor_data)
            .args(["postgresql.listen_addresses", "127.0.0.1"])
            .output()
            .expect("pg_autoctl runs");
        assert!(output.status.success(), "pg_autoctl config set: {}", String::from_utf8_lossy(&output.stderr));
        formation.monitor = Some(formation.spawn("monitor", |c| c.arg("run").arg("--pgdata").arg(&monitor_data)));
        // Failover within seconds rather than the default half minute: the monitor's health
        // checks and timeouts, shortened (they take effect on reload).
        for (setting, ms) in [
            ("health_check_period", 1000),
            ("health_check_timeout", 1000),
            ("health_check_max_retries", 1),
            ("health_check_retry_delay", 500),
            ("node_considered_unhealthy_timeout", 3000),
            ("primary_demote_timeout", 3000),
        ] {
            formation.monitor_sql(&format!("ALTER SYSTEM SET pgautofailover.{setting} = {ms}"));
        }
        formation.monitor_sql("SELECT pg_reload_conf()");

        // The first node becomes a primary alone; the two others then join it as standbys.
        formation.start_node(0);
        formation.wait_for_states(&["single"], false);
        formation.start_node(1);
        formation.start_node(2);
        // A standby's base backup waits for a checkpoint, spread over minutes by default.
        formation.wait_for_states(&["primary", "secondary", "secondary"], true);
        let output = formation
            .command()
            .args(["set", "formation", "number-sync-standbys", "1", "--monitor", &formation.monitor_url()])
            .output()
            .expect("pg_autoctl runs");
        assert!(output.status.success(), "number-sync-standbys: {}", String::from_utf8_lossy(&output.stderr));
        let settings = formation.monitor_query("SELECT number_sync_standbys FROM pgautofailover.formation");
        assert_eq!(settings, vec![vec!["1".to_string()]], "the formation waits for one standby at each commit");
        formation
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `pg_autoctl` command with its configuration and state under the formation's directory.
    fn command(&self) -> Command {
        let mut command = autoctl(&self.tools.pg_autoctl, self.tools.run_as);
        command
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_RUNTIME_DIR", self.dir.path());
        command
    }

    /// Spawns a long-running `pg_autoctl` process logging to `NAME.log`.
    fn spawn(&self, name: &str, args: impl FnOnce(&mut Command) -> &mut Command) -> Child {
        let log = std::fs::File::create(self.path(&format!("{name}.log"))).unwrap();
        let mut command = self.command();
        args(&mut command).stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("pg_autoctl starts")
    }

    fn start_node(&mut self, i: usize) {
        let name = format!("node{}", i + 1);
        let (data, port, monitor) = (self.path(&name), self.ports[i].to_string(), self.monitor_url());
        let child = self.spawn(&name, |c| {
            c.args(["create", "postgres", "--run", "--auth", "trust", "--no-ssl", "--hostname", "127.0.0.1"])
                .args(["--listen", "127.0.0.1", "--name", &name, "--dbname", DATABASE, "--monitor", &monitor])
                .arg("--pgctl")
                .arg(&self.tools.pg_ctl)
                .arg("--pgdata")
                .arg(&data)
                .args(["--pgport", &port])
        });
        self.keepers.push(Some(child));
    }

    fn monitor_url(&self) -> String {
        format!("postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable", self.monitor_port)
    }

    /// What Consentry connects with: every node, the primary wherever it is.
    fn url(&self) -> String {
        let hosts: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!(
            "postgres://{}@{}/{DATABASE}?target_session_attrs=read-write&sslmode=disable",
            self.tools.superuser,
            hosts.join(",")
        )
    }

    /// Node `i` alone.
    fn node_url(&self, i: usize) -> String {
        format!("postgres://{}@127.0.0.1:{}/{DATABASE}?sslmode=disable", self.tools.superuser, self.ports[i])
    }

    /// Runs a statement on the monitor's database as its superuser, waiting for it to accept
    /// connections.
    fn monitor_sql(&self, sql: &str) {
        let url = self.monitor_admin_url();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match query(&url, sql) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!("the monitor does not answer: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// The monitor's database as its superuser, for reading the formation's state.
    fn monitor_admin_url(&self) -> String {
        format!("postgres://{}@127.0.0.1:{}/pg_auto_failover?sslmode=disable", self.tools.superuser, self.monitor_port)
    }

    /// The rows of a query on the monitor, as text.
    fn monitor_query(&self, sql: &str) -> Vec<Vec<String>> {
        query(&self.monitor_admin_url(), sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Waits until the nodes report and are assigned `states`, in node order; with `checkpoint`,
    /// asks the first node for a checkpoint meanwhile, which standbys joining it wait for.
    fn wait_for_states(&self, states: &[&str], checkpoint: bool) {
        let expected: Vec<Vec<String>> = states.iter().map(|s| vec![s.to_string(), s.to_string()]).collect();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let now = query(
                &self.monitor_admin_url(),
                "SELECT reportedstate::text, goalstate::text FROM pgautofailover.node ORDER BY nodename",
            );
            if now.as_ref().is_ok_and(|now| *now == expected) {
                return;
            }
            assert!(Instant::now() < deadline, "the formation did not reach {states:?}: {now:?}\n{}", self.logs());
            if checkpoint {
                let _ = query(&self.node_url(0), "CHECKPOINT");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The logs of every pg_autoctl process, for a failure's message.
    fn logs(&self) -> String {
        ["monitor", "node1", "node2", "node3"]
            .iter()
            .map(|name| {
                let log = std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                format!("--- {name}.log (end)\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The node the monitor has as primary, waiting for one.
    async fn primary(&self) -> usize {
        eventually("the formation has a primary", Duration::from_secs(60), || self.primary_now()).await
    }

    /// Waits until the monitor has one primary and two standbys, each in the state assigned.
    async fn wait_until_healthy(&self) {
        let url = self.monitor_admin_url();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let url = url.clone();
            let states = tokio::task::spawn_blocking(move || {
                query(&url, "SELECT reportedstate::text, goalstate::text FROM pgautofailover.node ORDER BY 1")
            })
            .await
            .unwrap();
            let healthy = vec![
                vec!["primary".to_string(), "primary".to_string()],
                vec!["secondary".to_string(), "secondary".to_string()],
                vec!["secondary".to_string(), "secondary".to_string()],
            ];
            if states.as_ref().is_ok_and(|states| *states == healthy) {
                return;
            }
            assert!(Instant::now() < deadline, "the formation did not recover: {states:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the monitor has promoted a node other than `lost`; returns it.
    async fn promoted_instead_of(&self, lost: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(node) = self.primary_now().await.filter(|node| *node != lost) {
                return node;
            }
            assert!(Instant::now() < deadline, "the monitor promoted no standby:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The node the monitor reports and assigns `primary` (or `wait_primary`: promoted, its
    /// standbys still joining), if any.
    async fn primary_now(&self) -> Option<usize> {
        let url = self.monitor_admin_url();
        let rows = tokio::task::spawn_blocking(move || {
            query(
                &url,
                "SELECT nodename FROM pgautofailover.node WHERE reportedstate = goalstate \
                 AND goalstate IN ('primary', 'wait_primary')",
            )
        })
        .await
        .unwrap()
        .ok()?;
        match rows.as_slice() {
            // Node ids follow the order nodes registered in, which for the two standbys started
            // together is either; the names are ours.
            [row] => {
                Some(row[0].strip_prefix("node").and_then(|n| n.parse::<usize>().ok()).expect("a node's name") - 1)
            }
            _ => None,
        }
    }

    /// kill -9 node `i`'s pg_autoctl processes (so that nothing restarts its postgres) and its
    /// postmaster.
    fn kill(&self, i: usize) {
        let keeper = self.keepers[i].as_ref().expect("a running node").id();
        let postmaster = self.postmaster(i).expect("the node's postgres runs");
        let processes = processes();
        let postgres = descendants(&processes, postmaster);
        let mut doomed = descendants(&processes, keeper);
        doomed.retain(|pid| *pid != postmaster && !postgres.contains(pid));
        doomed.insert(0, keeper);
        doomed.push(postmaster);
        for pid in doomed {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }

    /// The pid of node `i`'s postmaster, from its `postmaster.pid`.
    fn postmaster(&self, i: usize) -> Option<u32> {
        let pidfile = std::fs::read_to_string(self.path(&format!("node{}/postmaster.pid", i + 1))).ok()?;
        pidfile.lines().next()?.trim().parse().ok()
    }
}

impl Drop for Formation {
    /// Stops every pg_autoctl process (SIGTERM: each stops its postgres), the monitor last,
    /// then kills whatever is left.
    fn drop(&mut self) {
        let keepers: Vec<Child> = self.keepers.iter_mut().filter_map(Option::take).collect();
        let postmasters: Vec<Option<u32>> = (0..3).map(|i| self.postmaster(i)).collect();
        for group in [keepers, self.monitor.take().into_iter().collect()] {
            for child in &group {
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            }
            for mut child in group {
                let deadline = Instant::now() + Duration::from_secs(15);
                while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let monitor = std::fs::read_to_string(self.path("monitor/postmaster.pid")).ok();
        let monitor = monitor.as_deref().and_then(|p| p.lines().next()).and_then(|l| l.trim().parse().ok());
        for pid in postmasters.into_iter().chain([monitor]).flatten() {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }
}

/// Four ports free on loopback now.
fn free_ports() -> [u16; 4] {
    let listeners: Vec<std::net::TcpListener> =
        (0..4).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
    ports.try_into().unwrap()
}

/// Every process's id and its parent's, from `/proc`.
fn processes() -> Vec<(u32, u32)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The parent is the second field after the command, which is in parentheses.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// Every process below `pid` in `processes`.
fn descendants(processes: &[(u32, u32)], pid: u32) -> Vec<u32> {
    let mut parents = vec![pid];
    let mut found = Vec::new();
    while let Some(parent) = parents.pop() {
        for (child, _) in processes.iter().filter(|(_, ppid)| *ppid == parent) {
            found.push(*child);
            parents.push(*child);
        }
    }
    found
}

/// The rows of `sql` on `url` as text (simple query protocol), from a thread of its own.
fn query(url: &str, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let (client, connection) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
            let driver = tokio::spawn(connection);
            let messages = client
                .simple_query(&sql)
                .await
                .map_err(|e| e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_string()));
            drop(client);
            let _ = driver.await;
            Ok(messages?
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => {
                        Some((0..row.len()).map(|i| row.get(i).unwrap_or("").to_string()).collect())
                    }
                    _ => None,
                })
                .collect())
        })
    })
    .join()
    .map_err(|_| "the thread panicked".to_string())?
}
