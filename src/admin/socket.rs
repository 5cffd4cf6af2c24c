//! The admin socket: how the command line reaches a server that holds the embedded store.
//!
//! A Unix socket in the data directory, readable only by the owner (mode 0600): whoever may
//! read the data directory may administer it, nobody else, and nothing listens on the network.
//! The protocol is one JSON [`AdminRequest`] line in, one JSON [`Reply`] line out, preceded
//! for a long request by [`Reply::Progress`] lines, one a second.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixListener;

use super::{execute, AdminOutput, AdminRequest};
use crate::catalog::Catalog;
use crate::store::Store;

/// The socket's file name in the data directory.
pub const SOCKET_FILE: &str = "admin.sock";
/// Longest request line accepted; admin requests are a few hundred bytes.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// How often a long request reports its progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long the caller waits for the next line before it gives up on the server: long enough
/// for a short command on a loaded machine, and thirty missed progress reports.
pub const SILENCE: Duration = Duration::from_secs(30);

/// The answer to one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    /// It worked.
    Ok(AdminOutput),
    /// It was refused, with the reason.
    Err(String),
    /// Not the answer yet: how far a long request has come (records checked), sent every
    /// [`PROGRESS_EVERY`] until the answer, so that the caller can tell a long walk from a
    /// stuck server.
    Progress(u64),
}

/// The socket's path for a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// Binds the socket, replacing a stale one. Only call while holding the store's lock: then no
/// other server can be using the file.
pub fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves admin requests until the task is dropped, then removes the socket file, so that no
/// stale socket is left in the data directory after a clean shutdown. Catalog commands run
/// against `catalog`; a page of `ledger export` reads `store`.
pub async fn serve(listener: UnixListener, catalog: Arc<Catalog>, store: Store) {
    let _remove_on_drop = RemoveOnDrop(listener.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_path_buf)));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(error = %err, "admin socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let catalog = Arc::clone(&catalog);
        let store = store.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let reply = match tokio::io::BufReader::new(read).take(MAX_REQUEST_BYTES).read_line(&mut line).await {
                Ok(_) => match serde_json::from_str::<AdminRequest>(&line) {
                    Ok(request) => answer(request, &catalog, &store, &mut write).await,
                    Err(err) => Reply::Err(format!("malformed admin request: {err}")),
                },
                Err(err) => Reply::Err(format!("unreadable admin request: {err}")),
            };
            let _ = send(&mut write, &reply).await;
        });
    }
}

/// Answers one request. Catalog commands run on a blocking thread (they may write the store);
/// `ledger verify` walks the store while telling the caller how far it has come.
async fn answer(request: AdminRequest, catalog: &Arc<Catalog>, store: &Store, write: &mut OwnedWriteHalf) -> Reply {
    match request {
        AdminRequest::LedgerExportPage(request) => match super::export::page(store, catalog, &request).await {
            Ok(page) => match serde_json::to_string(&page) {
                Ok(stdout) => Reply::Ok(AdminOutput { stdout, ..AdminOutput::default() }),
                Err(err) => Reply::Err(format!("cannot encode the page: {err}")),
            },
            Err(message) => Reply::Err(message),
        },
        AdminRequest::LedgerVerify { workspace } => {
            let ws = match super::workspace_filter(catalog, workspace.as_deref()) {
                Ok(ws) => ws,
                Err(err) => return Reply::Err(err.to_string()),
            };
            let progress = Arc::new(AtomicU64::new(0));
            let walk = store.verify_ledger(ws, Arc::clone(&progress));
            with_progress(walk, &progress, write, |check| super::ledger_report(&check)).await
        }
        AdminRequest::Backup { to } => {
            if !to.is_absolute() {
                return Reply::Err(format!("the backup directory {} is not an absolute path", to.display()));
            }
            let progress = Arc::new(AtomicU64::new(0));
            let copy = store.backup(&to, Arc::clone(&progress));
            with_progress(copy, &progress, write, |manifest| super::backup_report(&to, &manifest)).await
        }
        request => match execute(catalog, &request).await {
            Ok(output) => Reply::Ok(output),
            Err(err) => Reply::Err(crate::store::report(&err)),
        },
    }
}

/// Awaits `work`, a long walk of the store on a blocking thread, telling the caller every
/// [`PROGRESS_EVERY`] how far it has come.
async fn with_progress<T>(
    work: impl std::future::Future<Output = Result<T, crate::store::StoreError>>,
    progress: &AtomicU64,
    write: &mut OwnedWriteHalf,
    report: impl FnOnce(T) -> AdminOutput,
) -> Reply {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            done = &mut work => break match done {
                Ok(done) => Reply::Ok(report(done)),
                Err(err) => Reply::Err(crate::store::report(&err)),
            },
            _ = tick.tick() => {
                // A caller that went away stops hearing; the walk, on a blocking thread, ends
                // by itself.
                if send(write, &Reply::Progress(progress.load(Ordering::Relaxed))).await.is_err() {
                    break Reply::Err("the caller went away".into());
                }
            }
        }
    }
}

/// Removes the socket file it names when dropped.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes one reply line.
async fn send(write: &mut OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    let mut text = serde_json::to_string(reply).unwrap_or_else(|_| "{\"Err\":\"encoding\"}".into());
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

/// Sends one request to the server holding `data_dir` and returns its answer.
pub fn call(data_dir: &Path, request: &AdminRequest) -> Result<Result<AdminOutput, String>, String> {
    call_with_progress(data_dir, request, |_| {})
}

/// Sends one request and returns its answer, passing on the progress the server reports on
/// the way (a count of records, for `ledger verify`). However long a request runs, the server
/// says something at least every [`PROGRESS_EVERY`]: a silence of [`SILENCE`] means it is
/// stuck or gone, and the caller gets an error rather than waiting forever.
pub fn call_with_progress(
    data_dir: &Path,
    request: &AdminRequest,
    mut on_progress: impl FnMut(u64),
) -> Result<Result<AdminOutput, String>, String> {
    let path = socket_path(data_dir);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        format!(
            "the store in {} is in use by another process, and its admin socket {} does not answer ({e}); \
             stop that process or run this command again once it is up",
            data_dir.display(),
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(SILENCE)).map_err(|e| e.to_string())?;
    let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(|e| format!("cannot send to the server: {e}"))?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut answer = String::new();
        let read = reader.read_line(&mut answer).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                format!("the server said nothing for {} s; it may be stuck: {e}", SILENCE.as_secs())
            }
            _ => format!("no answer from the server: {e}"),
        })?;
        if read == 0 {
            return Err("the server closed the admin socket without answering".into());
        }
        match serde_json::from_str::<Reply>(&answer) {
            Ok(Reply::Ok(output)) => return Ok(Ok(output)),
            Ok(Reply::Err(message)) => return Ok(Err(message)),
            Ok(Reply::Progress(done)) => on_progress(done),
            Err(e) => return Err(format!("unreadable answer from the server: {e}")),
        }
    }
}
