//! Settings of a server process, from defaults, the environment and flags (clap resolves the
//! layering: a flag beats its environment variable, which beats the default).

use crate::store::{DatabaseLocation, StoreOptions};

/// The default data directory of the embedded store.
pub const DEFAULT_DATABASE: &str = "./consentry-data";
/// The default listen address: loopback only, so that a first start exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Everything a server needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the data lives.
    pub database: DatabaseLocation,
    /// `host:port` to listen on; port 0 picks a free port (tests).
    pub listen: String,
    /// Most active subscription groups a workspace may have.
    pub max_groups_per_workspace: usize,
    /// Store tuning.
    pub store: StoreOptions,
}

impl Settings {
    /// Settings for an embedded store in `dir`, listening on a free loopback port.
    pub fn for_tests(dir: &std::path::Path) -> Settings {
        Settings {
            database: DatabaseLocation::Embedded(dir.to_path_buf()),
            listen: "127.0.0.1:0".into(),
            max_groups_per_workspace: crate::domain::catalog::DEFAULT_MAX_GROUPS_PER_WORKSPACE,
            store: StoreOptions::default(),
        }
    }
}
