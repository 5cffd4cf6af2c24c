//! What the operating system tells about processes and the machine: `/proc` readings (RSS, CPU
//! time per process and per thread), directory sizes, and the machine facts the report opens
//! with. Linux only, like the figures it produces.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Resident memory of a process, from `/proc/<pid>/status`, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmHWM`: the peak resident set size so far.
    pub peak_rss: u64,
    /// `VmRSS`: the resident set size now.
    pub rss: u64,
}

/// Reads `VmHWM` and `VmRSS` of a process.
pub fn memory(pid: u32) -> std::io::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    Ok(Memory { peak_rss: field("VmHWM:"), rss: field("VmRSS:") })
}

/// Bytes a process (all its threads) has caused to be written to storage so far: `write_bytes`
/// of `/proc/<pid>/io`.
pub fn bytes_written(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|l| l.strip_prefix("write_bytes:")).and_then(|v| v.trim().parse().ok())
}

/// Clock ticks per second of `utime`/`stime` in `/proc/*/stat` (`getconf CLK_TCK`, 100 when
/// unknown, which it is on every Linux in practice).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|&ticks: &u64| ticks > 0)
            .unwrap_or(100)
    })
}

/// The fields of a `/proc/.../stat` line after the command name, which is parenthesized and may
/// itself contain spaces and parentheses; also returns the command name.
fn stat_fields(stat: &str) -> Option<(&str, Vec<&str>)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = &stat[open + 1..close];
    Some((name, stat[close + 1..].split_whitespace().collect()))
}

/// `utime + stime` of a stat line, as a duration. Field 14 and 15 of the line are the 12th and
/// 13th after the command name.
fn stat_cpu(fields: &[&str]) -> Option<Duration> {
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks();
    Some(Duration::from_micros((utime + stime) * 1_000_000 / ticks))
}

/// CPU time (user + system) a process has used so far, all its threads together.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu(&stat_fields(&stat)?.1)
}

/// CPU time of this process so far.
pub fn own_cpu_time() -> Option<Duration> {
    cpu_time(std::process::id())
}

/// The parent process id of this process, from `/proc/self/stat`.
pub fn parent_pid() -> Option<u32> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    stat_fields(&stat)?.1.get(1)?.parse().ok()
}

/// CPU time of a process's live threads, summed per thread name (tokio names all its workers
/// alike, so they add up under one name).
pub fn thread_cpu_times(pid: u32) -> BTreeMap<String, Duration> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let Some((name, fields)) = stat_fields(&stat) {
            if let Some(cpu) = stat_cpu(&fields) {
                *out.entry(name.to_string()).or_default() += cpu;
            }
        }
    }
    out
}

/// Bytes of the regular files under `path`, recursively (symbolic links are not followed).
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_size(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// The facts about the machine a reader needs to compare runs.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// `MemTotal`, in bytes.
    pub memory: u64,
    /// The CPU model.
    pub cpu_model: String,
    /// The kernel release.
    pub kernel: String,
    /// The file system the data directories live on (`df` output, best effort).
    pub filesystem: String,
    /// The commit of the crate (best effort) and whether the working tree has changes.
    pub commit: String,
    /// When the run started, UTC.
    pub date: String,
}

/// Gathers [`Machine`] facts; unreadable facts read as `unknown`.
pub fn machine(data_dir: &Path) -> Machine {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".to_string(), |(_, model)| model.trim().to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_string(), |k| k.trim().to_string());
    let filesystem = command_line("df", &["-hT", &data_dir.to_string_lossy()])
        .and_then(|out| out.lines().nth(1).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")))
        .unwrap_or_else(|| "unknown".into());
    let manifest = env!("CARGO_MANIFEST_DIR");
    let commit = match command_line("git", &["-C", manifest, "rev-parse", "--short", "HEAD"]) {
        Some(hash) => {
            let dirty = command_line("git", &["-C", manifest, "status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.trim().is_empty());
            format!("{}{}", hash.trim(), if dirty { " (with uncommitted changes)" } else { "" })
        }
        None => "unknown".into(),
    };
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory,
        cpu_model,
        kernel,
        filesystem,
        commit,
        date: consentry::domain::time::Clock::system().now().to_rfc3339(),
    }
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
