//! The container image (deploy/Containerfile, built by deploy/build-image.sh) runs: it
//! answers a set and a get as an unprivileged user, on the embedded store in a volume at
//! `/data` (suite's embedded pass) or on PostgreSQL (PostgreSQL pass), and SIGTERM stops it
//! with exit code 0.
//!
//! It needs podman (Debian: `apt-get install podman runc`). Without it the test fails under
//! `CI=true` and is skipped, saying so, elsewhere. The image is built by the same command a
//! user runs; `.ci/run` builds it before the suite, so here the build finds nothing to do.
//! On these machines podman runs containers with runc (crun refuses the cgroup setup) and may
//! not raise file limits, so both are given explicitly.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{test_store, TestDatabase, TestStore, STATUS_GET_PATH, V2_PATH};

/// The tag the test builds and runs; `localhost/` so that podman never looks for it in a
/// registry.
const IMAGE: &str = "localhost/consentry:test";

/// The uid and gid the image runs as.
const USER: u32 = 65532;

/// `podman --runtime runc ARGS…`, its output.
fn podman(args: &[&str]) -> Output {
    Command::new("podman").args(["--runtime", "runc"]).args(args).output().expect("podman runs")
}

/// `podman ARGS…`, which must succeed; its stdout, trimmed.
fn podman_ok(args: &[&str]) -> String {
    let output = podman(args);
    assert!(output.status.success(), "podman {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// Whether podman is here; without it, fails under `CI=true` and says why it skips elsewhere.
fn podman_present() -> bool {
    match Command::new("podman").arg("--version").output() {
        Ok(output) if output.status.success() => true,
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("podman is needed for the container test (Debian: apt-get install podman runc)")
        }
        _ => {
            eprintln!("SKIPPED the container test: podman is not installed (Debian: apt-get install podman runc)");
            false
        }
    }
}

/// A container and its volume, removed however the test ends.
struct Container {
    name: String,
    volume: Option<String>,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.name]);
        if let Some(volume) = &self.volume {
            let _ = podman(&["volume", "rm", "--force", volume]);
        }
    }
}

impl Container {
    /// stdout and stderr so far.
    fn logs(&self) -> (String, String) {
        let output = podman(&["logs", &self.name]);
        (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    }

    fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.name])
    }
}

/// This process's soft limit named `name` in /proc/self/limits (`Max open files`…).
fn soft_limit(name: &str) -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {limits}"));
    let soft = line[name.len()..].split_whitespace().next().unwrap();
    if soft == "unlimited" {
        u64::MAX
    } else {
        soft.parse().unwrap()
    }
}

/// `--ulimit` flags within this process's limits: podman's defaults are higher than these
/// machines let a container have. runc sets them after giving up the right to raise limits,
/// and here even the current process limit is refused, so processes get a modest 4,096.
fn ulimits() -> [String; 4] {
    let files = soft_limit("Max open files").min(1 << 20);
    let processes = soft_limit("Max processes").min(4096);
    ["--ulimit".into(), format!("nofile={files}:{files}"), "--ulimit".into(), format!("nproc={processes}:{processes}")]
}

/// A loopback port free now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_image_runs_unprivileged_answers_a_set_and_a_get_and_exits_0_on_sigterm() {
    if !podman_present() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = tokio::task::spawn_blocking(move || {
        // As from a user's shell: without the variables `cargo test` gives its tests
        // (LD_LIBRARY_PATH, CARGO_PKG_*…), which would make the release build start over
        // rather than find what .ci/run built.
        let inherited = std::env::vars().filter(|(name, _)| {
            !(name.starts_with("CARGO") && name != "CARGO_HOME") && name != "LD_LIBRARY_PATH" && name != "OUT_DIR"
        });
        Command::new(root.join("deploy/build-image.sh"))
            .arg(IMAGE)
            .current_dir(root)
            .env_clear()
            .envs(inherited)
            .output()
            .expect("the build runs")
    })
    .await
    .unwrap();
    assert!(build.status.success(), "deploy/build-image.sh failed: {}", String::from_utf8_lossy(&build.stderr));

    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("consentry-test-{suffix}");
    let database = (test_store() == TestStore::Postgres).then(TestDatabase::create);
    let mut run: Vec<String> = ["run", "--detach", "--name", &name].map(str::to_string).into();
    run.extend(ulimits());
    let (volume, listen) = match &database {
        // The image's defaults: the store in a named volume at /data, listening on every
        // interface inside the container, published on the host's loopback only.
        None => {
            let volume = format!("consentry-test-{suffix}");
            run.extend(["--volume", &format!("{volume}:/data"), "--publish", "127.0.0.1::8080"].map(str::to_string));
            (Some(volume), None)
        }
        // PostgreSQL on the host's 127.0.0.1: the host's network, and a loopback address to
        // listen on rather than the image's every-interface default.
        Some(database) => {
            let listen = format!("127.0.0.1:{}", free_port());
            run.extend(
                [
                    "--network",
                    "host",
                    "--env",
                    &format!("CONSENTRY_DATABASE_URL={}", database.url),
                    "--env",
                    &format!("CONSENTRY_LISTEN={listen}"),
                    // As often as settle() below expects.
                    "--env",
                    &format!("CONSENTRY_CATALOG_REFRESH_INTERVAL_MS={}", crate::admin_cli::CATALOG_REFRESH_MS),
                ]
                .map(str::to_string),
            );
            (None, Some(listen))
        }
    };
    run.push(IMAGE.to_string());
    let container = Container { name: name.clone(), volume };
    podman_ok(&run.iter().map(String::as_str).collect::<Vec<_>>());

    let started = Instant::now();
    let (stdout, stderr) = loop {
        let (stdout, stderr) = container.logs();
        if stderr.contains("consentry is listening") {
            break (stdout, stderr);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30) && container.inspect("{{.State.Running}}") == "true",
            "the container did not start listening:\n{stdout}\n{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let key = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("API key:"))
        .unwrap_or_else(|| panic!("no bootstrap key printed:\n{stdout}\n{stderr}"))
        .trim()
        .to_string();
    let address = match listen {
        None => podman_ok(&["port", &name, "8080/tcp"]),
        Some(listen) => listen,
    };
    assert!(address.starts_with("127.0.0.1:"), "published beyond loopback: {address}");

    // The server runs as the image's user, not root.
    let pid = container.inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    assert!(uid.split_whitespace().all(|id| id == USER.to_string()), "the server runs as uid {uid}");

    // Administration inside the container, through the same image and environment.
    let group = podman_ok(&[
        "exec",
        &name,
        "/consentry",
        "groups",
        "create",
        "--workspace",
        "default",
        "--name",
        "news",
        "--channel",
        "email",
    ]);
    crate::admin_cli::settle().await;

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = json!({ "subscription_groups": [{ "subscription_group_id": group,
        "subscription_state": "subscribed", "external_ids": ["ada"] }] });
    let set = client.post(format!("http://{address}{V2_PATH}")).bearer_auth(&key).json(&body).send().await.unwrap();
    assert_eq!(set.status(), 201, "{}", set.text().await.unwrap());
    let get = client
        .get(format!("http://{address}{STATUS_GET_PATH}?subscription_group_id={group}&external_id=ada"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let answer: Value = get.json().await.unwrap();
    assert_eq!(answer, json!({ "status": { "ada": "Subscribed" }, "message": "success" }));

    // `podman stop` sends the image's STOPSIGNAL, SIGTERM; SIGKILL would come only after 30 s.
    podman_ok(&["stop", "--time", "30", &name]);
    let (_, stderr) = container.logs();
    assert_eq!(container.inspect("{{.State.ExitCode}}"), "0", "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    if let Some(volume) = &container.volume {
        // The store is in the volume, owned by the image's user.
        let mountpoint = podman_ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", volume]);
        let meta = std::fs::metadata(&mountpoint).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), USER);
        assert!(std::fs::read_dir(&mountpoint).unwrap().count() > 0, "nothing was stored in the volume");
    }
}
