//! The benchmark's one door into the service's store: opening it, and the defaults and settings
//! the ceilings copy. The seeding, the servers and ceiling (c) reach the store only through
//! these functions and the `Store` they return, so that a change of the store's interface is
//! adapted here (and in `consentry::bench_support` for ceiling (b)), not across the benchmark.

use anyhow::Context;
use consentry::store::{DatabaseLocation, EmbeddedOptions, Policy, PostgresOptions, Store, StoreOptions};

/// The store at `location` with the server's default options, as `consentry serve` opens it.
pub async fn open(location: &DatabaseLocation) -> anyhow::Result<Store> {
    Store::open(location, &StoreOptions::default(), &Policy::default()).await.context("cannot open the store")
}

/// The PostgreSQL store at `url` with a pool of `pool_size` connections running at most
/// `writers` write transactions at once (`--pg-pool-size`, `--pg-max-concurrent-writes`).
pub async fn open_postgres(url: &str, pool_size: usize, writers: usize) -> anyhow::Result<Store> {
    let options = StoreOptions {
        postgres: PostgresOptions { pool_size, max_concurrent_writes: writers, ..PostgresOptions::default() },
        ..StoreOptions::default()
    };
    Store::open(&DatabaseLocation::Postgres(url.to_string()), &options, &Policy::default())
        .await
        .context("cannot open the PostgreSQL store")
}

/// The server's default connection pool per node (`--pg-pool-size`).
pub fn default_pg_pool_size() -> u32 {
    PostgresOptions::default().pool_size as u32
}

/// The server's default write transactions at once per node (`--pg-max-concurrent-writes`).
pub fn default_pg_writers() -> u32 {
    PostgresOptions::default().max_concurrent_writes as u32
}

/// The embedded store's default block cache, in bytes.
pub fn embedded_cache_bytes() -> u64 {
    EmbeddedOptions::default().cache_bytes
}
