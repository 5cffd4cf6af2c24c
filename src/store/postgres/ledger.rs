//! The ledger on PostgreSQL: change records as rows, sealed into their chains inside the write
//! transaction, and the one-time upgrade of records written before the ledger.
//!
//! Each chain's end lives in `chain_heads` (workspace, chain group, subject) → (seq, last hash,
//! anchor). A write reads the heads of the chains it extends with `SELECT … FOR UPDATE`, seals
//! its records in Rust and upserts the heads, all in its SERIALIZABLE transaction: two nodes
//! extending one chain at once cannot both commit, and the loser's retry continues from the
//! winner's record. No trigger, sequence or extension is involved.

use std::collections::HashMap;

use tokio_postgres::{GenericClient, Row, Transaction};
use uuid::Uuid;

use super::retry::TxError;
use super::{contact_kind, state_code, state_from, EMAIL, PHONE, SUBJECT_ERASED, SUBJECT_PROFILE};
use crate::domain::change::{Actor, ChangeRecord, Contact, Endpoint, Source, Subject, Trace};
use crate::domain::identifiers::{Email, Phone};
use crate::domain::ids::{ApiKeyId, ChangeId, GroupId, OrphanId, ProfileId, RequestId, WorkspaceId};
use crate::domain::ledger::{self, Anchor, ChainGroup, ChainHash, ChainHead, ChainKey};
use crate::domain::time::Timestamp;
use crate::store::StoreError;

/// The columns [`change_from_row`] reads, in its order.
pub const CHANGE_COLUMNS: &str = "workspace_id, change_id, at, group_id, subject_kind, profile_id, identifier, \
     old_state, new_state, source, api_key_id, endpoint, request_id, use_double_opt_in_logic, actor_ip, \
     actor_user_agent, subject_id, seq, previous_hash, hash";

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt { what: "change record", detail }
}

/// A change record from a row of [`CHANGE_COLUMNS`]. A row the upgrade has not sealed yet (only
/// inside the upgrade itself) reads with seq 0 and zero hashes.
pub fn change_from_row(row: &Row) -> Result<ChangeRecord, StoreError> {
    let identifier: Option<String> = row.get(6);
    let subject_id: Option<Uuid> = row.get(16);
    let orphan_id = || OrphanId(subject_id.unwrap_or_else(Uuid::nil));
    let subject = match row.get::<_, i16>(4) {
        SUBJECT_PROFILE => Subject::Profile(ProfileId(
            row.get::<_, Option<Uuid>>(5).ok_or_else(|| corrupt("profile subject without a profile".into()))?,
        )),
        EMAIL => Subject::Orphan(
            orphan_id(),
            Contact::Email(Email::parse(&identifier.unwrap_or_default()).map_err(|e| corrupt(e.to_string()))?),
        ),
        PHONE => Subject::Orphan(
            orphan_id(),
            Contact::Phone(Phone::parse(&identifier.unwrap_or_default()).map_err(|e| corrupt(e.to_string()))?),
        ),
        SUBJECT_ERASED => Subject::Erased(orphan_id()),
        other => return Err(corrupt(format!("subject kind {other}"))),
    };
    let endpoint = match row.get::<_, Option<i16>>(11) {
        None => None,
        Some(code) => {
            Some(u8::try_from(code).ok().and_then(Endpoint::from_code).ok_or_else(|| corrupt("endpoint".into()))?)
        }
    };
    let source = u8::try_from(row.get::<_, i16>(9)).ok().and_then(Source::from_code);
    let actor = match (row.get::<_, Option<String>>(14), row.get::<_, Option<String>>(15)) {
        (None, None) => None,
        (ip, user_agent) => Some(Actor { ip: ip.unwrap_or_default(), user_agent: user_agent.unwrap_or_default() }),
    };
    let hash = |i: usize| -> Result<ChainHash, StoreError> {
        match row.get::<_, Option<&[u8]>>(i) {
            None => Ok(ChainHash::ZERO),
            Some(bytes) => ChainHash::from_slice(bytes).ok_or_else(|| corrupt("hash is not 32 bytes".into())),
        }
    };
    Ok(ChangeRecord {
        id: ChangeId(row.get(1)),
        at: Timestamp(row.get(2)),
        workspace_id: WorkspaceId(row.get(0)),
        group: ChainGroup::from_uuid(row.get(3)),
        subject,
        old: row.get::<_, Option<i16>>(7).map(state_from).transpose()?,
        new: state_from(row.get(8))?,
        kind: source.ok_or_else(|| corrupt("source".into()))?,
        trace: Trace {
            api_key_id: row.get::<_, Option<Uuid>>(10).map(ApiKeyId),
            endpoint,
            request_id: row.get::<_, Option<Uuid>>(12).map(RequestId),
        },
        use_double_opt_in_logic: row.get(13),
        actor,
        seq: row.get::<_, Option<i64>>(17).unwrap_or(0) as u64,
        previous_hash: hash(18)?,
        hash: hash(19)?,
    })
}

/// A change's subject as `changes` stores it: `(subject_kind, profile_id, identifier)`.
pub(super) fn subject_columns(subject: &Subject) -> (i16, Option<Uuid>, Option<&str>) {
    match subject {
        Subject::Profile(id) => (SUBJECT_PROFILE, Some(id.0), None),
        Subject::Orphan(_, contact) => (contact_kind(contact), None, Some(contact.as_str())),
        Subject::Erased(_) => (SUBJECT_ERASED, None, None),
    }
}

/// The heads of `chains` (all of workspace `ws`), locked for the rest of the transaction.
async fn lock_heads(
    tx: &Transaction<'_>,
    ws: WorkspaceId,
    chains: &[ChainKey],
) -> Result<HashMap<ChainKey, ChainHead>, TxError> {
    let groups: Vec<Uuid> = chains.iter().map(|c| c.group.as_uuid()).collect();
    let subjects: Vec<Uuid> = chains.iter().map(|c| c.subject).collect();
    let rows = tx
        .query(
            "SELECT h.chain_group, h.subject_id, h.seq, h.last_hash, h.anchor_seq, h.anchor_hash FROM chain_heads h \
             JOIN UNNEST($2::uuid[], $3::uuid[]) AS u(chain_group, subject_id) \
             ON h.chain_group = u.chain_group AND h.subject_id = u.subject_id \
             WHERE h.workspace_id = $1 FOR UPDATE OF h",
            &[&ws.0, &groups, &subjects],
        )
        .await?;
    let mut heads = HashMap::with_capacity(rows.len());
    for row in rows {
        let chain = ChainKey { workspace_id: ws, group: ChainGroup::from_uuid(row.get(0)), subject: row.get(1) };
        heads.insert(chain, head_from_row(&row, 2)?);
    }
    Ok(heads)
}

/// A [`ChainHead`] from four columns (seq, last hash, anchor seq, anchor hash) from `at`.
pub(super) fn head_from_row(row: &Row, at: usize) -> Result<ChainHead, StoreError> {
    let bad = || StoreError::Corrupt { what: "chain head", detail: "hash is not 32 bytes".into() };
    Ok(ChainHead {
        seq: row.get::<_, i64>(at) as u64,
        hash: ChainHash::from_slice(row.get(at + 1)).ok_or_else(bad)?,
        anchor: Anchor {
            seq: row.get::<_, i64>(at + 2) as u64,
            hash: ChainHash::from_slice(row.get(at + 3)).ok_or_else(bad)?,
        },
    })
}

/// Seals `changes` into their chains and stores them with the chains' new heads.
pub(super) async fn insert_changes(
    tx: &Transaction<'_>,
    ws: WorkspaceId,
    changes: &mut [ChangeRecord],
) -> Result<(), TxError> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut chains: Vec<ChainKey> = changes.iter().map(ChangeRecord::chain).collect();
    chains.sort_unstable();
    chains.dedup();
    let mut heads = lock_heads(tx, ws, &chains).await?;
    for change in changes.iter_mut() {
        ledger::seal(change, heads.entry(change.chain()).or_default());
    }
    write_rows(tx, ws, changes, false).await?;
    crate::stream::outbox::insert_rows(tx, ws, changes).await?;
    let groups: Vec<Uuid> = chains.iter().map(|c| c.group.as_uuid()).collect();
    let subjects: Vec<Uuid> = chains.iter().map(|c| c.subject).collect();
    let seqs: Vec<i64> = chains.iter().map(|c| heads[c].seq as i64).collect();
    let hashes: Vec<&[u8]> = chains.iter().map(|c| heads[c].hash.0.as_slice()).collect();
    tx.execute(
        "INSERT INTO chain_heads (workspace_id, chain_group, subject_id, seq, last_hash) \
         SELECT $1, * FROM UNNEST($2::uuid[], $3::uuid[], $4::int8[], $5::bytea[]) \
         ON CONFLICT (workspace_id, chain_group, subject_id) \
         DO UPDATE SET seq = excluded.seq, last_hash = excluded.last_hash",
        &[&ws.0, &groups, &subjects, &seqs, &hashes],
    )
    .await?;
    Ok(())
}

/// Inserts sealed change records as they are; `migrate-store`, which may write a batch again
/// after a crash, skips those already there.
pub(super) async fn write_rows(
    client: &impl GenericClient,
    ws: WorkspaceId,
    changes: &[ChangeRecord],
    skip_existing: bool,
) -> Result<(), tokio_postgres::Error> {
    let n = changes.len();
    let mut ids = Vec::with_capacity(n);
    let mut ats = Vec::with_capacity(n);
    let mut groups = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut profiles: Vec<Option<Uuid>> = Vec::with_capacity(n);
    let mut identifiers: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut olds: Vec<Option<i16>> = Vec::with_capacity(n);
    let mut news = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut keys: Vec<Option<Uuid>> = Vec::with_capacity(n);
    let mut endpoints: Vec<Option<i16>> = Vec::with_capacity(n);
    let mut requests: Vec<Option<Uuid>> = Vec::with_capacity(n);
    let mut double_opt_ins = Vec::with_capacity(n);
    let mut ips: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut agents: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut subjects = Vec::with_capacity(n);
    let mut seqs = Vec::with_capacity(n);
    let mut previous: Vec<&[u8]> = Vec::with_capacity(n);
    let mut hashes: Vec<&[u8]> = Vec::with_capacity(n);
    for change in changes {
        ids.push(change.id.0);
        ats.push(change.at.0);
        groups.push(change.group.as_uuid());
        let (kind, profile, identifier) = subject_columns(&change.subject);
        kinds.push(kind);
        profiles.push(profile);
        identifiers.push(identifier);
        olds.push(change.old.map(state_code));
        news.push(state_code(change.new));
        sources.push(i16::from(change.kind.code()));
        keys.push(change.trace.api_key_id.map(|k| k.0));
        endpoints.push(change.trace.endpoint.map(|e| i16::from(e.code())));
        requests.push(change.trace.request_id.map(|r| r.0));
        double_opt_ins.push(change.use_double_opt_in_logic);
        ips.push(change.actor.as_ref().map(|a| a.ip.as_str()));
        agents.push(change.actor.as_ref().map(|a| a.user_agent.as_str()));
        subjects.push(change.subject.internal_id());
        seqs.push(change.seq as i64);
        previous.push(change.previous_hash.0.as_slice());
        hashes.push(change.hash.0.as_slice());
    }
    let sql = format!(
        "INSERT INTO changes (workspace_id, change_id, at, group_id, subject_kind, profile_id, identifier, \
         old_state, new_state, source, api_key_id, endpoint, request_id, use_double_opt_in_logic, actor_ip, \
         actor_user_agent, subject_id, seq, previous_hash, hash) \
         SELECT $1, * FROM UNNEST($2::uuid[], $3::int8[], $4::uuid[], $5::int2[], $6::uuid[], $7::text[], \
         $8::int2[], $9::int2[], $10::int2[], $11::uuid[], $12::int2[], $13::uuid[], $14::bool[], $15::text[], \
         $16::text[], $17::uuid[], $18::int8[], $19::bytea[], $20::bytea[]){}",
        if skip_existing { " ON CONFLICT DO NOTHING" } else { "" }
    );
    client
        .execute(
            &sql,
            &[
                &ws.0,
                &ids,
                &ats,
                &groups,
                &kinds,
                &profiles,
                &identifiers,
                &olds,
                &news,
                &sources,
                &keys,
                &endpoints,
                &requests,
                &double_opt_ins,
                &ips,
                &agents,
                &subjects,
                &seqs,
                &previous,
                &hashes,
            ],
        )
        .await?;
    Ok(())
}

/// Rows the upgrade seals per statement.
const UPGRADE_PAGE: i64 = 5000;

/// Migration 4's data step, in the migration's transaction: gives every orphaned identifier an
/// internal id, every record its subject id, and seals every chain in record order (time,
/// then id), writing its head. Records erased before the ledger lost their identifier, so
/// their chain cannot be known: they form one chain per (workspace, group) under the nil id,
/// in time order, which verifies like any other.
pub(super) async fn upgrade(tx: &Transaction<'_>) -> Result<(), TxError> {
    // One internal id per identifier, shared by its orphaned states and its records.
    let rows = tx
        .query(
            "SELECT workspace_id, kind, identifier FROM orphans \
             UNION SELECT workspace_id, subject_kind, identifier FROM changes WHERE subject_kind IN ($1, $2)",
            &[&EMAIL, &PHONE],
        )
        .await?;
    let workspaces: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let kinds: Vec<i16> = rows.iter().map(|r| r.get(1)).collect();
    let identifiers: Vec<String> = rows.iter().map(|r| r.get(2)).collect();
    let ids: Vec<Uuid> = rows.iter().map(|_| OrphanId::generate().0).collect();
    tx.execute(
        "UPDATE orphans o SET orphan_id = u.id FROM UNNEST($1::uuid[], $2::int2[], $3::text[], $4::uuid[]) \
         AS u(workspace_id, kind, identifier, id) \
         WHERE o.workspace_id = u.workspace_id AND o.kind = u.kind AND o.identifier = u.identifier",
        &[&workspaces, &kinds, &identifiers, &ids],
    )
    .await?;
    tx.execute(
        "UPDATE changes c SET subject_id = u.id FROM UNNEST($1::uuid[], $2::int2[], $3::text[], $4::uuid[]) \
         AS u(workspace_id, kind, identifier, id) \
         WHERE c.workspace_id = u.workspace_id AND c.subject_kind = u.kind AND c.identifier = u.identifier",
        &[&workspaces, &kinds, &identifiers, &ids],
    )
    .await?;
    tx.execute("UPDATE changes SET subject_id = profile_id WHERE subject_kind = $1", &[&SUBJECT_PROFILE]).await?;
    tx.execute("UPDATE changes SET subject_id = $2 WHERE subject_kind = $1", &[&SUBJECT_ERASED, &Uuid::nil()]).await?;

    // Seal chain by chain, a page at a time (keyset paging, so memory stays one page).
    let select = format!(
        "SELECT {CHANGE_COLUMNS} FROM changes WHERE (workspace_id, group_id, subject_id, at, change_id) > \
         ($1, $2, $3, $4, $5) ORDER BY workspace_id, group_id, subject_id, at, change_id LIMIT {UPGRADE_PAGE}"
    );
    let mut after = (Uuid::nil(), Uuid::nil(), Uuid::nil(), i64::MIN, Uuid::nil());
    let mut current: Option<(ChainKey, ChainHead)> = None;
    let mut heads: Vec<(ChainKey, ChainHead)> = Vec::new();
    loop {
        let rows = tx.query(&select, &[&after.0, &after.1, &after.2, &after.3, &after.4]).await?;
        let mut sealed = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut record = change_from_row(row)?;
            let chain = record.chain();
            match &mut current {
                Some((key, _)) if *key == chain => {}
                _ => heads.extend(current.replace((chain, ChainHead::default()))),
            }
            let (_, head) = current.as_mut().expect("set above");
            ledger::seal(&mut record, head);
            after =
                (record.workspace_id.0, record.group.as_uuid(), record.subject.internal_id(), record.at.0, record.id.0);
            sealed.push(record);
        }
        if !sealed.is_empty() {
            let ids: Vec<Uuid> = sealed.iter().map(|r| r.id.0).collect();
            let workspaces: Vec<Uuid> = sealed.iter().map(|r| r.workspace_id.0).collect();
            let seqs: Vec<i64> = sealed.iter().map(|r| r.seq as i64).collect();
            let previous: Vec<&[u8]> = sealed.iter().map(|r| r.previous_hash.0.as_slice()).collect();
            let hashes: Vec<&[u8]> = sealed.iter().map(|r| r.hash.0.as_slice()).collect();
            tx.execute(
                "UPDATE changes c SET seq = u.seq, previous_hash = u.previous_hash, hash = u.hash \
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::int8[], $4::bytea[], $5::bytea[]) \
                 AS u(workspace_id, change_id, seq, previous_hash, hash) \
                 WHERE c.workspace_id = u.workspace_id AND c.change_id = u.change_id",
                &[&workspaces, &ids, &seqs, &previous, &hashes],
            )
            .await?;
        }
        if (rows.len() as i64) < UPGRADE_PAGE {
            heads.extend(current.take());
            break;
        }
        if heads.len() >= UPGRADE_PAGE as usize {
            write_heads(tx, &std::mem::take(&mut heads)).await?;
        }
    }
    write_heads(tx, &heads).await?;
    tx.batch_execute(
        "ALTER TABLE changes ALTER COLUMN subject_id SET NOT NULL, ALTER COLUMN seq SET NOT NULL, \
         ALTER COLUMN previous_hash SET NOT NULL, ALTER COLUMN hash SET NOT NULL; \
         ALTER TABLE orphans ALTER COLUMN orphan_id SET NOT NULL",
    )
    .await?;
    Ok(())
}

/// Inserts the heads of chains the upgrade sealed.
async fn write_heads(tx: &Transaction<'_>, heads: &[(ChainKey, ChainHead)]) -> Result<(), TxError> {
    if heads.is_empty() {
        return Ok(());
    }
    let workspaces: Vec<Uuid> = heads.iter().map(|(c, _)| c.workspace_id.0).collect();
    let groups: Vec<Uuid> = heads.iter().map(|(c, _)| c.group.as_uuid()).collect();
    let subjects: Vec<Uuid> = heads.iter().map(|(c, _)| c.subject).collect();
    let seqs: Vec<i64> = heads.iter().map(|(_, h)| h.seq as i64).collect();
    let hashes: Vec<&[u8]> = heads.iter().map(|(_, h)| h.hash.0.as_slice()).collect();
    tx.execute(
        "INSERT INTO chain_heads (workspace_id, chain_group, subject_id, seq, last_hash) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::bytea[])",
        &[&workspaces, &groups, &subjects, &seqs, &hashes],
    )
    .await?;
    Ok(())
}

/// Writes every chain's head from its records: the last record, and the anchor its first kept
/// record follows. For `migrate-store`, whose copied records are the whole truth.
pub(super) async fn rebuild_heads(tx: &Transaction<'_>) -> Result<(), TxError> {
    tx.batch_execute(
        "DELETE FROM chain_heads; \
         INSERT INTO chain_heads (workspace_id, chain_group, subject_id, seq, last_hash, anchor_seq, anchor_hash) \
         SELECT l.workspace_id, l.group_id, l.subject_id, l.seq, l.hash, f.seq - 1, f.previous_hash \
         FROM (SELECT DISTINCT ON (workspace_id, group_id, subject_id) workspace_id, group_id, subject_id, seq, hash \
               FROM changes ORDER BY workspace_id, group_id, subject_id, seq DESC) l \
         JOIN (SELECT DISTINCT ON (workspace_id, group_id, subject_id) workspace_id, group_id, subject_id, seq, \
               previous_hash FROM changes ORDER BY workspace_id, group_id, subject_id, seq) f \
         ON f.workspace_id = l.workspace_id AND f.group_id = l.group_id AND f.subject_id = l.subject_id",
    )
    .await?;
    Ok(())
}

/// Expired records looked at per ledger retention transaction.
const EXPIRE_BATCH: i64 = 5000;

/// One ledger retention batch: the expired records of a batch of chains (their heads locked,
/// as a write locks them), cut by [`ledger::expire_through`], each chain's last deleted record
/// becoming its anchor. Returns how many records it deleted and whether the batch was full.
pub(super) fn expire_attempt<'c>(
    tx: &'c Transaction<'_>,
    &(ws, cutoff): &'c (WorkspaceId, Timestamp),
) -> super::retry::BoxFuture<'c, Result<(usize, bool), TxError>> {
    Box::pin(async move {
        let rows = tx
            .query(
                "SELECT c.group_id, c.subject_id, c.seq, c.at, h.seq, h.anchor_seq FROM changes c \
                 JOIN chain_heads h ON h.workspace_id = c.workspace_id AND h.chain_group = c.group_id \
                 AND h.subject_id = c.subject_id \
                 WHERE c.workspace_id = $1 AND c.at < $2 AND c.seq < h.seq AND c.seq > h.anchor_seq \
                 ORDER BY c.group_id, c.subject_id, c.seq LIMIT $3 FOR UPDATE OF h",
                &[&ws.0, &cutoff.0, &EXPIRE_BATCH],
            )
            .await?;
        let full = rows.len() as i64 == EXPIRE_BATCH;
        // (group, subject), its head, its expired records as (seq, time).
        type Expired = ((Uuid, Uuid), ChainHead, Vec<(u64, Timestamp)>);
        let mut chains: Vec<Expired> = Vec::new();
        for row in &rows {
            let key = (row.get::<_, Uuid>(0), row.get::<_, Uuid>(1));
            if chains.last().is_none_or(|(last, _, _)| *last != key) {
                let head = ChainHead {
                    seq: row.get::<_, i64>(4) as u64,
                    anchor: Anchor { seq: row.get::<_, i64>(5) as u64, ..Anchor::default() },
                    ..ChainHead::default()
                };
                chains.push((key, head, Vec::new()));
            }
            let (_, _, records) = chains.last_mut().expect("pushed above");
            records.push((row.get::<_, i64>(2) as u64, Timestamp(row.get(3))));
        }
        let (mut groups, mut subjects, mut throughs) = (Vec::new(), Vec::new(), Vec::new());
        for ((group, subject), head, records) in chains {
            if let Some(through) = ledger::expire_through(&head, records, cutoff) {
                groups.push(group);
                subjects.push(subject);
                throughs.push(through as i64);
            }
        }
        if groups.is_empty() {
            return Ok((0, full));
        }
        let deleted = tx
            .query(
                "DELETE FROM changes c USING UNNEST($2::uuid[], $3::uuid[], $4::int8[]) AS u(g, s, t) \
                 WHERE c.workspace_id = $1 AND c.group_id = u.g AND c.subject_id = u.s AND c.seq <= u.t \
                 RETURNING c.group_id, c.subject_id, c.seq, c.hash, u.t, c.change_id",
                &[&ws.0, &groups, &subjects, &throughs],
            )
            .await?;
        let gone: Vec<Uuid> = deleted.iter().map(|row| row.get(5)).collect();
        crate::stream::postgres::forget_expired(tx, ws.0, cutoff, &gone).await?;
        let (mut anchor_groups, mut anchor_subjects, mut anchor_seqs, mut anchor_hashes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for row in &deleted {
            if row.get::<_, i64>(2) == row.get::<_, i64>(4) {
                anchor_groups.push(row.get::<_, Uuid>(0));
                anchor_subjects.push(row.get::<_, Uuid>(1));
                anchor_seqs.push(row.get::<_, i64>(2));
                anchor_hashes.push(row.get::<_, Vec<u8>>(3));
            }
        }
        if anchor_groups.len() != groups.len() {
            // A chain whose last expired record was not there cannot be anchored: undo it all.
            return Err(TxError::Store(StoreError::Corrupt {
                what: "change record",
                detail: "a chain lacks the record ledger retention would anchor it on".into(),
            }));
        }
        tx.execute(
            "UPDATE chain_heads h SET anchor_seq = u.t, anchor_hash = u.hash \
             FROM UNNEST($2::uuid[], $3::uuid[], $4::int8[], $5::bytea[]) AS u(g, s, t, hash) \
             WHERE h.workspace_id = $1 AND h.chain_group = u.g AND h.subject_id = u.s",
            &[&ws.0, &anchor_groups, &anchor_subjects, &anchor_seqs, &anchor_hashes],
        )
        .await?;
        Ok((deleted.len(), full))
    })
}

/// Rows fetched per round trip while verifying.
const VERIFY_PAGE: i32 = 5000;

/// Walks every chain (of workspace `ws`, or of all) in one read-only REPEATABLE READ snapshot,
/// so that writes going on meanwhile neither show nor break a chain. Records stream through a
/// portal in chain order; the heads of the chains walked are held in memory (one small entry
/// per chain).
pub(super) async fn verify(
    client: &mut tokio_postgres::Client,
    ws: Option<WorkspaceId>,
    progress: &std::sync::atomic::AtomicU64,
) -> Result<ledger::LedgerCheck, StoreError> {
    let db = |e: tokio_postgres::Error| super::retry::db_error(e);
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db)?;
    tx.batch_execute("SET LOCAL statement_timeout = 0").await.map_err(db)?;
    // One parameter either way, so that both statements take the same arguments.
    let filter = if ws.is_some() { "WHERE workspace_id = $1" } else { "WHERE $1::uuid IS NULL" };
    let ws_param: Option<Uuid> = ws.map(|w| w.0);
    let mut heads: HashMap<ChainKey, ChainHead> = HashMap::new();
    for row in tx
        .query(
            &format!(
                "SELECT workspace_id, chain_group, subject_id, seq, last_hash, anchor_seq, anchor_hash \
                 FROM chain_heads {filter}"
            ),
            &[&ws_param],
        )
        .await
        .map_err(db)?
    {
        let chain = ChainKey {
            workspace_id: WorkspaceId(row.get(0)),
            group: ChainGroup::from_uuid(row.get(1)),
            subject: row.get(2),
        };
        heads.insert(chain, head_from_row(&row, 3)?);
    }
    let portal = tx
        .bind(
            &format!("SELECT {CHANGE_COLUMNS} FROM changes {filter} ORDER BY workspace_id, group_id, subject_id, seq"),
            &[&ws_param],
        )
        .await
        .map_err(db)?;
    let mut check = ledger::LedgerCheck::default();
    let mut current: Option<(ChainKey, ledger::ChainVerifier)> = None;
    let finish = |current: Option<(ChainKey, ledger::ChainVerifier)>,
                  heads: &mut HashMap<ChainKey, ChainHead>|
     -> Option<(ChainKey, ledger::BadRecord)> {
        let (chain, verifier) = current?;
        let head = heads.remove(&chain).unwrap_or_default();
        verifier.finish(&head).err().map(|bad| (chain, bad))
    };
    loop {
        let rows = tx.query_portal(&portal, VERIFY_PAGE).await.map_err(db)?;
        for row in &rows {
            let id = ChangeId(row.get(1));
            let record = change_from_row(row);
            let chain = match &record {
                Ok(record) => record.chain(),
                Err(_) => {
                    let chain = current.as_ref().map(|(c, _)| *c).unwrap_or(ChainKey {
                        workspace_id: WorkspaceId(row.get(0)),
                        group: ChainGroup::Group(GroupId(row.get(3))),
                        subject: Uuid::nil(),
                    });
                    check.first_bad = Some((chain, ledger::BadRecord { id, why: ledger::Break::Hash }));
                    return Ok(check);
                }
            };
            let record = record.expect("matched above");
            if current.as_ref().is_none_or(|(c, _)| *c != chain) {
                if let Some(bad) = finish(current.take(), &mut heads) {
                    check.first_bad = Some(bad);
                    return Ok(check);
                }
                check.chains += 1;
                let anchor = heads.get(&chain).map(|h| h.anchor).unwrap_or_default();
                current = Some((chain, ledger::ChainVerifier::new(anchor)));
            }
            check.records += 1;
            let (_, verifier) = current.as_mut().expect("set above");
            if let Err(bad) = verifier.check(&record) {
                check.first_bad = Some((chain, bad));
                return Ok(check);
            }
        }
        progress.store(check.records, std::sync::atomic::Ordering::Relaxed);
        if (rows.len() as i32) < VERIFY_PAGE {
            break;
        }
    }
    if let Some(bad) = finish(current.take(), &mut heads) {
        check.first_bad = Some(bad);
        return Ok(check);
    }
    // A head left over is a chain whose every record is gone.
    if let Some((chain, _)) = heads.into_iter().next() {
        check.chains += 1;
        let bad = ledger::BadRecord { id: ChangeId(Uuid::nil()), why: ledger::Break::Truncated };
        check.first_bad = Some((chain, bad));
    }
    Ok(check)
}
