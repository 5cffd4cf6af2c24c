//! Seeds a fresh store (embedded, or an empty PostgreSQL database) in-process through the
//! library: the `default` workspace and its all-permission key, the groups, and the profiles
//! (`user-{n}`, `user{n}@example.com`, a valid E.164 phone), loaded with the store's own bulk
//! import. The store is closed and dropped before returning, so the server process can take its
//! lock. The workspace's `set` and `get`
//! rate limits are raised far above what the load can reach, so the benchmark measures the
//! store, not the limiter's refusals.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use consentry::admin::{self, AdminRequest};
use consentry::catalog::Catalog;
use consentry::domain::identifiers::{Email, ExternalId, Phone};
use consentry::domain::ids::{ApiKeyId, GroupId, WorkspaceId};
use consentry::domain::rate_limit::Bucket;
use consentry::domain::subscription::Channel;
use consentry::domain::time::Clock;
use consentry::store::{DatabaseLocation, ProfileImport};

/// The benchmark workspace's `set` and `get` limits per minute. The defaults (Braze's 5,000
/// writes a minute, 250,000 reads an hour) are what the closed-loop phases spend in seconds,
/// after which every request would be a cheap 429 and the figures would measure nothing of the
/// store.
const LIMIT_PER_MINUTE: u64 = 1_000_000_000;

/// What [`seed`] does to the rate limits, for the report.
pub const RATE_LIMITS: &str = "set and get raised to 1,000,000,000 a minute (workspaces set-limit)";

/// Profiles per import call.
const CHUNK: u64 = 10_000;

/// What the benchmark needs to know about a seeded store.
pub struct Seeded {
    /// The all-permission key of workspace `default`.
    pub key: String,
    /// That key's id (what change records name as their source).
    pub key_id: ApiKeyId,
    /// Workspace `default`.
    pub workspace: WorkspaceId,
    /// The group ids, as clients send them.
    pub groups: Vec<String>,
    /// The same group ids, typed.
    pub group_ids: Vec<GroupId>,
    /// The channel of every group, in order.
    pub channels: Vec<Channel>,
    /// Time spent importing profiles.
    pub import_time: Duration,
}

/// The channel of group number `i`: half email, a quarter SMS, a quarter WhatsApp. The
/// benchmark's requests name external ids, which every channel takes.
fn channel(i: usize) -> Channel {
    match i % 4 {
        0 | 1 => Channel::Email,
        2 => Channel::Sms,
        _ => Channel::Whatsapp,
    }
}

/// The external id of profile `n`.
pub fn external_id(n: u64) -> String {
    format!("user-{n}")
}

/// The email of profile `n`.
pub fn email(n: u64) -> String {
    format!("user{n}@example.com")
}

/// The phone of profile `n`: a valid North American number (the exchange must not start with
/// 0 or 1), one area code per 8,000,000 profiles.
pub fn phone(n: u64) -> String {
    format!("+1{}{:07}", 415 + n / 8_000_000, 2_000_000 + n % 8_000_000)
}

/// Creates the catalog and imports `profiles` profiles into a new store at `location` (an
/// empty directory, or an empty PostgreSQL database).
pub async fn seed(location: &DatabaseLocation, profiles: u64, groups: usize) -> anyhow::Result<Seeded> {
    let store = crate::service::open(location).await?;
    let catalog = Catalog::load(store.clone(), Clock::system()).await.context("cannot load the catalog")?;
    let (api_key, key) =
        catalog.bootstrap().await?.ok_or_else(|| anyhow!("the fresh store already had a workspace"))?;
    // Through the same admin command as `consentry workspaces set-limit default set …`.
    for bucket in [Bucket::Set, Bucket::Get] {
        let request = AdminRequest::WorkspacesSetLimit {
            workspace: consentry::catalog::DEFAULT_WORKSPACE.into(),
            bucket,
            requests: LIMIT_PER_MINUTE,
            window_seconds: Some(60),
        };
        admin::execute(&catalog, &request).await?;
    }
    let mut ids = Vec::with_capacity(groups);
    let mut group_ids = Vec::with_capacity(groups);
    let mut channels = Vec::with_capacity(groups);
    for i in 0..groups {
        let group =
            catalog.create_group(consentry::catalog::DEFAULT_WORKSPACE, &format!("g{i:02}"), channel(i)).await?;
        ids.push(group.id.to_string());
        group_ids.push(group.id);
        channels.push(group.channel);
    }
    let workspace = catalog
        .workspaces()
        .into_iter()
        .find(|w| w.name == consentry::catalog::DEFAULT_WORKSPACE)
        .ok_or_else(|| anyhow!("no default workspace after bootstrap"))?
        .id;

    let start = Instant::now();
    let mut last_report = start;
    let mut next = 0;
    while next < profiles {
        let end = (next + CHUNK).min(profiles);
        let chunk = (next..end)
            .map(|n| -> anyhow::Result<ProfileImport> {
                Ok(ProfileImport {
                    external_id: ExternalId::parse(&external_id(n))?,
                    email: Some(Email::parse(&email(n))?),
                    phone: Some(Phone::parse(&phone(n))?),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let applied = store.import_profiles(workspace, chunk).await?;
        anyhow::ensure!(
            applied.profiles_created as u64 == end - next,
            "the import created {} profiles instead of {}",
            applied.profiles_created,
            end - next
        );
        next = end;
        if last_report.elapsed() >= Duration::from_secs(5) || next == profiles {
            last_report = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            eprintln!("  seeded {next} / {profiles} profiles ({:.0} profiles/s)", next as f64 / secs);
        }
    }
    let import_time = start.elapsed();
    store.close().await;
    drop(catalog);
    drop(store);
    Ok(Seeded { key, key_id: api_key.id, workspace, groups: ids, group_ids, channels, import_time })
}
