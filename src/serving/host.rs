//! What the server asks of its host at start-up: enough file descriptors for its connection
//! cap, and private files for the consent data it keeps.

// The libc calls below (getrlimit, setrlimit, umask) have no safe std equivalent; the crate
// denies unsafe code everywhere else (`[lints]` in Cargo.toml).
#![allow(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// File descriptors kept for everything but client connections: the store's files, the
/// PostgreSQL pool, the admin socket, logs.
const RESERVED_FILES: u64 = 512;

/// Raises the soft limit on open files to the hard limit, and warns when even that is below
/// what `max_connections` needs; returns the soft limit now in force.
///
/// Without this, a default soft limit (often 1,024) runs out before the connection cap is
/// reached, and then the server can accept no one at all, not even after the silent
/// connections holding it time out, until some close.
pub fn raise_file_limit(max_connections: usize) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes a plain struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
        return 0;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads a plain struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open-file limit");
        }
    }
    let needed = max_connections as u64 + RESERVED_FILES;
    if limit.rlim_cur < needed {
        tracing::warn!(
            open_file_limit = limit.rlim_cur,
            max_connections,
            "the open-file limit is below --max-connections plus {RESERVED_FILES} for the store: \
             lower --max-connections to {} or raise the limit (ulimit -n, LimitNOFILE=)",
            limit.rlim_cur.saturating_sub(RESERVED_FILES)
        );
    }
    limit.rlim_cur
}

/// Makes every file the process creates from now on private to its user (umask 077): the
/// store's files, and the admin socket from the moment it is bound, before any chmod.
pub fn private_files() {
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe { libc::umask(0o077) };
}

/// Tightens an existing data directory that group or others may enter to owner-only (0700),
/// saying so; the directory holds personal data and the admin socket.
pub fn private_data_dir(dir: &Path) -> std::io::Result<()> {
    let mode = match std::fs::metadata(dir) {
        Ok(meta) => meta.permissions().mode() & 0o777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        tracing::warn!(
            directory = %dir.display(),
            was = format!("{mode:04o}"),
            "the data directory was open to other users; it is now 0700 (owner only)"
        );
    }
    Ok(())
}
