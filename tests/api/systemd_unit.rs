//! deploy/consentry.service is a unit systemd accepts (`systemd-analyze verify`), sets only
//! settings `serve` knows, and lets a shutdown finish before systemd kills the process.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use consentry::serving::parse_duration;

use crate::helpers::embedded_only;

/// The value of the first `KEY=value` line of the unit.
fn setting<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("the unit sets no {key}"))
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify_and_outlasts_its_shutdown_grace() {
    if !embedded_only() {
        return; // nothing in it depends on the store: checked once, in the embedded pass
    }
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/consentry.service")).unwrap();

    // Every variable it sets is one `serve` reads.
    let help = Command::new(env!("CARGO_BIN_EXE_consentry")).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let variables: Vec<&str> = unit
        .lines()
        .filter_map(|line| line.strip_prefix("Environment=")?.split_once('=').map(|(name, _)| name))
        .collect();
    assert!(variables.contains(&"CONSENTRY_SHUTDOWN_GRACE"), "{variables:?}");
    for name in variables {
        assert!(help.contains(&format!("[env: {name}=")), "serve reads no {name}");
    }

    // SIGTERM, and SIGKILL only well after the grace: the writer drains after it.
    assert_eq!(setting(&unit, "KillSignal"), "SIGTERM");
    let grace = setting(&unit, "Environment=CONSENTRY_SHUTDOWN_GRACE");
    let (grace, stop) = (parse_duration(grace).unwrap(), parse_duration(setting(&unit, "TimeoutStopSec")).unwrap());
    assert!(
        stop >= grace + Duration::from_secs(10),
        "TimeoutStopSec {stop:?} leaves no room after the grace {grace:?}"
    );

    // verify checks that ExecStart exists: the same unit, run from the binary just built.
    let dir = tempfile::tempdir().unwrap();
    let checked = dir.path().join("consentry.service");
    std::fs::write(&checked, unit.replace("/usr/local/bin/consentry", env!("CARGO_BIN_EXE_consentry"))).unwrap();
    let verify = match Command::new("systemd-analyze").arg("verify").arg(&checked).output() {
        Ok(output) => output,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("systemd-analyze is needed: {e}"),
        Err(e) => {
            eprintln!("SKIPPED systemd-analyze verify: {e} (Debian: apt-get install systemd)");
            return;
        }
    };
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && complaints.trim().is_empty(), "systemd-analyze verify: {complaints}");
}
