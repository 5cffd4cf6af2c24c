//! Optional probes of the server with Linux `perf`, best effort (a machine without `perf` or
//! tracepoint access simply gets no figure):
//! - counting the `fsync`/`fdatasync` calls of the server's writer thread during phase A, which
//!   gives the mean number of requests the writer committed per batch (it does not report it
//!   itself), so that ceiling (b) can be run batched as the server batched;
//! - recording a CPU profile (`perf record --call-graph dwarf`) on request.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// The writer thread's name as `/proc` shows it (15 characters at most).
const WRITER_THREAD: &str = "consentry-write";

/// A running `perf stat` counting the server's fsync calls per thread.
pub struct FsyncCounter {
    child: Child,
    output: PathBuf,
}

/// What the counter saw.
#[derive(Debug, Clone, Copy)]
pub struct Fsyncs {
    /// Calls made by the writer thread: one per committed batch.
    pub writer: u64,
    /// Calls made by every thread (the engine's flushes and compactions sync too).
    pub all: u64,
}

impl FsyncCounter {
    /// Starts counting on every current thread of `pid` for at most `limit` (so that it ends
    /// by itself if the bench dies); `None` if `perf` cannot be started.
    pub fn start(pid: u32, output: &Path, limit: Duration) -> Option<FsyncCounter> {
        let child = Command::new("perf")
            .args(["stat", "--per-thread", "-x,", "-e", "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync", "-o"])
            .arg(output)
            .args(["-p", &pid.to_string(), "--", "sleep", &limit.as_secs().max(1).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // perf needs a moment to attach to every thread.
        std::thread::sleep(Duration::from_millis(300));
        Some(FsyncCounter { child, output: output.to_path_buf() })
    }

    /// Stops counting (SIGINT makes `perf stat` print its counts) and reads the counts.
    pub fn finish(mut self) -> Option<Fsyncs> {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.output).ok()?;
        let (mut writer, mut all, mut counted) = (0, 0, false);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let fields: Vec<&str> = line.split(',').collect();
            let (Some(thread), Some(Ok(count))) = (fields.first(), fields.get(1).map(|c| c.parse::<u64>())) else {
                continue;
            };
            counted = true;
            all += count;
            if thread.starts_with(WRITER_THREAD) {
                writer += count;
            }
        }
        (counted && writer > 0).then_some(Fsyncs { writer, all })
    }
}

impl Drop for FsyncCounter {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `perf record` on `pid` for `duration`, writing to `path`; with DWARF call graphs,
/// since release builds keep no frame pointers.
pub fn record(pid: u32, path: &Path, duration: Duration) -> anyhow::Result<Child> {
    Command::new("perf")
        .args(["record", "-F", "250", "--call-graph", "dwarf,16384", "-o"])
        .arg(path)
        .args(["-p", &pid.to_string(), "--", "sleep", &duration.as_secs().max(1).to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start perf record")
}
