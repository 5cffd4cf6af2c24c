//! `consentry serve`: runs the server until ctrl-c or SIGTERM.

use std::io::Write;
use std::time::Duration;

use clap::Args;

use crate::config::{Settings, DEFAULT_CATALOG_REFRESH_INTERVAL, DEFAULT_LISTEN};
use crate::domain::retention::Retention;
use crate::domain::time::Clock;
use crate::server::{shutdown_signal, Application};
use crate::store::{DatabaseLocation, Durability, EmbeddedOptions, PostgresOptions, StoreOptions};

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CONSENTRY_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// `sync`: fsync every batch before answering (survives power loss).
    /// `buffered`: hand every batch to the OS before answering (survives a process crash only).
    #[arg(long, env = "CONSENTRY_DURABILITY", value_enum, default_value_t = Durability::Sync)]
    pub durability: Durability,
    /// Most write requests committed together with one fsync.
    #[arg(long, env = "CONSENTRY_MAX_BATCH", default_value_t = EmbeddedOptions::default().max_batch as u16,
          value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub max_batch: u16,
    /// Block cache of the embedded store, in MiB.
    #[arg(long, env = "CONSENTRY_CACHE_MB", default_value_t = EmbeddedOptions::default().cache_bytes >> 20)]
    pub cache_mb: u64,
    /// Days an orphaned identifier state (an email or phone no profile carries) is kept after
    /// its last change.
    #[arg(long, env = "CONSENTRY_ORPHAN_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub orphan_retention_days: u32,
    /// Seconds between two sweeps that delete expired orphaned states.
    #[arg(long, env = "CONSENTRY_ORPHAN_SWEEP_INTERVAL_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub orphan_sweep_interval_secs: u32,
    /// Milliseconds between two reads of the catalog from a shared database (PostgreSQL
    /// store only): a key revoked or a limit set by another process takes effect here within
    /// this.
    #[arg(long, env = "CONSENTRY_CATALOG_REFRESH_INTERVAL_MS",
          default_value_t = DEFAULT_CATALOG_REFRESH_INTERVAL.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub catalog_refresh_interval_ms: u64,
    /// `redis://[user:password@]host[:port]` (or `rediss://` for TLS): keep the rate-limit
    /// counters in this Redis, so that every node pointed at it shares one budget per
    /// workspace. Without it, the PostgreSQL store counts in the database (shared too, at a
    /// higher cost) and the embedded store in memory.
    #[arg(long, env = "CONSENTRY_RATE_LIMIT_REDIS")]
    pub rate_limit_redis: Option<String>,
    /// Most connections to PostgreSQL (PostgreSQL store only).
    #[arg(long, env = "CONSENTRY_PG_POOL_SIZE", default_value_t = PostgresOptions::default().pool_size as u32,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pg_pool_size: u32,
    /// Milliseconds a PostgreSQL statement may run before the database cancels it
    /// (PostgreSQL store only).
    #[arg(long, env = "CONSENTRY_PG_STATEMENT_TIMEOUT_MS",
          default_value_t = PostgresOptions::default().statement_timeout.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub pg_statement_timeout_ms: u64,
    /// Most write transactions this process runs on PostgreSQL at once (PostgreSQL store
    /// only). Serializable writes that run together abort each other; past a few, more of them
    /// at once only adds retries.
    #[arg(long, env = "CONSENTRY_PG_MAX_CONCURRENT_WRITES",
          default_value_t = PostgresOptions::default().max_concurrent_writes as u32,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pg_max_concurrent_writes: u32,
    /// Where people reach the unsubscribe and preference pages, as links put it in emails
    /// (`https://consent.example.com`); default: http:// and the listen address.
    #[arg(long, env = "CONSENTRY_PUBLIC_URL", value_parser = crate::domain::links::PublicUrl::parse)]
    pub public_url: Option<crate::domain::links::PublicUrl>,
    /// Requests one client address may make to the public pages per minute.
    #[arg(long, env = "CONSENTRY_PUBLIC_RATE_LIMIT", default_value_t = crate::config::DEFAULT_PUBLIC_RATE_LIMIT,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub public_rate_limit: u32,
    /// Let webhooks go to loopback, private, link-local and metadata addresses, refused
    /// otherwise (a webhook URL could else reach inside the network the server runs in).
    #[arg(long, env = "CONSENTRY_ALLOW_PRIVATE_WEBHOOKS")]
    pub allow_private_webhooks: bool,
    /// Connection limits, failed-authentication limit, log format.
    #[command(flatten)]
    pub serving: crate::serving::ServingArgs,
}

/// Starts the server and blocks until it has shut down.
pub fn run(database: DatabaseLocation, max_groups_per_workspace: usize, args: ServeArgs) -> anyhow::Result<()> {
    crate::serving::logging::init(args.serving.log_format);
    // Before the store or the admin socket exist: every file is private from its creation.
    crate::serving::host::private_files();
    crate::serving::host::raise_file_limit(args.serving.max_connections as usize);
    crate::allocator::return_freed_memory_promptly();
    // Other processes change a shared database's catalog: it is read again at this interval.
    let catalog_refresh_interval = matches!(database, DatabaseLocation::Postgres(_))
        .then(|| Duration::from_millis(args.catalog_refresh_interval_ms));
    let settings = Settings {
        database,
        max_groups_per_workspace,
        listen: args.listen,
        store: StoreOptions {
            embedded: EmbeddedOptions {
                durability: args.durability,
                max_batch: usize::from(args.max_batch),
                cache_bytes: args.cache_mb << 20,
                ..EmbeddedOptions::default()
            },
            postgres: PostgresOptions {
                pool_size: args.pg_pool_size as usize,
                statement_timeout: Duration::from_millis(args.pg_statement_timeout_ms),
                max_concurrent_writes: args.pg_max_concurrent_writes as usize,
            },
        },
        orphan_retention: Retention::new(Duration::from_secs(u64::from(args.orphan_retention_days) * 24 * 3600)),
        orphan_sweep_interval: Duration::from_secs(u64::from(args.orphan_sweep_interval_secs)),
        rate_limit_redis: args.rate_limit_redis,
        allow_private_webhooks: args.allow_private_webhooks,
        catalog_refresh_interval,
        clock: Clock::system(),
        serving: args.serving.options(),
        public_url: args.public_url,
        public_rate_limit: args.public_rate_limit,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        let app = Application::build(settings.clone()).await?;
        if let Some((key, secret)) = app.bootstrap_key() {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "\nCreated workspace \"default\" and an API key with every permission (id {}).\n\
                 This is the only time the key is shown; store it now:\n\n    API key: {secret}\n",
                key.id
            )?;
            out.flush()?;
        }
        tracing::info!(
            address = %app.local_addr(),
            database = %settings.database,
            durability = ?settings.store.embedded.durability,
            "consentry is listening"
        );
        app.run_until(shutdown).await
    });
    if result.as_ref().is_err_and(|err| err.is::<crate::server::StorageFault>()) {
        // Dropping a runtime waits for its blocking tasks (a ledger walk may be on one);
        // after a storage fault the process exits now, as promised.
        runtime.shutdown_timeout(Duration::from_millis(100));
    }
    result
}
