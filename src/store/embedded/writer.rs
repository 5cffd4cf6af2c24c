//! The single writer: takes queued write requests, applies up to `max_batch` of them to one
//! [`Overlay`], commits the batch with one fsync, then answers each request.
//!
//! One writer makes every read-modify-write serial without locks, and group commit spreads one
//! fsync over many requests. Reads never go through here: the engine serves them concurrently
//! and sees a batch only once it is durable.
//!
//! A commit that fails is a storage fault (a failed journal write or fsync, after which the
//! engine is poisoned and refuses every later write): the writer answers the batch and whatever
//! is queued with an error, stops, and raises the store's [`Fault`] so that the server exits
//! and a restart replays the journal (crash-only; see `crate::server`). After a failed fsync
//! nothing the kernel says about the file can be trusted, so retrying in place is not an option.
//! A fault met outside the writer poisons the engine too; [`watch`] finds it without a write.

use std::collections::HashMap;

use std::sync::atomic::AtomicU64;

use fjall::PersistMode;
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, ProfileRecord};
use super::overlay::{Overlay, Table};
use super::prefetch::{Prefetch, RecentWrites};
use super::Tables;
use crate::domain::change::{ChangeRecord, Contact, Subject};
use crate::domain::delete::{self, DeleteKnown, FoundProfile};
use crate::domain::email;
use crate::domain::identifiers::ExternalId;
use crate::domain::ids::{ChangeId, ProfileId, WorkspaceId};
use crate::domain::ledger::{self, Anchor, ChainHead, ChainKey};
use crate::domain::plan::{self, Known, Origin, WriteContext};
use crate::domain::retention::Retention;
use crate::domain::set_status::SetStatusCommand;
use crate::domain::subscription::StateView;
use crate::domain::time::{MonotonicClock, Timestamp};
use crate::domain::track::{self, ProfileSnapshot, TrackCommand, TrackKnown};
use crate::store::{Applied, Durability, Policy, ProfileImport, StoreError};

/// A write waiting for the writer.
pub struct Job {
    /// What to write.
    pub op: Op,
    /// Where to answer, once the batch holding it is durable.
    pub reply: oneshot::Sender<Result<Applied, StoreError>>,
}

/// The writes the writer knows how to apply.
pub enum Op {
    /// A validated set request, with its profiles read ahead.
    SetStatus(Origin, SetStatusCommand, Prefetch),
    /// A bulk load of profiles.
    Import(WorkspaceId, Vec<ProfileImport>),
    /// A validated `/users/track` request.
    Track(Origin, TrackCommand),
    /// Profiles to delete.
    Delete(WorkspaceId, Vec<ExternalId>),
    /// `orphans` keys found expired by a sweep, to delete if still expired when applied.
    ExpireOrphans(Vec<Vec<u8>>),
    /// Ledger retention: chains to cut through these `seq`s, found by a scan.
    ExpireLedger(Vec<(ChainKey, u64)>),
}

/// Raised once, by the writer, when a commit fails: the store takes no more writes.
#[derive(Debug)]
pub struct Fault(tokio::sync::watch::Sender<bool>);

impl Default for Fault {
    fn default() -> Self {
        Fault(tokio::sync::watch::channel(false).0)
    }
}

impl Fault {
    /// Whether the store has had a storage fault.
    pub fn raised(&self) -> bool {
        *self.0.borrow()
    }

    pub(crate) fn raise(&self) {
        self.0.send_replace(true);
    }

    /// Completes when the fault is raised (at once if it has been).
    pub async fn wait(&self) {
        let mut raised = self.0.subscribe();
        // The sender lives as long as `self`, so the wait can only end by the fault.
        let _ = raised.wait_for(|raised| *raised).await;
    }
}

/// How often [`watch`] probes the engine.
pub const PROBE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Probes the engine every [`PROBE_EVERY`] until the store is dropped or the fault is raised.
/// fjall poisons itself when any write fails, also one outside the writer (the change stream's,
/// the catalog's) or a background flush; with no request coming to the writer, the server would
/// not notice until the next one.
pub(super) fn watch(tables: std::sync::Weak<Tables>, fault: &Fault) {
    loop {
        std::thread::sleep(PROBE_EVERY);
        let Some(tables) = tables.upgrade() else { return };
        if fault.raised() {
            return;
        }
        // Hands the journal's buffer to the OS: cheap, nothing when it is empty, and refused
        // with `Poisoned` once the engine is.
        if let Err(err) = tables.db.persist(PersistMode::Buffer).and_then(|()| injected_poison()) {
            tracing::error!(
                error = %crate::store::report(&err),
                "storage fault: the engine refuses writes; the server exits, so that a restart replays the journal"
            );
            fault.raise();
            return;
        }
    }
}

/// How the writer commits, and the clock and retention it applies.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Commit durability.
    pub durability: Durability,
    /// Most requests in one batch.
    pub max_batch: usize,
    /// The writer's time and how long orphaned states live.
    pub policy: Policy,
}

/// Runs the writer until every sender is dropped and the queue is empty, or until a commit
/// fails (then it raises `fault`; see the module documentation).
/// After each commit it publishes the number of committed batches in `epoch` (see
/// [`super::prefetch`]).
pub fn run(tables: &Tables, mut queue: mpsc::Receiver<Job>, epoch: &AtomicU64, config: &WriterConfig, fault: &Fault) {
    let WriterConfig { durability, max_batch, policy } = config;
    let (durability, max_batch, retention) = (*durability, *max_batch, policy.retention);
    let mode = match durability {
        Durability::Sync => PersistMode::SyncAll,
        Durability::Buffered => PersistMode::Buffer,
    };
    let mut jobs = Vec::with_capacity(max_batch);
    let mut results = Vec::with_capacity(max_batch);
    let mut clock = MonotonicClock::new(policy.clock.clone());
    let mut recent = RecentWrites::default();
    let mut batches = 0u64;
    while let Some(first) = queue.blocking_recv() {
        jobs.push(first);
        while jobs.len() < max_batch {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut overlay = Overlay::new(tables);
        for job in &mut jobs {
            // A job that fails has written nothing into the overlay (every job reads all it
            // needs before its first write), so the rest of the batch is unaffected.
            let at = clock.now();
            let reads = Reads { prefetch: None, recent: &recent, retention, at };
            results.push(apply(&mut overlay, reads, &mut job.op, at));
        }
        let written: Vec<Vec<u8>> = overlay.keys(Table::Profiles).map(<[u8]>::to_vec).collect();
        let (wrote, commit_started) = (!overlay.is_empty(), std::time::Instant::now());
        let committed = overlay.commit(mode).and_then(|()| injected_fault(wrote)).map_err(std::sync::Arc::new);
        if wrote {
            crate::telemetry::commit(commit_started.elapsed(), committed.is_ok(), Some(jobs.len()));
        }
        if committed.is_ok() {
            if wrote {
                // The relay delivers what the commit made deliverable now, not at its next poll.
                tables.stream_wake.notify_one();
            }
            batches += 1;
            recent.record(batches, written.iter().map(Vec::as_slice), epoch);
        }
        for (job, result) in jobs.drain(..).zip(results.drain(..)) {
            let answer = match &committed {
                Ok(()) => result,
                Err(err) => Err(StoreError::Commit(std::sync::Arc::clone(err))),
            };
            // The caller may have gone away (client disconnected); the write stands regardless.
            let _ = job.reply.send(answer);
        }
        if let Err(err) = committed {
            tracing::error!(
                error = %crate::store::report(&*err),
                "storage fault: a commit failed; the store takes no more writes and the server exits, \
                 so that a restart replays the journal"
            );
            fault.raise();
            // Requests already queued are refused rather than left waiting for a writer that
            // is gone: they were never applied, and a client may retry them after the restart.
            queue.close();
            while let Some(job) = queue.blocking_recv() {
                let _ = job.reply.send(Err(StoreError::ShuttingDown));
            }
            return;
        }
    }
}

/// A failed fsync on demand, for the tests of crash-only behaviour: compiled only with the
/// `failpoints` feature, which only the test build enables. While the file named by
/// `CONSENTRY_FAILPOINT_FSYNC` exists, a batch that wrote is committed to the journal
/// unsynced and then reported as failed, which is what a failed fsync leaves behind: a batch
/// that may or may not be on disk, whose requests were never acknowledged.
#[cfg(feature = "failpoints")]
fn injected_fault(wrote: bool) -> Result<(), fjall::Error> {
    let armed = std::env::var_os("CONSENTRY_FAILPOINT_FSYNC").is_some_and(|path| std::path::Path::new(&path).exists());
    if wrote && armed {
        return Err(fjall::Error::Io(std::io::Error::other("injected fsync failure (CONSENTRY_FAILPOINT_FSYNC)")));
    }
    Ok(())
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
fn injected_fault(_wrote: bool) -> Result<(), fjall::Error> {
    Ok(())
}

/// A poisoned engine on demand (see [`injected_fault`]): while the file named by
/// `CONSENTRY_FAILPOINT_POISON` exists, [`watch`]'s probe fails as on a poisoned engine.
#[cfg(feature = "failpoints")]
fn injected_poison() -> Result<(), fjall::Error> {
    let armed = std::env::var_os("CONSENTRY_FAILPOINT_POISON").is_some_and(|path| std::path::Path::new(&path).exists());
    if armed {
        return Err(fjall::Error::Poisoned);
    }
    Ok(())
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
fn injected_poison() -> Result<(), fjall::Error> {
    Ok(())
}

fn apply(overlay: &mut Overlay<'_>, reads: Reads<'_>, op: &mut Op, at: Timestamp) -> Result<Applied, StoreError> {
    match op {
        Op::SetStatus(origin, command, prefetch) => {
            let ctx = origin.at(at);
            set_status(overlay, &ctx, command, Reads { prefetch: Some(prefetch), ..reads })
        }
        Op::Import(ws, profiles) => import(overlay, *ws, profiles),
        Op::Track(origin, command) => {
            let ctx = origin.at(at);
            track(overlay, &ctx, command, reads)
        }
        Op::Delete(ws, external_ids) => delete(overlay, *ws, external_ids, at),
        Op::ExpireOrphans(keys) => expire_orphans(overlay, keys, reads.retention, at),
        Op::ExpireLedger(cuts) => expire_ledger(overlay, cuts),
    }
}

/// What a request reads through: its read-ahead (set requests only), what the writer knows to
/// check it against, and the time before which orphaned states have expired.
struct Reads<'a> {
    prefetch: Option<&'a mut Prefetch>,
    recent: &'a RecentWrites,
    /// How long orphaned states live, and the time the request is applied at.
    retention: Retention,
    at: Timestamp,
}

/// Profiles read for one request, with the key they are stored under.
struct Loaded<'a> {
    records: HashMap<ProfileId, (Vec<u8>, ProfileRecord)>,
    reads: Reads<'a>,
}

impl Loaded<'_> {
    /// The profile stored under `key` as the batch so far left it: the batch's own write if it
    /// has one, else the prefetched record if still current, else a fresh read.
    fn load(&mut self, overlay: &Overlay<'_>, key: Vec<u8>) -> Result<Option<ProfileId>, StoreError> {
        let record = match overlay.pending(Table::Profiles, &key) {
            Some(pending) => pending.map(|bytes| ProfileRecord::decode(&bytes)).transpose()?,
            None => match self.reads.prefetch.as_mut().and_then(|p| p.take(&key, self.reads.recent)) {
                Some(prefetched) => prefetched,
                None => overlay.get(Table::Profiles, &key)?.map(|bytes| ProfileRecord::decode(&bytes)).transpose()?,
            },
        };
        Ok(record.map(|record| {
            let id = record.id;
            self.records.entry(id).or_insert((key, record));
            id
        }))
    }
}

fn set_status(
    overlay: &mut Overlay<'_>,
    ctx: &WriteContext,
    command: &SetStatusCommand,
    reads: Reads<'_>,
) -> Result<Applied, StoreError> {
    let ws = ctx.workspace_id;
    let lookups = command.lookups();
    let mut loaded = Loaded { records: HashMap::with_capacity(lookups.external_ids.len()), reads };
    let mut known = Known::default();

    for external_id in &lookups.external_ids {
        if let Some(id) = loaded.load(overlay, codec::profile_key(ws, external_id.as_str()))? {
            known.profiles_by_external_id.insert(external_id.clone(), id);
        }
    }
    for contact in &lookups.contacts {
        let table = contact_table(contact);
        let mut carriers = Vec::new();
        for (key, external_id) in overlay.prefix(table, &codec::contact_prefix(ws, contact.as_str()))? {
            let expected = codec::contact_key_profile(&key)?;
            let external_id = std::str::from_utf8(&external_id).map_err(|_| StoreError::Corrupt {
                what: "contact index",
                detail: "external id is not UTF-8".into(),
            })?;
            match loaded.load(overlay, codec::profile_key(ws, external_id))? {
                Some(id) if id == expected => carriers.push(id),
                _ => {
                    return Err(StoreError::Corrupt {
                        what: "contact index",
                        detail: format!("entry points at a missing profile {expected}"),
                    })
                }
            }
        }
        if carriers.is_empty() {
            for (key, value) in overlay.prefix(Table::Orphans, &codec::orphan_prefix(ws, contact))? {
                let group = codec::orphan_key_group(&key)?;
                let (state, updated_at, id) = codec::decode_orphan_with_id(&value)?;
                known.orphan_ids.insert(contact.clone(), id);
                if lookups.groups.contains(&group) && loaded.reads.retention.is_live(updated_at, loaded.reads.at) {
                    known.orphan_states.insert((contact.clone(), group), state);
                }
            }
        } else {
            known.carriers.insert(contact.clone(), carriers);
        }
    }
    for (id, (_, record)) in &loaded.records {
        for &group in &lookups.groups {
            if let Some(state) = record.state(group) {
                known.states.insert((*id, group), state);
            }
        }
    }

    let mut plan = plan::plan_set_status(command, known, ctx);
    write_unsubscribes(overlay, ws, &plan.unsubscribes)?;

    for new in &plan.new_profiles {
        let key = codec::profile_key(ws, new.external_id.as_str());
        overlay.put(Table::ProfileIds, codec::profile_id_key(ws, new.id), new.external_id.as_str().as_bytes().to_vec());
        loaded.records.insert(new.id, (key, ProfileRecord::new(new.id)));
    }
    let mut dirty = Vec::new();
    for &(profile, group, state) in &plan.profile_states {
        let (_, record) =
            loaded.records.get_mut(&profile).expect("the plan only names profiles it was given or created");
        record.set_state(group, state, ctx.at);
        if !dirty.contains(&profile) {
            dirty.push(profile);
        }
    }
    for new in &plan.new_profiles {
        if !dirty.contains(&new.id) {
            dirty.push(new.id);
        }
    }
    for profile in dirty {
        let (key, record) = &loaded.records[&profile];
        overlay.put(Table::Profiles, key.clone(), record.encode());
    }
    for (contact, id, group, state) in &plan.orphan_states {
        overlay.put(Table::Orphans, codec::orphan_key(ws, contact, *group), codec::encode_orphan(*state, ctx.at, *id));
    }
    write_changes(overlay, ws, &mut plan.changes)?;
    Ok(Applied { profiles_created: plan.new_profiles.len(), changes: plan.changes.len(), ..Applied::default() })
}

/// Seals change records into their chains and stores them with their index entries and the
/// chains' new heads. The head is read through the overlay, so a chain that an earlier request
/// of the batch extended continues from that request's record: no scan, no gap.
fn write_changes(overlay: &mut Overlay<'_>, ws: WorkspaceId, changes: &mut [ChangeRecord]) -> Result<(), StoreError> {
    for change in changes {
        let chain = change.chain();
        let head_key = codec::chain_key(&chain);
        let mut head = match overlay.get(Table::ChainHeads, &head_key)? {
            Some(bytes) => codec::decode_head(&bytes)?,
            None => ChainHead::default(),
        };
        ledger::seal(change, &mut head);
        overlay.put(Table::ChainHeads, head_key, codec::encode_head(&head));
        overlay.put(Table::ChainRecords, codec::chain_record_key(&chain, change.seq), change.id.as_bytes().to_vec());
        overlay.put(Table::Changes, codec::change_key(ws, change.id), codec::encode_change(change));
        // Deliverable in the same commit as the change (see `crate::stream`).
        let position = overlay.tables().outbox_next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        overlay.put(
            Table::Outbox,
            position.to_be_bytes().to_vec(),
            crate::stream::outbox::entry(ws, change.id).to_vec(),
        );
        match &change.subject {
            Subject::Profile(profile) => {
                overlay.put(Table::ChangesByProfile, codec::change_by_profile_key(ws, *profile, change.id), Vec::new())
            }
            Subject::Orphan(_, contact) => {
                overlay.put(Table::ChangesByContact, codec::change_by_contact_key(ws, contact, change.id), Vec::new())
            }
            Subject::Erased(_) => {}
        }
    }
    Ok(())
}

/// Moves emails in the unsubscribe index (see [`email::UnsubscribeUpdate`]): every entry is
/// read before the first write, so a failed read leaves the overlay untouched.
fn write_unsubscribes(
    overlay: &mut Overlay<'_>,
    ws: WorkspaceId,
    updates: &[email::UnsubscribeUpdate],
) -> Result<(), StoreError> {
    let mut current = Vec::with_capacity(updates.len());
    for update in updates {
        let key = codec::unsubscribe_email_key(ws, update.email.as_str());
        let at = overlay
            .get(Table::EmailUnsubscribes, &key)?
            .map(|bytes| codec::decode_unsubscribed_at(&bytes))
            .transpose()?;
        current.push((key, at));
    }
    for (update, (key, old)) in updates.iter().zip(current) {
        if let Some(old) = old {
            overlay.delete(Table::EmailUnsubscribes, codec::unsubscribe_time_key(ws, old, update.email.as_str()));
        }
        match update.at {
            Some(at) => {
                overlay.put(Table::EmailUnsubscribes, key, at.0.to_be_bytes().to_vec());
                overlay.put(
                    Table::EmailUnsubscribes,
                    codec::unsubscribe_time_key(ws, at, update.email.as_str()),
                    Vec::new(),
                );
            }
            None => overlay.delete(Table::EmailUnsubscribes, key),
        }
    }
    Ok(())
}

fn track(
    overlay: &mut Overlay<'_>,
    ctx: &WriteContext,
    command: &TrackCommand,
    reads: Reads<'_>,
) -> Result<Applied, StoreError> {
    let ws = ctx.workspace_id;
    let (retention, at) = (reads.retention, reads.at);
    let mut loaded = Loaded { records: HashMap::new(), reads };
    let mut known = TrackKnown::default();
    for external_id in command.external_ids() {
        if let Some(id) = loaded.load(overlay, codec::profile_key(ws, external_id.as_str()))? {
            let (_, record) = &loaded.records[&id];
            let snapshot = ProfileSnapshot {
                id,
                email: record.email.clone(),
                phone: record.phone.clone(),
                states: record.states.clone(),
            };
            known.profiles.insert(external_id.clone(), snapshot);
        }
    }
    // Keys are collected now so that nothing is read after the first write (see `run`).
    let mut orphan_keys = HashMap::new();
    for contact in command.contacts_set() {
        if !overlay.prefix(contact_table(&contact), &codec::contact_prefix(ws, contact.as_str()))?.is_empty() {
            continue;
        }
        let stored = overlay.prefix(Table::Orphans, &codec::orphan_prefix(ws, &contact))?;
        if stored.is_empty() {
            continue;
        }
        let mut live = Vec::new();
        for (key, value) in &stored {
            let (state, updated_at) = codec::decode_orphan(value)?;
            if retention.is_live(updated_at, at) {
                live.push(StateView { group_id: codec::orphan_key_group(key)?, state, updated_at });
            }
        }
        // Expired states are handed over too (as nothing), so that they move out with the rest.
        known.orphans.insert(contact.clone(), live);
        orphan_keys.insert(contact, stored.into_iter().map(|(key, _)| key.to_vec()).collect::<Vec<_>>());
    }

    let mut plan = track::plan_track(command, known, ctx);
    write_unsubscribes(overlay, ws, &plan.unsubscribes)?;

    let mut created = 0;
    for tracked in &plan.profiles {
        let after = &tracked.after;
        let external_id = tracked.external_id.as_str();
        let (old_email, old_phone) = match &tracked.before {
            Some(before) => (before.email.as_deref(), before.phone.as_deref()),
            None => {
                created += 1;
                overlay.put(Table::ProfileIds, codec::profile_id_key(ws, after.id), external_id.as_bytes().to_vec());
                (None, None)
            }
        };
        reindex(overlay, ws, external_id, after.id, old_email, after.email.as_deref(), Table::Emails);
        reindex(overlay, ws, external_id, after.id, old_phone, after.phone.as_deref(), Table::Phones);
        let mut record = ProfileRecord::new(after.id);
        record.email = after.email.clone();
        record.phone = after.phone.clone();
        record.states = after.states.clone();
        record.states.sort_by_key(|s| s.group_id);
        overlay.put(Table::Profiles, codec::profile_key(ws, external_id), record.encode());
    }
    let mut orphans_deleted = 0;
    for contact in &plan.orphans_moved {
        for key in orphan_keys.remove(contact).unwrap_or_default() {
            overlay.delete(Table::Orphans, key);
            orphans_deleted += 1;
        }
    }
    write_changes(overlay, ws, &mut plan.changes)?;
    Ok(Applied {
        profiles_created: created,
        changes: plan.changes.len(),
        profiles_deleted: 0,
        orphans_deleted,
        records_expired: 0,
    })
}

fn delete(
    overlay: &mut Overlay<'_>,
    ws: WorkspaceId,
    external_ids: &[ExternalId],
    at: Timestamp,
) -> Result<Applied, StoreError> {
    let mut known = DeleteKnown::default();
    for external_id in external_ids {
        if known.profiles.contains_key(external_id) {
            continue;
        }
        if let Some(bytes) = overlay.get(Table::Profiles, &codec::profile_key(ws, external_id.as_str()))? {
            let record = ProfileRecord::decode(&bytes)?;
            let found = FoundProfile::from_stored(record.id, record.email.as_deref(), record.phone.as_deref())
                .map_err(|e| StoreError::Corrupt { what: "profile", detail: format!("stored identifier: {e}") })?;
            known.profiles.insert(external_id.clone(), found);
        }
    }
    for contact in known.contacts() {
        let mut carriers = Vec::new();
        for (key, _) in overlay.prefix(contact_table(&contact), &codec::contact_prefix(ws, contact.as_str()))? {
            carriers.push(codec::contact_key_profile(&key)?);
        }
        known.carriers.insert(contact, carriers);
    }

    let plan = delete::plan_delete(external_ids, known);

    // Everything is read before the first write (see `run`).
    let mut orphan_keys = Vec::new();
    let mut erased = Vec::new();
    let mut erased_index = Vec::new();
    for contact in &plan.released {
        let prefix = codec::orphan_prefix(ws, contact);
        for (key, _) in overlay.prefix(Table::Orphans, &prefix)? {
            orphan_keys.push(key.to_vec());
        }
        for (index_key, _) in overlay.prefix(Table::ChangesByContact, &prefix)? {
            let key = codec::change_key(ws, codec::change_by_contact_id(&index_key)?);
            if let Some(bytes) = overlay.get(Table::Changes, &key)? {
                let mut record = codec::decode_change(&key, &bytes)?;
                if plan.erase(&mut record) {
                    erased.push((key, codec::encode_change(&record)));
                }
            }
            erased_index.push(index_key.to_vec());
        }
    }

    // The person behind a change through a page is personal data too: the deleted profiles'
    // records keep the change and lose the actor.
    for deleted in &plan.profiles {
        for (index_key, _) in overlay.prefix(Table::ChangesByProfile, &codec::profile_id_key(ws, deleted.profile.id))? {
            let key = codec::change_key(ws, codec::change_by_contact_id(&index_key)?);
            if let Some(bytes) = overlay.get(Table::Changes, &key)? {
                let mut change = codec::decode_change(&key, &bytes)?;
                if delete::erase_actor(&mut change) {
                    erased.push((key, codec::encode_change(&change)));
                }
            }
        }
    }

    write_unsubscribes(overlay, ws, &email::released(&plan.released))?;
    for deleted in &plan.profiles {
        let id = deleted.profile.id;
        overlay.delete(Table::Profiles, codec::profile_key(ws, deleted.external_id.as_str()));
        overlay.delete(Table::ProfileIds, codec::profile_id_key(ws, id));
        for contact in &deleted.profile.contacts {
            overlay.delete(contact_table(contact), codec::contact_key(ws, contact.as_str(), id));
        }
    }
    let orphans_deleted = orphan_keys.len();
    for key in orphan_keys {
        overlay.delete(Table::Orphans, key);
    }
    for (key, record) in erased {
        overlay.put(Table::Changes, key, record);
    }
    for key in erased_index {
        overlay.delete(Table::ChangesByContact, key);
    }
    // Deliverable in the same commit as the deletion (see `crate::stream`).
    for deletion in crate::domain::events::deletions(&plan.profile_ids(), at) {
        let position = overlay.tables().outbox_next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        overlay.put(
            Table::Outbox,
            position.to_be_bytes().to_vec(),
            crate::stream::outbox::deletion_entry(ws, &deletion).to_vec(),
        );
    }
    Ok(Applied { profiles_deleted: plan.profiles.len(), orphans_deleted, ..Applied::default() })
}

fn expire_orphans(
    overlay: &mut Overlay<'_>,
    keys: &[Vec<u8>],
    retention: Retention,
    now: Timestamp,
) -> Result<Applied, StoreError> {
    let mut expired = Vec::new();
    for key in keys {
        // Checked again here: the state may have changed since the sweep read it.
        if let Some(value) = overlay.get(Table::Orphans, key)? {
            if !retention.is_live(codec::decode_orphan(&value)?.1, now) {
                expired.push(key.clone());
            }
        }
    }
    let orphans_deleted = expired.len();
    for key in expired {
        overlay.delete(Table::Orphans, key);
    }
    Ok(Applied { orphans_deleted, ..Applied::default() })
}

/// Deletes each chain's records from just after its anchor through the `seq` the scan found,
/// and makes the last one deleted the chain's anchor. Checked again against the head: the scan
/// never cuts the latest record, but the head is read here, where writes are serialized.
fn expire_ledger(overlay: &mut Overlay<'_>, cuts: &[(ChainKey, u64)]) -> Result<Applied, StoreError> {
    let mut deletes = Vec::new();
    let mut heads = Vec::new();
    for (chain, through) in cuts {
        let head_key = codec::chain_key(chain);
        let Some(bytes) = overlay.get(Table::ChainHeads, &head_key)? else { continue };
        let mut head = codec::decode_head(&bytes)?;
        if *through >= head.seq || *through <= head.anchor.seq {
            continue;
        }
        let mut chain_deletes = Vec::new();
        for seq in head.anchor.seq + 1..=*through {
            let record_key = codec::chain_record_key(chain, seq);
            let Some(id) = overlay.get(Table::ChainRecords, &record_key)? else { continue };
            let id = ChangeId::from_bytes(id.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                what: "chain index",
                detail: "change id is not 16 bytes".into(),
            })?);
            let key = codec::change_key(chain.workspace_id, id);
            if let Some(bytes) = overlay.get(Table::Changes, &key)? {
                let record = codec::decode_change(&key, &bytes)?;
                match &record.subject {
                    Subject::Profile(profile) => chain_deletes.push((
                        Table::ChangesByProfile,
                        codec::change_by_profile_key(chain.workspace_id, *profile, id),
                    )),
                    Subject::Orphan(_, contact) => chain_deletes
                        .push((Table::ChangesByContact, codec::change_by_contact_key(chain.workspace_id, contact, id))),
                    Subject::Erased(_) => {}
                }
                if seq == *through {
                    head.anchor = Anchor { seq, hash: record.hash };
                }
                chain_deletes.push((Table::Changes, key));
            }
            chain_deletes.push((Table::ChainRecords, record_key));
        }
        // Without the record that becomes the anchor the chain could not verify: left whole.
        if head.anchor.seq == *through {
            deletes.extend(chain_deletes);
            heads.push((head_key, head));
        }
    }
    let records_expired = deletes.iter().filter(|(table, _)| matches!(table, Table::Changes)).count();
    for (table, key) in deletes {
        overlay.delete(table, key);
    }
    for (key, head) in heads {
        overlay.put(Table::ChainHeads, key, codec::encode_head(&head));
    }
    Ok(Applied { records_expired, ..Applied::default() })
}

fn import(overlay: &mut Overlay<'_>, ws: WorkspaceId, profiles: &[ProfileImport]) -> Result<Applied, StoreError> {
    // Read everything first, so that a record that fails to decode leaves the batch untouched.
    let mut records: HashMap<&ExternalId, Option<ProfileRecord>> = HashMap::with_capacity(profiles.len());
    for profile in profiles {
        if !records.contains_key(&profile.external_id) {
            let existing = match overlay.get(Table::Profiles, &codec::profile_key(ws, profile.external_id.as_str()))? {
                Some(bytes) => Some(ProfileRecord::decode(&bytes)?),
                None => None,
            };
            records.insert(&profile.external_id, existing);
        }
    }

    let mut applied = Applied::default();
    for profile in profiles {
        let external_id = profile.external_id.as_str();
        let slot = records.get_mut(&profile.external_id).expect("read above");
        let record = slot.get_or_insert_with(|| {
            let id = ProfileId::generate();
            overlay.put(Table::ProfileIds, codec::profile_id_key(ws, id), external_id.as_bytes().to_vec());
            applied.profiles_created += 1;
            ProfileRecord::new(id)
        });
        let email = profile.email.as_ref().map(|e| e.as_str());
        let phone = profile.phone.as_ref().map(|p| p.as_str());
        reindex(overlay, ws, external_id, record.id, record.email.as_deref(), email, Table::Emails);
        reindex(overlay, ws, external_id, record.id, record.phone.as_deref(), phone, Table::Phones);
        record.email = email.map(str::to_string);
        record.phone = phone.map(str::to_string);
        overlay.put(Table::Profiles, codec::profile_key(ws, external_id), record.encode());
    }
    Ok(applied)
}

/// Moves a profile's entry in the `emails`/`phones` index from its old identifier to its new one.
fn reindex(
    overlay: &mut Overlay<'_>,
    ws: WorkspaceId,
    external_id: &str,
    profile: ProfileId,
    old: Option<&str>,
    new: Option<&str>,
    table: Table,
) {
    if old == new {
        return;
    }
    if let Some(old) = old {
        overlay.delete(table, codec::contact_key(ws, old, profile));
    }
    if let Some(new) = new {
        overlay.put(table, codec::contact_key(ws, new, profile), external_id.as_bytes().to_vec());
    }
}

fn contact_table(contact: &Contact) -> Table {
    match contact {
        Contact::Email(_) => Table::Emails,
        Contact::Phone(_) => Table::Phones,
    }
}
