//! The single writer: takes queued write requests, applies up to `max_batch` of them to one
//! [`Overlay`], commits the batch with one fsync, then answers each request.
//!
//! One writer makes every read-modify-write serial without locks, and group commit spreads one
//! fsync over many requests. Reads never go through here: the engine serves them concurrently
//! and sees a batch only once it is durable.

use std::collections::HashMap;

use std::sync::atomic::AtomicU64;

use fjall::PersistMode;
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, ProfileRecord};
use super::overlay::{Overlay, Table};
use super::prefetch::{Prefetch, RecentWrites};
use super::Tables;
use crate::domain::change::{Contact, Subject};
use crate::domain::identifiers::ExternalId;
use crate::domain::ids::{ProfileId, WorkspaceId};
use crate::domain::plan::{self, Known, Origin, WriteContext};
use crate::domain::set_status::SetStatusCommand;
use crate::domain::time::{MonotonicClock, Timestamp};
use crate::store::{Applied, Durability, ProfileImport, StoreError};

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
}

/// Runs the writer until every sender is dropped and the queue is empty.
/// After each commit it publishes the number of committed batches in `epoch` (see
/// [`super::prefetch`]).
pub fn run(
    tables: &Tables,
    mut queue: mpsc::Receiver<Job>,
    epoch: &AtomicU64,
    durability: Durability,
    max_batch: usize,
) {
    let mode = match durability {
        Durability::Sync => PersistMode::SyncAll,
        Durability::Buffered => PersistMode::Buffer,
    };
    let mut jobs = Vec::with_capacity(max_batch);
    let mut results = Vec::with_capacity(max_batch);
    let mut clock = MonotonicClock::default();
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
            results.push(apply(&mut overlay, &recent, &mut job.op, clock.now()));
        }
        let written: Vec<Vec<u8>> = overlay.keys(Table::Profiles).map(<[u8]>::to_vec).collect();
        let committed = overlay.commit(mode);
        if committed.is_ok() {
            batches += 1;
            recent.record(batches, written.iter().map(Vec::as_slice), epoch);
        }
        for (job, result) in jobs.drain(..).zip(results.drain(..)) {
            let answer = match &committed {
                Ok(()) => result,
                Err(err) => Err(StoreError::Engine(err.to_string())),
            };
            // The caller may have gone away (client disconnected); the write stands regardless.
            let _ = job.reply.send(answer);
        }
        if let Err(err) = committed {
            tracing::error!(error = %err, "commit failed; the batch's requests were answered with an error");
        }
    }
}

fn apply(overlay: &mut Overlay<'_>, recent: &RecentWrites, op: &mut Op, at: Timestamp) -> Result<Applied, StoreError> {
    match op {
        Op::SetStatus(origin, command, prefetch) => {
            set_status(overlay, &origin.at(at), command, Reads { prefetch, recent })
        }
        Op::Import(ws, profiles) => import(overlay, *ws, profiles),
    }
}

/// A request's read-ahead, and what the writer knows to check it against.
struct Reads<'a> {
    prefetch: &'a mut Prefetch,
    recent: &'a RecentWrites,
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
            None => match self.reads.prefetch.take(&key, self.reads.recent) {
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
                if lookups.groups.contains(&group) {
                    let (state, _) = codec::decode_orphan(&value)?;
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

    let plan = plan::plan_set_status(command, known, ctx);

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
    for (contact, group, state) in &plan.orphan_states {
        overlay.put(Table::Orphans, codec::orphan_key(ws, contact, *group), codec::encode_orphan(*state, ctx.at));
    }
    for change in &plan.changes {
        overlay.put(Table::Changes, codec::change_key(ws, change.id), codec::encode_change(change));
        if let Subject::Profile(profile) = change.subject {
            overlay.put(Table::ChangesByProfile, codec::change_by_profile_key(ws, profile, change.id), Vec::new());
        }
    }
    Ok(Applied { profiles_created: plan.new_profiles.len(), changes: plan.changes.len() })
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
