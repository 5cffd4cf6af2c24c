//! Reading the ledger from PostgreSQL: a subject's records as index ranges, never a scan.
//!
//! One statement per page, so one snapshot: for each profile a range of `changes_by_profile`
//! (workspace, profile, time, id) and for each orphaned email or phone a range of
//! `changes_by_identifier` (workspace, kind, identifier, time, id), each range starting right
//! after the page's lower bound and cut at `limit` rows inside a `LATERAL` subquery, then the
//! ranges merged by (time, id) and cut at `limit` again. A page of a subject with a million
//! records reads `limit` rows per range, whatever its position. `EXPLAIN` shows an Index Scan
//! per range (see the closing note of issue 10). The whole workspace (the export) is paged by
//! the primary key, (workspace, record id).

use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::ledger::{change_from_row, CHANGE_COLUMNS};
use super::retry;
use super::{contact_kind, PostgresStore, SUBJECT_PROFILE};
use crate::domain::change::ChangeRecord;
use crate::domain::history::Window;
use crate::domain::ids::{ProfileId, WorkspaceId};
use crate::domain::ledger::{ChainGroup, ChainHead, ChainKey};
use crate::store::{LedgerRead, LedgerSources, StoreError};

/// The lower bound of a window in the ledger's order: strictly after `(at, id)`. `since` is
/// the position just before its first microsecond.
fn lower_bound(window: &Window) -> (i64, Uuid) {
    let since = window.since.map(|since| (since.0.saturating_sub(1), Uuid::max()));
    let after = window.after.map(|after| (after.at.0, after.id.0));
    since.max(after).unwrap_or((i64::MIN, Uuid::nil()))
}

/// The conditions of one range, on a row `c` of `changes`, after its equality columns.
/// Parameters: $2, $3 the lower bound, $4 `until`, $5 the groups (NULL: all), $6 the limit.
const RANGE: &str = "(c.at, c.change_id) > ($2, $3) AND c.at < $4 AND ($5::uuid[] IS NULL OR c.group_id = ANY($5)) \
     ORDER BY c.at, c.change_id LIMIT $6";

/// The SQL of a page of these subjects' records.
pub fn subjects_sql() -> String {
    format!(
        "SELECT {CHANGE_COLUMNS} FROM ( \
           SELECT c.* FROM unnest($7::uuid[]) AS s(profile_id) CROSS JOIN LATERAL ( \
             SELECT {CHANGE_COLUMNS} FROM changes c WHERE c.workspace_id = $1 AND c.profile_id = s.profile_id \
               AND c.subject_kind = {SUBJECT_PROFILE} AND {RANGE}) c \
           UNION ALL \
           SELECT c.* FROM unnest($8::int2[], $9::text[]) AS s(kind, identifier) CROSS JOIN LATERAL ( \
             SELECT {CHANGE_COLUMNS} FROM changes c WHERE c.workspace_id = $1 AND c.subject_kind = s.kind \
               AND c.identifier = s.identifier AND {RANGE}) c \
         ) c ORDER BY at, change_id LIMIT $6"
    )
}

impl PostgresStore {
    /// See [`crate::store::Store::ledger_records`].
    pub async fn ledger_records(&self, ws: WorkspaceId, read: &LedgerRead) -> Result<Vec<ChangeRecord>, StoreError> {
        if read.limit == 0 || read.groups.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let limit = i64::try_from(read.limit).unwrap_or(i64::MAX);
        let until = read.window.until.map_or(i64::MAX, |t| t.0);
        let groups: Option<Vec<Uuid>> = read.groups.as_ref().map(|g| g.iter().map(|g| g.0).collect());
        let rows = match &read.sources {
            LedgerSources::Subjects { profiles, contacts } => {
                let (lo_at, lo_id) = lower_bound(&read.window);
                let profiles: Vec<Uuid> = profiles.iter().map(|p| p.0).collect();
                let kinds: Vec<i16> = contacts.iter().map(contact_kind).collect();
                let identifiers: Vec<&str> = contacts.iter().map(|c| c.as_str()).collect();
                let params: [&(dyn ToSql + Sync); 9] =
                    [&ws.0, &lo_at, &lo_id, &until, &groups, &limit, &profiles, &kinds, &identifiers];
                client.query(&subjects_sql(), &params).await
            }
            LedgerSources::Workspace => {
                let after = read.window.after.map_or(Uuid::nil(), |a| a.id.0);
                let since = read.window.since.map_or(i64::MIN, |t| t.0);
                let sql = format!(
                    "SELECT {CHANGE_COLUMNS} FROM changes WHERE workspace_id = $1 AND change_id > $2 \
                     AND at >= $3 AND at < $4 AND ($5::uuid[] IS NULL OR group_id = ANY($5)) \
                     ORDER BY change_id LIMIT $6"
                );
                client.query(&sql, &[&ws.0, &after, &since, &until, &groups, &limit]).await
            }
        }
        .map_err(retry::db_error)?;
        rows.iter().map(change_from_row).collect()
    }

    /// See [`crate::store::Store::external_ids_of`].
    pub async fn external_ids_of(
        &self,
        ws: WorkspaceId,
        profiles: &[ProfileId],
    ) -> Result<HashMap<ProfileId, String>, StoreError> {
        let client = self.client().await?;
        let ids: Vec<Uuid> = profiles.iter().map(|p| p.0).collect();
        let rows = client
            .query(
                "SELECT profile_id, external_id FROM profiles WHERE workspace_id = $1 AND profile_id = ANY($2)",
                &[&ws.0, &ids],
            )
            .await
            .map_err(retry::db_error)?;
        Ok(rows.iter().map(|row| (ProfileId(row.get(0)), row.get(1))).collect())
    }

    /// See [`crate::store::Store::chain_heads`].
    pub async fn chain_heads(
        &self,
        ws: WorkspaceId,
        chains: &[ChainKey],
    ) -> Result<HashMap<ChainKey, ChainHead>, StoreError> {
        let client = self.client().await?;
        let groups: Vec<Uuid> = chains.iter().map(|c| c.group.as_uuid()).collect();
        let subjects: Vec<Uuid> = chains.iter().map(|c| c.subject).collect();
        let rows = client
            .query(
                "SELECT h.chain_group, h.subject_id, h.seq, h.last_hash, h.anchor_seq, h.anchor_hash \
                 FROM chain_heads h JOIN UNNEST($2::uuid[], $3::uuid[]) AS u(chain_group, subject_id) \
                 ON h.chain_group = u.chain_group AND h.subject_id = u.subject_id WHERE h.workspace_id = $1",
                &[&ws.0, &groups, &subjects],
            )
            .await
            .map_err(retry::db_error)?;
        let mut heads = HashMap::with_capacity(rows.len());
        for row in rows {
            let chain = ChainKey { workspace_id: ws, group: ChainGroup::from_uuid(row.get(0)), subject: row.get(1) };
            heads.insert(chain, super::ledger::head_from_row(&row, 2)?);
        }
        Ok(heads)
    }
}
