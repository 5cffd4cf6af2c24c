//! The service's internals that the benchmark's ceiling (b) reuses, in one place: the embedded
//! store's keyspace settings and its record encoding, so that the ceiling writes the same bytes
//! into keyspaces configured as the store's and measures what the store's writer could do at
//! best. Not part of the library's interface: hidden from its documentation and free to change
//! with the store; the benchmark (bench/) is its only user.

pub use crate::store::embedded::codec::{
    change_by_profile_key, change_key, contact_key, encode_change, profile_id_key, profile_key, ProfileRecord,
};

/// Every keyspace of the embedded store with its memtable size in MiB.
pub const KEYSPACES: [(&str, u64); 15] = crate::store::embedded::KEYSPACES;

/// The options the embedded store creates a keyspace with, for a memtable of `memtable_mib` MiB.
pub fn keyspace_options(memtable_mib: u64) -> fjall::KeyspaceCreateOptions {
    crate::store::embedded::keyspace_options(memtable_mib)
}

/// `consentry ledger verify` of every workspace on the store at `location` (which no server
/// holds): the records checked, and whether every chain held.
pub async fn ledger_verify(location: &crate::store::DatabaseLocation) -> Result<(u64, bool), String> {
    use crate::store::{Policy, Store, StoreOptions};
    let store = Store::open(location, &StoreOptions::default(), &Policy::default()).await.map_err(|e| e.to_string())?;
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let check = store.verify_ledger(None, progress).await.map_err(|e| e.to_string());
    store.close().await;
    let check = check?;
    Ok((check.records, check.first_bad.is_none()))
}

/// `consentry ledger export --workspace WORKSPACE --format jsonl` from the store at `location`
/// (which no server holds), the lines written to `out`, page by page as the command does:
/// the records written.
pub async fn ledger_export(
    location: &crate::store::DatabaseLocation,
    workspace: &str,
    out: &mut impl std::io::Write,
) -> Result<u64, String> {
    use crate::admin::export::{self, ExportFormat, ExportRequest};
    use crate::store::{Policy, Store, StoreOptions};
    let store = Store::open(location, &StoreOptions::default(), &Policy::default()).await.map_err(|e| e.to_string())?;
    let result = async {
        let catalog = crate::catalog::Catalog::load(store.clone(), crate::domain::time::Clock::system())
            .await
            .map_err(|e| e.to_string())?;
        let mut request = ExportRequest {
            workspace: workspace.to_string(),
            external_id: None,
            email: None,
            phone: None,
            since: None,
            until: None,
            after: None,
            format: ExportFormat::Jsonl,
        };
        let mut written = 0;
        loop {
            let page = export::page(&store, &catalog, &request).await?;
            out.write_all(page.text.as_bytes()).map_err(|e| e.to_string())?;
            written += page.records as u64;
            request.after = page.next;
            if request.after.is_none() {
                return Ok(written);
            }
        }
    }
    .await;
    store.close().await;
    result
}

/// The time the writer's sealing of one record takes (`ledger::seal`: its canonical encoding
/// and SHA-256, and the move of its chain's head), averaged over `n` records shaped like the
/// benchmark's (a profile's change in a group, made through the V2 endpoint with a key). The
/// same function both stores call in the write path, here alone, so that its share of a
/// request can be set against the request's time measured in the same run.
pub fn seal_time(n: usize) -> std::time::Duration {
    use crate::domain::change::{ChangeRecord, Endpoint, Source, Subject, Trace};
    use crate::domain::ids::{ApiKeyId, ChangeId, GroupId, ProfileId, RequestId, WorkspaceId};
    use crate::domain::ledger::{self, ChainGroup, ChainHash, ChainHead};
    use crate::domain::subscription::SubscriptionState;
    let (workspace_id, group_id, key) = (WorkspaceId::generate(), GroupId::generate(), ApiKeyId::generate());
    let mut records: Vec<ChangeRecord> = (0..n.max(1))
        .map(|i| ChangeRecord {
            id: ChangeId::generate(),
            at: crate::domain::time::Timestamp(1_767_225_600_000_000 + i as i64),
            workspace_id,
            group: ChainGroup::Group(group_id),
            subject: Subject::Profile(ProfileId::generate()),
            old: Some(SubscriptionState::Unsubscribed),
            new: SubscriptionState::Subscribed,
            kind: Source::Api,
            trace: Trace {
                api_key_id: Some(key),
                endpoint: Some(Endpoint::V2StatusSet),
                request_id: Some(RequestId::generate()),
            },
            use_double_opt_in_logic: false,
            actor: None,
            seq: 0,
            previous_hash: ChainHash::ZERO,
            hash: ChainHash::ZERO,
        })
        .collect();
    let mut heads = vec![ChainHead::default(); records.len()];
    let started = std::time::Instant::now();
    for (record, head) in records.iter_mut().zip(heads.iter_mut()) {
        ledger::seal(std::hint::black_box(record), head);
    }
    let elapsed = started.elapsed();
    std::hint::black_box(&records);
    elapsed / records.len() as u32
}
