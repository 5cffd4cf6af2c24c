//! The processes the benchmark starts, and the guards that make sure none outlives it.
//!
//! Both servers run in their own process so that their memory and CPU can be measured apart
//! from the load generator's: the bench binary re-executes itself with a hidden first argument
//! ([`SERVE`] runs the production `consentry serve` path unchanged, [`CEILING_HTTP`] the
//! store-less axum server of ceiling (a)). A [`ChildProcess`] is killed when dropped (panic,
//! early return), every live child is killed when the bench gets ctrl-c or SIGTERM, and every
//! child exits by itself when the bench dies without a chance to clean up (kill -9).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Hidden first argument: run `consentry --database DIR|URL serve --listen ADDR [ARGS…]`.
pub const SERVE: &str = "__serve";
/// Hidden first argument: run the ceiling (a) HTTP server on `ADDR`.
pub const CEILING_HTTP: &str = "__ceiling_http";

/// Pids of live children and directories to remove, for the interrupt handler.
static CLEANUP: Mutex<Cleanup> = Mutex::new(Cleanup { pids: Vec::new(), dirs: Vec::new() });

struct Cleanup {
    pids: Vec<u32>,
    dirs: Vec<PathBuf>,
}

fn cleanup() -> std::sync::MutexGuard<'static, Cleanup> {
    CLEANUP.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends `signal` (`TERM`, `KILL`) to a process with the `kill` command (the crate has no libc
/// binding).
fn send_signal(pid: u32, signal: &str) -> std::io::Result<ExitStatus> {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

/// Kills every live child and removes the scratch directories and databases; for ctrl-c and SIGTERM, after
/// which the process exits without unwinding (so the guards' `Drop` would not run).
pub fn kill_all_and_clean() {
    let state = cleanup();
    for &pid in &state.pids {
        let _ = send_signal(pid, "KILL");
    }
    // Give the kernel a moment to release the killed processes' files before deleting.
    std::thread::sleep(Duration::from_millis(200));
    for dir in &state.dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
    crate::pg::drop_all();
}

/// A scratch directory, removed when dropped unless kept.
pub struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    /// Creates a new, empty directory under `parent`.
    pub fn create(parent: &Path, name: &str, keep: bool) -> anyhow::Result<ScratchDir> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
        let path = parent.join(format!("{name}-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        if !keep {
            cleanup().dirs.push(path.clone());
        }
        Ok(ScratchDir { path, keep })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
            cleanup().dirs.retain(|d| d != &self.path);
        } else {
            eprintln!("kept {}", self.path.display());
        }
    }
}

/// A child process that is killed (SIGKILL) if it is still running when dropped.
pub struct ChildProcess {
    child: std::process::Child,
    name: &'static str,
    log: PathBuf,
}

impl ChildProcess {
    /// Re-executes this binary with `args`, its stdout and stderr going to `log`.
    pub fn spawn_self(name: &'static str, args: &[String], log: &Path) -> anyhow::Result<ChildProcess> {
        let exe = std::env::current_exe().context("cannot find the bench executable")?;
        let out = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        cleanup().pids.push(child.id());
        Ok(ChildProcess { child, name, log: log.to_path_buf() })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of its output, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until `addr` accepts TCP connections; fails if the child exits first or `timeout`
    /// passes.
    pub fn wait_until_listening(&mut self, addr: SocketAddr, timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(start.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the {} exited ({status}) before listening; its output ends with:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if start.elapsed() > timeout {
                bail!(
                    "the {} did not listen on {addr} within {timeout:?}; its output ends with:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the child to exit; returns its exit status
    /// and how long it took to stop. A child still running after `timeout` is killed and
    /// reported as an error.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<(ExitStatus, Duration)> {
        let start = Instant::now();
        send_signal(self.pid(), "TERM").context("cannot run kill -TERM")?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, start.elapsed()));
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("the {} did not exit within {timeout:?} of SIGTERM and was killed", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let pid = self.child.id();
        cleanup().pids.retain(|&p| p != pid);
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?)
}

/// Makes this (child) process exit when its parent dies: the bench may be killed with no chance
/// to stop its children, and an orphaned server would hold a port and a store forever.
fn exit_with_parent() {
    let Some(parent) = crate::sys::parent_pid() else {
        return;
    };
    std::thread::Builder::new()
        .name("bench-parent-watch".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(250));
            if crate::sys::parent_pid() != Some(parent) {
                eprintln!("the bench process is gone; exiting");
                std::process::exit(3);
            }
        })
        .expect("cannot start a thread");
}

/// Entry point of the [`SERVE`] child: `__serve DIR ADDR [SERVE-ARGS…]`. Runs the production
/// command line unchanged and returns its exit code.
pub fn serve_child(args: &[String]) -> i32 {
    let [dir, addr, extra @ ..] = args else {
        eprintln!("usage: bench {SERVE} DIR ADDR [SERVE-ARGS…]");
        return 2;
    };
    exit_with_parent();
    let mut argv: Vec<String> =
        ["consentry", "--database", dir, "serve", "--listen", addr].iter().map(|s| s.to_string()).collect();
    argv.extend(extra.iter().cloned());
    use clap::Parser;
    consentry::cli::run(consentry::cli::Cli::parse_from(argv))
}

/// Entry point of the [`CEILING_HTTP`] child: `__ceiling_http ADDR`. An axum 0.8 server on the
/// same route, with a tokio runtime like the real server's, whose handler parses the body into
/// a `serde_json::Value` and answers 201 without touching a store.
pub fn ceiling_http_child(args: &[String]) -> i32 {
    let [addr] = args else {
        eprintln!("usage: bench {CEILING_HTTP} ADDR");
        return 2;
    };
    exit_with_parent();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start a runtime: {err}");
            return 1;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async move {
        use axum::http::StatusCode;
        use axum::Json;
        use serde_json::{json, Value};

        async fn handle(body: axum::body::Bytes) -> (StatusCode, Json<Value>) {
            match serde_json::from_slice::<Value>(&body) {
                Ok(value) => {
                    drop(value);
                    (StatusCode::CREATED, Json(json!({ "message": "success" })))
                }
                Err(err) => (StatusCode::BAD_REQUEST, Json(json!({ "message": err.to_string() }))),
            }
        }

        let app = axum::Router::new().route("/v2/subscription/status/set", axum::routing::post(handle));
        let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
        axum::serve(listener, app).with_graceful_shutdown(consentry::server::shutdown_signal()?).await?;
        Ok(())
    });
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("error: {err:#}");
            1
        }
    }
}
