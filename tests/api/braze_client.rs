//! A real, widely used third-party Braze client works against Consentry unchanged: the npm
//! package `braze-api`, at the exact version pinned in `tests/client/package.json` and
//! `package-lock.json`, drives all six subscription endpoints of a real server with only the
//! base URL and the key changed. The checks live in `tests/client/drive.mjs` (they are the
//! client's calls, so they are written in the client's language); this test starts the server,
//! gives the script its groups and keys, and fails with the script's output when a check fails.
//!
//! It needs Node.js 18 or newer with npm. `.ci/run` installs the client before `cargo test`;
//! when `tests/client/node_modules` does not hold the pinned version (a fresh clone running a
//! plain `cargo test`), this test runs `npm ci` itself first.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use consentry::catalog::DEFAULT_WORKSPACE;
use consentry::domain::catalog::Permission;
use consentry::domain::subscription::Channel;

use crate::helpers::spawn_app;

/// `npm ci` fetches from the registry: generous, but a hung install must not hang the suite.
const INSTALL_DEADLINE: Duration = Duration::from_secs(300);
/// The script makes a few dozen requests to a local server; anything near this is a hang.
const DRIVE_DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test]
async fn the_braze_api_client_from_npm_drives_every_endpoint_unchanged() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/client");
    // Node and npm run on the blocking pool: this test's runtime thread must stay free to serve
    // the server while the script talks to it.
    let install_dir = dir.clone();
    tokio::task::spawn_blocking(move || ensure_installed(&install_dir)).await.expect("the install does not panic");

    let app = spawn_app().await;
    let newsletter = app.create_group("newsletter", Channel::Email).await;
    let alerts = app.create_group("alerts", Channel::Sms).await;
    // A key that may read states but nothing else: every other endpoint must answer it 403.
    let (_, read_only) = app
        .catalog
        .create_key(DEFAULT_WORKSPACE, vec![Permission::SubscriptionStatusGet], Vec::new(), "read-only")
        .await
        .expect("the read-only key is created");

    let mut drive = Command::new("node");
    drive
        .arg("drive.mjs")
        .current_dir(&dir)
        .env("BASE_URL", &app.address)
        .env("API_KEY", &app.key)
        .env("READ_ONLY_KEY", read_only)
        .env("EMAIL_GROUP_ID", newsletter.to_string())
        .env("EMAIL_GROUP_NAME", "newsletter")
        .env("SMS_GROUP_ID", alerts.to_string())
        .env("SMS_GROUP_NAME", "alerts")
        // A developer's partial run must not narrow what the suite checks.
        .env_remove("ONLY");
    let (success, output) = tokio::task::spawn_blocking(move || run(drive, DRIVE_DEADLINE))
        .await
        .expect("the script runner does not panic");

    assert!(success, "tests/client/drive.mjs failed against the server:\n{output}");
    app.shutdown().await;
}

/// Runs `npm ci` unless `node_modules` already holds the version of braze-api that
/// `package.json` pins (so a bumped pin reinstalls, and a second run costs nothing).
fn ensure_installed(dir: &Path) {
    let pinned = version_in(&dir.join("package.json"), &["dependencies", "braze-api"])
        .expect("tests/client/package.json pins braze-api");
    let installed = version_in(&dir.join("node_modules/braze-api/package.json"), &["version"]);
    if installed.as_deref() == Some(pinned.as_str()) {
        return;
    }
    let mut install = Command::new("npm");
    install.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(dir);
    let (success, output) = run(install, INSTALL_DEADLINE);
    assert!(success, "`npm ci` in {} failed:\n{output}", dir.display());
}

/// The string at `path` in the JSON file `file`, if the file exists and has one there.
fn version_in(file: &Path, path: &[&str]) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    path.iter().try_fold(&json, |value, key| value.get(key))?.as_str().map(str::to_string)
}

/// Runs `command` to completion or until `deadline` (then kills it), and returns whether it
/// exited 0 and what it printed on stdout and stderr.
fn run(mut command: Command, deadline: Duration) -> (bool, String) {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| {
        panic!("cannot start `{program}` ({e}): this test needs Node.js 18 or newer with npm (Debian: apt-get install nodejs npm)")
    });
    // Both pipes are drained on their own threads so that a chatty child never blocks on a
    // full pipe while this thread waits for it.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout is piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr is piped")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break Some(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = stdout.join().expect("stdout is read");
    let err = stderr.join().expect("stderr is read");
    if !err.is_empty() {
        output.push_str("\n--- stderr ---\n");
        output.push_str(&err);
    }
    match status {
        Some(status) => (status.success(), output),
        None => (false, format!("`{program}` was killed after {deadline:?}:\n{output}")),
    }
}
