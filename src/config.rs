//! Settings of a server process, from defaults, the environment and flags (clap resolves the
//! layering: a flag beats its environment variable, which beats the default).

use std::time::Duration;

use crate::domain::retention::Retention;
use crate::domain::time::Clock;
use crate::store::{DatabaseLocation, StoreOptions};

/// The default data directory of the embedded store.
pub const DEFAULT_DATABASE: &str = "./consentry-data";
/// The default listen address: loopback only, so that a first start exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// How often expired orphaned states are swept by default.
pub const DEFAULT_ORPHAN_SWEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// How often a server on a shared database reads the catalog again by default: a key revoked
/// by another process stops working everywhere within this.
pub const DEFAULT_CATALOG_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

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
    /// How long an orphaned identifier state lives after its last change.
    pub orphan_retention: Retention,
    /// How often the background sweep deletes expired orphaned states.
    pub orphan_sweep_interval: Duration,
    /// The `redis://` or `rediss://` URL of the rate-limit counters shared by several nodes; `None` keeps
    /// them in this process.
    pub rate_limit_redis: Option<String>,
    /// How often the catalog is read again from the store, for stores that other processes
    /// change too (PostgreSQL); `None` for a store this process alone serves.
    pub catalog_refresh_interval: Option<Duration>,
    /// Where the service reads the time: the system's, or in tests a manual clock.
    pub clock: Clock,
    /// Connection timeouts and caps, shutdown grace, failed-authentication limit.
    pub serving: crate::serving::ServingOptions,
    /// Where people reach the pages (`serve --public-url`); `None`: `http://` and the bound
    /// listen address.
    pub public_url: Option<crate::domain::links::PublicUrl>,
    /// Requests one address may make to the public pages per minute.
    pub public_rate_limit: u32,
    /// Whether webhooks may go to loopback, private and link-local addresses
    /// (`serve --allow-private-webhooks`).
    pub allow_private_webhooks: bool,
    /// The NATS JetStream server every event is also published to (`serve --stream`).
    pub stream: Option<String>,
}

/// Requests one address may make to the public pages per minute by default: a person needs a
/// handful (a page and its stylesheet, a save), a mail server's one-click a few per batch.
pub const DEFAULT_PUBLIC_RATE_LIMIT: u32 = 120;

impl Settings {
    /// Settings for an embedded store in `dir`, listening on a free loopback port.
    pub fn for_tests(dir: &std::path::Path) -> Settings {
        Settings {
            database: DatabaseLocation::Embedded(dir.to_path_buf()),
            listen: "127.0.0.1:0".into(),
            max_groups_per_workspace: crate::domain::tenant::DEFAULT_MAX_GROUPS_PER_WORKSPACE,
            store: StoreOptions::default(),
            orphan_retention: Retention::DEFAULT,
            orphan_sweep_interval: DEFAULT_ORPHAN_SWEEP_INTERVAL,
            rate_limit_redis: None,
            catalog_refresh_interval: None,
            clock: Clock::system(),
            serving: crate::serving::ServingOptions::default(),
            public_url: None,
            public_rate_limit: DEFAULT_PUBLIC_RATE_LIMIT,
            allow_private_webhooks: false,
            stream: None,
        }
    }
}
