//! Writes: each one SERIALIZABLE transaction through [`retry::transaction`] that fetches the
//! facts, lets the domain planner decide, and writes the plan with one batched statement per
//! table (`INSERT ... SELECT FROM UNNEST(...) ON CONFLICT ...`). The write time and every id
//! are chosen again on each attempt, so a retried attempt is a fresh one.

use std::collections::{HashMap, HashSet};

use tokio_postgres::{IsolationLevel, Transaction};
use uuid::Uuid;

use super::read::{self, profile_snapshot};
use super::retry::{BoxFuture, TxError};
use super::{contact_kind, ledger, state_code, PostgresStore, EMAIL, PHONE, SUBJECT_ERASED};
use crate::domain::change::Contact;
use crate::domain::delete::{self, DeleteKnown, FoundProfile};
use crate::domain::identifiers::ExternalId;
use crate::domain::ids::{OrphanId, ProfileId, WorkspaceId};
use crate::domain::plan::{self, Known, Origin};
use crate::domain::set_status::SetStatusCommand;
use crate::domain::subscription::SubscriptionState;
use crate::domain::time::Timestamp;
use crate::domain::track::{self, TrackCommand, TrackKnown};
use crate::store::{Applied, Policy, ProfileImport, StoreError};

/// Inserts new profiles `(id, external id, email, phone)`; a row that another transaction
/// inserted first fails the attempt so that the next one reads it.
async fn insert_profiles(
    tx: &Transaction<'_>,
    ws: WorkspaceId,
    rows: &[(Uuid, &str, Option<&str>, Option<&str>)],
) -> Result<(), TxError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let external_ids: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let emails: Vec<Option<&str>> = rows.iter().map(|r| r.2).collect();
    let phones: Vec<Option<&str>> = rows.iter().map(|r| r.3).collect();
    let inserted = tx
        .execute(
            "INSERT INTO profiles (workspace_id, profile_id, external_id, email, phone) \
             SELECT $1, * FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[]) ON CONFLICT DO NOTHING",
            &[&ws.0, &ids, &external_ids, &emails, &phones],
        )
        .await?;
    if inserted as usize != rows.len() {
        return Err(TxError::Conflict("a new profile's external id"));
    }
    Ok(())
}

/// Sets the email and phone of existing profiles `(id, email, phone)`.
async fn update_profiles(
    tx: &Transaction<'_>,
    ws: WorkspaceId,
    rows: &[(Uuid, Option<&str>, Option<&str>)],
) -> Result<(), TxError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let emails: Vec<Option<&str>> = rows.iter().map(|r| r.1).collect();
    let phones: Vec<Option<&str>> = rows.iter().map(|r| r.2).collect();
    tx.execute(
        "UPDATE profiles p SET email = u.email, phone = u.phone \
         FROM UNNEST($2::uuid[], $3::text[], $4::text[]) AS u(profile_id, email, phone) \
         WHERE p.workspace_id = $1 AND p.profile_id = u.profile_id",
        &[&ws.0, &ids, &emails, &phones],
    )
    .await?;
    Ok(())
}

/// Upserts profile states `(profile, group, state)` at `at`; each key once (the planner's
/// output is deduplicated, and ON CONFLICT may not touch a row twice in one statement).
async fn upsert_states(
    tx: &Transaction<'_>,
    ws: WorkspaceId,
    rows: &[(Uuid, Uuid, SubscriptionState, Timestamp)],
) -> Result<(), TxError> {
    if rows.is_empty() {
        return Ok(());
    }
    let profiles: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let groups: Vec<Uuid> = rows.iter().map(|r| r.1).collect();
    let states: Vec<i16> = rows.iter().map(|r| state_code(r.2)).collect();
    let times: Vec<i64> = rows.iter().map(|r| r.3 .0).collect();
    tx.execute(
        "INSERT INTO states (workspace_id, profile_id, group_id, state, updated_at) \
         SELECT $1, * FROM UNNEST($2::uuid[], $3::uuid[], $4::int2[], $5::int8[]) \
         ON CONFLICT (workspace_id, profile_id, group_id) \
         DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        &[&ws.0, &profiles, &groups, &states, &times],
    )
    .await?;
    Ok(())
}

/// The identifiers of `kind` among `contacts`.
fn of_kind(contacts: &[Contact], kind: i16) -> Vec<&str> {
    contacts.iter().filter(|c| contact_kind(c) == kind).map(Contact::as_str).collect()
}

/// Which of `identifiers` of `kind` some profile carries (other than `excluding`).
async fn carried(
    tx: &Transaction<'_>,
    ws: WorkspaceId,
    kind: i16,
    identifiers: &[&str],
    excluding: &[Uuid],
) -> Result<HashSet<String>, TxError> {
    if identifiers.is_empty() {
        return Ok(HashSet::new());
    }
    let column = if kind == EMAIL { "email" } else { "phone" };
    let sql = format!(
        "SELECT DISTINCT {column} FROM profiles \
         WHERE workspace_id = $1 AND {column} = ANY($2) AND NOT (profile_id = ANY($3))"
    );
    let rows = tx.query(&sql, &[&ws.0, &identifiers, &excluding]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// What a set attempt works on.
struct SetData {
    origin: Origin,
    command: SetStatusCommand,
    policy: Policy,
}

fn set_status_attempt<'c>(tx: &'c Transaction<'_>, data: &'c SetData) -> BoxFuture<'c, Result<Applied, TxError>> {
    Box::pin(async move {
        let ws = data.origin.workspace_id;
        let lookups = data.command.lookups();
        let mut orphan_rows = Vec::new();
        let mut known = Known::default();

        let asked: Vec<&str> = lookups.external_ids.iter().map(ExternalId::as_str).collect();
        let mut profile_ids: Vec<Uuid> = Vec::new();
        if !asked.is_empty() {
            let rows = tx
                .query(
                    "SELECT profile_id, external_id FROM profiles WHERE workspace_id = $1 AND external_id = ANY($2)",
                    &[&ws.0, &asked],
                )
                .await?;
            for row in rows {
                let id: Uuid = row.get(0);
                let external_id: &str = row.get(1);
                let external_id = ExternalId::parse(external_id).map_err(|e| {
                    TxError::Store(StoreError::Corrupt { what: "profile", detail: format!("external id: {e}") })
                })?;
                known.profiles_by_external_id.insert(external_id, ProfileId(id));
                profile_ids.push(id);
            }
        }
        let groups: Vec<Uuid> = lookups.groups.iter().map(|g| g.0).collect();
        for kind in [EMAIL, PHONE] {
            let identifiers = of_kind(&lookups.contacts, kind);
            if identifiers.is_empty() {
                continue;
            }
            let column = if kind == EMAIL { "email" } else { "phone" };
            let sql = format!(
                "SELECT {column}, profile_id FROM profiles WHERE workspace_id = $1 AND {column} = ANY($2) \
                 ORDER BY profile_id"
            );
            let mut by_identifier: HashMap<String, Vec<ProfileId>> = HashMap::new();
            for row in tx.query(&sql, &[&ws.0, &identifiers]).await? {
                let id: Uuid = row.get(1);
                by_identifier.entry(row.get(0)).or_default().push(ProfileId(id));
                profile_ids.push(id);
            }
            let lonely: Vec<&str> = identifiers.iter().copied().filter(|i| !by_identifier.contains_key(*i)).collect();
            for contact in lookups.contacts.iter().filter(|c| contact_kind(c) == kind) {
                if let Some(carriers) = by_identifier.remove(contact.as_str()) {
                    known.carriers.insert(contact.clone(), carriers);
                }
            }
            if lonely.is_empty() {
                continue;
            }
            // Every group's row, not only the groups asked: any of them carries the identifier's
            // internal id, which a new orphaned state of it then shares.
            let rows = tx
                .query(
                    "SELECT identifier, group_id, state, updated_at, orphan_id FROM orphans WHERE workspace_id = $1 \
                     AND kind = $2 AND identifier = ANY($3)",
                    &[&ws.0, &kind, &lonely],
                )
                .await?;
            for row in rows {
                let identifier: &str = row.get(0);
                let Some(contact) =
                    lookups.contacts.iter().find(|c| contact_kind(c) == kind && c.as_str() == identifier)
                else {
                    continue;
                };
                known.orphan_ids.insert(contact.clone(), OrphanId(row.get(4)));
                let group = crate::domain::ids::GroupId(row.get(1));
                if lookups.groups.contains(&group) {
                    orphan_rows.push(((contact.clone(), group), super::state_from(row.get(2))?, Timestamp(row.get(3))));
                }
            }
        }
        profile_ids.sort_unstable();
        profile_ids.dedup();
        if !profile_ids.is_empty() {
            let rows = tx
                .query(
                    "SELECT profile_id, group_id, state FROM states WHERE workspace_id = $1 \
                     AND profile_id = ANY($2) AND group_id = ANY($3)",
                    &[&ws.0, &profile_ids, &groups],
                )
                .await?;
            for row in rows {
                known.states.insert(
                    (ProfileId(row.get(0)), crate::domain::ids::GroupId(row.get(1))),
                    super::state_from(row.get(2))?,
                );
            }
        }

        // The write time is taken after the first read, so after the transaction's snapshot:
        // a transaction that saw another's commit is stamped later than it, and two that did
        // not see each other's writes of one row cannot both commit. Change times then never
        // contradict the order of the changes to one profile or address.
        let at = data.policy.clock.now();
        let ctx = data.origin.at(at);
        for (key, state, updated_at) in orphan_rows {
            if data.policy.retention.is_live(updated_at, at) {
                known.orphan_states.insert(key, state);
            }
        }

        let mut plan = plan::plan_set_status(&data.command, known, &ctx);

        let new: Vec<(Uuid, &str, Option<&str>, Option<&str>)> =
            plan.new_profiles.iter().map(|p| (p.id.0, p.external_id.as_str(), None, None)).collect();
        insert_profiles(tx, ws, &new).await?;
        let states: Vec<_> = plan.profile_states.iter().map(|&(p, g, s)| (p.0, g.0, s, at)).collect();
        upsert_states(tx, ws, &states).await?;
        if !plan.orphan_states.is_empty() {
            let kinds: Vec<i16> = plan.orphan_states.iter().map(|(c, _, _, _)| contact_kind(c)).collect();
            let identifiers: Vec<&str> = plan.orphan_states.iter().map(|(c, _, _, _)| c.as_str()).collect();
            let ids: Vec<Uuid> = plan.orphan_states.iter().map(|(_, id, _, _)| id.0).collect();
            let groups: Vec<Uuid> = plan.orphan_states.iter().map(|(_, _, g, _)| g.0).collect();
            let states: Vec<i16> = plan.orphan_states.iter().map(|(_, _, _, s)| state_code(*s)).collect();
            let times: Vec<i64> = vec![at.0; states.len()];
            tx.execute(
                "INSERT INTO orphans (workspace_id, kind, identifier, group_id, state, updated_at, orphan_id) \
                 SELECT $1, * FROM UNNEST($2::int2[], $3::text[], $4::uuid[], $5::int2[], $6::int8[], $7::uuid[]) \
                 ON CONFLICT (workspace_id, kind, identifier, group_id) \
                 DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                &[&ws.0, &kinds, &identifiers, &groups, &states, &times, &ids],
            )
            .await?;
        }
        write_unsubscribes(tx, ws, &plan.unsubscribes).await?;
        ledger::insert_changes(tx, ws, &mut plan.changes).await?;
        Ok(Applied { profiles_created: plan.new_profiles.len(), changes: plan.changes.len(), ..Applied::default() })
    })
}

/// What a track attempt works on.
struct TrackData {
    origin: Origin,
    command: TrackCommand,
    policy: Policy,
}

fn track_attempt<'c>(tx: &'c Transaction<'_>, data: &'c TrackData) -> BoxFuture<'c, Result<Applied, TxError>> {
    Box::pin(async move {
        let ws = data.origin.workspace_id;
        let mut known = TrackKnown::default();
        let mut orphan_views = Vec::new();

        let asked: Vec<&str> = data.command.external_ids().into_iter().map(ExternalId::as_str).collect();
        if !asked.is_empty() {
            for view in read::profiles_by_external_ids(tx, ws, &asked).await? {
                let external_id = view.external_id.as_deref().unwrap_or_default();
                let external_id = ExternalId::parse(external_id).map_err(|e| {
                    TxError::Store(StoreError::Corrupt { what: "profile", detail: format!("external id: {e}") })
                })?;
                known.profiles.insert(external_id, profile_snapshot(view));
            }
        }
        let contacts = data.command.contacts_set();
        for kind in [EMAIL, PHONE] {
            let identifiers = of_kind(&contacts, kind);
            let taken = carried(tx, ws, kind, &identifiers, &[]).await?;
            let lonely: Vec<&str> = identifiers.into_iter().filter(|i| !taken.contains(*i)).collect();
            if lonely.is_empty() {
                continue;
            }
            for (identifier, view) in read::orphans(tx, ws, kind, &lonely).await? {
                let Some(contact) = contacts.iter().find(|c| contact_kind(c) == kind && c.as_str() == identifier)
                else {
                    continue;
                };
                orphan_views.push((contact.clone(), view));
            }
        }

        // Taken after the first read, as in `set_status_attempt`.
        let at = data.policy.clock.now();
        let ctx = data.origin.at(at);
        for (contact, view) in orphan_views {
            // Expired states are handed over as nothing, so that they move out with the rest.
            let live = known.orphans.entry(contact).or_default();
            if data.policy.retention.is_live(view.updated_at, at) {
                live.push(view);
            }
        }

        let mut plan = track::plan_track(&data.command, known, &ctx);

        let mut new = Vec::new();
        let mut changed = Vec::new();
        let mut states = Vec::new();
        for tracked in &plan.profiles {
            let after = &tracked.after;
            match &tracked.before {
                None => {
                    new.push((after.id.0, tracked.external_id.as_str(), after.email.as_deref(), after.phone.as_deref()))
                }
                Some(before) => {
                    if before.email != after.email || before.phone != after.phone {
                        changed.push((after.id.0, after.email.as_deref(), after.phone.as_deref()));
                    }
                }
            }
            for state in &after.states {
                let unchanged = tracked.before.as_ref().is_some_and(|b| b.states.iter().any(|s| s == state));
                if !unchanged {
                    states.push((after.id.0, state.group_id.0, state.state, state.updated_at));
                }
            }
        }
        insert_profiles(tx, ws, &new).await?;
        update_profiles(tx, ws, &changed).await?;
        upsert_states(tx, ws, &states).await?;
        let mut orphans_deleted = 0;
        for kind in [EMAIL, PHONE] {
            let moved = of_kind(&plan.orphans_moved, kind);
            if !moved.is_empty() {
                orphans_deleted += tx
                    .execute(
                        "DELETE FROM orphans WHERE workspace_id = $1 AND kind = $2 AND identifier = ANY($3)",
                        &[&ws.0, &kind, &moved],
                    )
                    .await? as usize;
            }
        }
        write_unsubscribes(tx, ws, &plan.unsubscribes).await?;
        ledger::insert_changes(tx, ws, &mut plan.changes).await?;
        Ok(Applied {
            profiles_created: new.len(),
            changes: plan.changes.len(),
            profiles_deleted: 0,
            orphans_deleted,
            records_expired: 0,
        })
    })
}

fn delete_attempt<'c>(
    tx: &'c Transaction<'_>,
    (ws, external_ids, at): &'c (WorkspaceId, Vec<ExternalId>, Timestamp),
) -> BoxFuture<'c, Result<Applied, TxError>> {
    Box::pin(async move {
        let ws = *ws;
        let corrupt = |detail: String| TxError::Store(StoreError::Corrupt { what: "profile", detail });
        let mut asked: Vec<&str> = external_ids.iter().map(ExternalId::as_str).collect();
        asked.sort_unstable();
        asked.dedup();
        let rows = tx
            .query(
                "SELECT external_id, profile_id, email, phone FROM profiles \
                 WHERE workspace_id = $1 AND external_id = ANY($2)",
                &[&ws.0, &asked],
            )
            .await?;
        if rows.is_empty() {
            return Ok(Applied::default());
        }
        let mut known = DeleteKnown::default();
        for row in rows {
            let external_id = ExternalId::parse(row.get(0)).map_err(|e| corrupt(format!("external id: {e}")))?;
            let found = FoundProfile::from_stored(ProfileId(row.get(1)), row.get(2), row.get(3))
                .map_err(|e| corrupt(format!("stored identifier: {e}")))?;
            known.profiles.insert(external_id, found);
        }
        let contacts = known.contacts();
        for kind in [EMAIL, PHONE] {
            let identifiers = of_kind(&contacts, kind);
            if identifiers.is_empty() {
                continue;
            }
            let column = if kind == EMAIL { "email" } else { "phone" };
            let sql =
                format!("SELECT {column}, profile_id FROM profiles WHERE workspace_id = $1 AND {column} = ANY($2)");
            for row in tx.query(&sql, &[&ws.0, &identifiers]).await? {
                let identifier: &str = row.get(0);
                if let Some(contact) = contacts.iter().find(|c| contact_kind(c) == kind && c.as_str() == identifier) {
                    known.carriers.entry(contact.clone()).or_default().push(ProfileId(row.get(1)));
                }
            }
        }

        let plan = delete::plan_delete(external_ids, known);

        let mut orphans_deleted = 0;
        for kind in [EMAIL, PHONE] {
            let gone = of_kind(&plan.released, kind);
            if gone.is_empty() {
                continue;
            }
            orphans_deleted += tx
                .execute(
                    "DELETE FROM orphans WHERE workspace_id = $1 AND kind = $2 AND identifier = ANY($3)",
                    &[&ws.0, &kind, &gone],
                )
                .await? as usize;
            // `DeletePlan::erase` as one statement: the records about a released address.
            tx.execute(
                "UPDATE changes SET subject_kind = $4, identifier = NULL, actor_ip = NULL, actor_user_agent = NULL \
                 WHERE workspace_id = $1 AND subject_kind = $2 AND identifier = ANY($3)",
                &[&ws.0, &kind, &gone, &SUBJECT_ERASED],
            )
            .await?;
        }
        write_unsubscribes(tx, ws, &crate::domain::email::released(&plan.released)).await?;
        let deleted: Vec<Uuid> = plan.profile_ids().into_iter().map(|id| id.0).collect();
        // The person behind a change through a page is personal data too: the deleted
        // profiles' records keep the change and lose the actor (not hashed, see the ledger).
        tx.execute(
            "UPDATE changes SET actor_ip = NULL, actor_user_agent = NULL WHERE workspace_id = $1 \
             AND profile_id = ANY($2) AND (actor_ip IS NOT NULL OR actor_user_agent IS NOT NULL)",
            &[&ws.0, &deleted],
        )
        .await?;
        tx.execute("DELETE FROM states WHERE workspace_id = $1 AND profile_id = ANY($2)", &[&ws.0, &deleted]).await?;
        tx.execute("DELETE FROM profiles WHERE workspace_id = $1 AND profile_id = ANY($2)", &[&ws.0, &deleted]).await?;
        // Deliverable in the same transaction as the deletion (see `crate::stream`).
        let deletions = crate::domain::events::deletions(&plan.profile_ids(), *at);
        crate::stream::outbox::insert_deletion_rows(tx, ws, &deletions).await?;
        Ok(Applied { profiles_deleted: deleted.len(), orphans_deleted, ..Applied::default() })
    })
}

/// Moves emails in the unsubscribe index (see [`crate::domain::email::UnsubscribeUpdate`]):
/// one statement for those that became unsubscribed, one for those that left; an email named
/// twice takes its last update.
async fn write_unsubscribes(
    tx: &Transaction<'_>,
    ws: WorkspaceId,
    updates: &[crate::domain::email::UnsubscribeUpdate],
) -> Result<(), TxError> {
    if updates.is_empty() {
        return Ok(());
    }
    let mut last: HashMap<&str, Option<i64>> = HashMap::new();
    for update in updates {
        last.insert(update.email.as_str(), update.at.map(|at| at.0));
    }
    let (mut emails, mut times, mut gone) = (Vec::new(), Vec::new(), Vec::new());
    for (email, at) in last {
        match at {
            Some(at) => {
                emails.push(email);
                times.push(at);
            }
            None => gone.push(email),
        }
    }
    if !emails.is_empty() {
        tx.execute(
            "INSERT INTO email_unsubscribes (workspace_id, email, at) SELECT $1, * FROM UNNEST($2::text[], $3::int8[]) \
             ON CONFLICT (workspace_id, email) DO UPDATE SET at = excluded.at",
            &[&ws.0, &emails, &times],
        )
        .await?;
    }
    if !gone.is_empty() {
        tx.execute("DELETE FROM email_unsubscribes WHERE workspace_id = $1 AND email = ANY($2)", &[&ws.0, &gone])
            .await?;
    }
    Ok(())
}

fn import_attempt<'c>(
    tx: &'c Transaction<'_>,
    (ws, profiles): &'c (WorkspaceId, Vec<ProfileImport>),
) -> BoxFuture<'c, Result<Applied, TxError>> {
    Box::pin(async move {
        let ws = *ws;
        // The last entry of an external id wins, as if the entries were applied in order.
        let mut order: Vec<&str> = Vec::new();
        let mut last: HashMap<&str, &ProfileImport> = HashMap::new();
        for profile in profiles {
            let id = profile.external_id.as_str();
            if last.insert(id, profile).is_none() {
                order.push(id);
            }
        }
        let rows = tx
            .query(
                "SELECT external_id, profile_id FROM profiles WHERE workspace_id = $1 AND external_id = ANY($2)",
                &[&ws.0, &order],
            )
            .await?;
        let existing: HashMap<String, Uuid> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        let mut new = Vec::new();
        let mut changed = Vec::new();
        for id in order {
            let profile = last[id];
            let email = profile.email.as_ref().map(|e| e.as_str());
            let phone = profile.phone.as_ref().map(|p| p.as_str());
            match existing.get(id) {
                Some(&profile_id) => changed.push((profile_id, email, phone)),
                None => new.push((ProfileId::generate().0, id, email, phone)),
            }
        }
        insert_profiles(tx, ws, &new).await?;
        update_profiles(tx, ws, &changed).await?;
        Ok(Applied { profiles_created: new.len(), ..Applied::default() })
    })
}

fn expire_attempt<'c>(tx: &'c Transaction<'_>, cutoff: &'c Timestamp) -> BoxFuture<'c, Result<usize, TxError>> {
    Box::pin(async move {
        // The age is checked by the DELETE itself, so a state refreshed meanwhile stays: a
        // state is live from the cut-off on (`Retention::is_live`), so older ones go.
        Ok(tx.execute("DELETE FROM orphans WHERE updated_at < $1", &[&cutoff.0]).await? as usize)
    })
}

impl PostgresStore {
    /// See [`crate::store::Store::set_status`].
    pub async fn set_status(&self, origin: Origin, command: SetStatusCommand) -> Result<Applied, StoreError> {
        let _turn = self.write_turn().await?;
        let data = SetData { origin, command, policy: self.inner.policy.clone() };
        self.transaction(IsolationLevel::Serializable, &data, set_status_attempt).await
    }

    /// See [`crate::store::Store::track`].
    pub async fn track(&self, origin: Origin, command: TrackCommand) -> Result<Applied, StoreError> {
        let _turn = self.write_turn().await?;
        let data = TrackData { origin, command, policy: self.inner.policy.clone() };
        self.transaction(IsolationLevel::Serializable, &data, track_attempt).await
    }

    /// See [`crate::store::Store::delete_profiles`].
    pub async fn delete_profiles(&self, ws: WorkspaceId, external_ids: Vec<ExternalId>) -> Result<Applied, StoreError> {
        let _turn = self.write_turn().await?;
        let at = self.inner.policy.clock.now();
        self.transaction(IsolationLevel::Serializable, &(ws, external_ids, at), delete_attempt).await
    }

    /// See [`crate::store::Store::import_profiles`].
    pub async fn import_profiles(&self, ws: WorkspaceId, profiles: Vec<ProfileImport>) -> Result<Applied, StoreError> {
        let _turn = self.write_turn().await?;
        self.transaction(IsolationLevel::Serializable, &(ws, profiles), import_attempt).await
    }

    /// See [`crate::store::Store::expire_orphans`].
    pub async fn expire_orphans(&self) -> Result<usize, StoreError> {
        let cutoff = self.inner.policy.retention.cutoff(self.inner.policy.clock.now());
        let _turn = self.write_turn().await?;
        self.transaction(IsolationLevel::Serializable, &cutoff, expire_attempt).await
    }

    /// See [`crate::store::Store::expire_ledger`]: a batch of expired records per transaction,
    /// until a batch finds no more.
    pub async fn expire_ledger(&self, ws: WorkspaceId, cutoff: Timestamp) -> Result<usize, StoreError> {
        let mut deleted = 0;
        loop {
            let _turn = self.write_turn().await?;
            let (expired, more) =
                self.transaction(IsolationLevel::Serializable, &(ws, cutoff), ledger::expire_attempt).await?;
            deleted += expired;
            if !more || expired == 0 {
                return Ok(deleted);
            }
        }
    }
}
