//! The admin socket: how the command line reaches a server that holds the embedded store.
//!
//! A Unix socket in the data directory, readable only by the owner (mode 0600): whoever may
//! read the data directory may administer it, nobody else, and nothing listens on the network.
//! The protocol is one JSON [`AdminRequest`] line in, one JSON [`Reply`] line out.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use super::{execute, AdminOutput, AdminRequest};
use crate::catalog::Catalog;
use crate::store::Store;

/// The socket's file name in the data directory.
pub const SOCKET_FILE: &str = "admin.sock";
/// Longest request line accepted; admin requests are a few hundred bytes.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// The answer to one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    /// It worked.
    Ok(AdminOutput),
    /// It was refused, with the reason.
    Err(String),
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
                    Ok(AdminRequest::LedgerExportPage(request)) => {
                        match super::export::page(&store, &catalog, &request).await {
                            Ok(page) => match serde_json::to_string(&page) {
                                Ok(stdout) => Reply::Ok(AdminOutput { stdout, ..AdminOutput::default() }),
                                Err(err) => Reply::Err(format!("cannot encode the page: {err}")),
                            },
                            Err(message) => Reply::Err(message),
                        }
                    }
                    Ok(request) => match execute(&catalog, &request).await {
                        Ok(output) => Reply::Ok(output),
                        Err(err) => Reply::Err(crate::store::report(&err)),
                    },
                    Err(err) => Reply::Err(format!("malformed admin request: {err}")),
                },
                Err(err) => Reply::Err(format!("unreadable admin request: {err}")),
            };
            let mut text = serde_json::to_string(&reply).unwrap_or_else(|_| "{\"Err\":\"encoding\"}".into());
            text.push('\n');
            let _ = write.write_all(text.as_bytes()).await;
        });
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

/// Sends one request to the server holding `data_dir` and returns its answer.
pub fn call(data_dir: &Path, request: &AdminRequest) -> Result<Result<AdminOutput, String>, String> {
    let path = socket_path(data_dir);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        format!(
            "the store in {} is in use by another process, and its admin socket {} does not answer ({e}); \
             stop that process or run this command again once it is up",
            data_dir.display(),
            path.display()
        )
    })?;
    let timeout = if request.is_long() { None } else { Some(Duration::from_secs(30)) };
    stream.set_read_timeout(timeout).map_err(|e| e.to_string())?;
    let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(|e| format!("cannot send to the server: {e}"))?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(|e| format!("no answer from the server: {e}"))?;
    match serde_json::from_str::<Reply>(&answer) {
        Ok(Reply::Ok(output)) => Ok(Ok(output)),
        Ok(Reply::Err(message)) => Ok(Err(message)),
        Err(e) => Err(format!("unreadable answer from the server: {e}")),
    }
}
