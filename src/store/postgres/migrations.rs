//! The PostgreSQL schema, as numbered migrations embedded in the binary.
//!
//! Each migration runs once, in order, in its own transaction together with the row that
//! records it in `schema_migrations`; a second process that raced to apply the same one
//! collides with the first one's tables, rolls back and tries again, and then finds the
//! migration recorded, so start-up on several nodes at once is safe without advisory locks. The SQL keeps to what CockroachDB and YugabyteDB accept too: no
//! sequences, extensions or triggers, integer widths spelled out, UUIDs supplied by the app.
//!
//! Codes stored as `INT2`: states 1 subscribed, 2 unsubscribed (as the embedded codec); contact
//! kinds 1 email, 2 phone; change subjects 0 profile, 1 email, 2 phone, 3 erased; endpoints
//! as `Endpoint::code`; sources as `Source::code`. Times are `BIGINT` microseconds since the epoch (`Timestamp`).

use tokio_postgres::Client;

use super::retry::{self, BoxFuture, TxError};
use crate::store::StoreError;

/// The migrations, in the order they apply; a migration is never edited once released.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE catalog (
    kind INT2 NOT NULL,
    id UUID NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE profiles (
    workspace_id UUID NOT NULL,
    profile_id UUID NOT NULL,
    external_id TEXT NOT NULL,
    email TEXT NULL,
    phone TEXT NULL,
    PRIMARY KEY (workspace_id, profile_id),
    UNIQUE (workspace_id, external_id)
);
CREATE INDEX profiles_by_email ON profiles (workspace_id, email);
CREATE INDEX profiles_by_phone ON profiles (workspace_id, phone);
CREATE TABLE states (
    workspace_id UUID NOT NULL,
    profile_id UUID NOT NULL,
    group_id UUID NOT NULL,
    state INT2 NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, profile_id, group_id)
);
CREATE TABLE orphans (
    workspace_id UUID NOT NULL,
    kind INT2 NOT NULL,
    identifier TEXT NOT NULL,
    group_id UUID NOT NULL,
    state INT2 NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, kind, identifier, group_id)
);
CREATE INDEX orphans_by_age ON orphans (updated_at);
CREATE TABLE changes (
    workspace_id UUID NOT NULL,
    change_id UUID NOT NULL,
    at BIGINT NOT NULL,
    group_id UUID NOT NULL,
    subject_kind INT2 NOT NULL,
    profile_id UUID NULL,
    identifier TEXT NULL,
    old_state INT2 NULL,
    new_state INT2 NOT NULL,
    api_key_id UUID NOT NULL,
    endpoint INT2 NOT NULL,
    request_id UUID NOT NULL,
    use_double_opt_in_logic BOOL NOT NULL,
    PRIMARY KEY (workspace_id, change_id)
);
CREATE INDEX changes_by_profile ON changes (workspace_id, profile_id, change_id);
CREATE INDEX changes_by_identifier ON changes (workspace_id, subject_kind, identifier, change_id);
"#,
    ),
    // `consentry migrate-store`: which embedded store this database holds a copy of (one at
    // most, hence the fixed key), and how far the copy of each source table has come. A batch
    // of rows and its checkpoint commit together, so a resumed copy starts right after the
    // last committed batch.
    (
        2,
        r#"
CREATE TABLE store_copy (
    id INT2 PRIMARY KEY CHECK (id = 1),
    source_path TEXT NOT NULL,
    source_fingerprint TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    completed_at BIGINT NULL
);
CREATE TABLE store_copy_progress (
    source_table TEXT PRIMARY KEY,
    last_key BYTEA NULL,
    copied BIGINT NOT NULL,
    done BOOL NOT NULL
);
"#,
    ),
    // Rate-limit counters shared by the nodes (`crate::limiter::postgres`): one row per
    // workspace, bucket and clock window, deleted a minute after the window ends.
    (
        3,
        r#"
CREATE TABLE rate_limit_counters (
    workspace_id UUID NOT NULL,
    bucket TEXT NOT NULL,
    window_seconds INT4 NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, bucket, window_seconds, window_start)
);
CREATE INDEX rate_limit_counters_by_end ON rate_limit_counters (window_end);
"#,
    ),
    // The ledger (issue 10): each record says how the change happened (`source`, default
    // 1 = api for the records before it), may lack a key (a person's click has none), may name
    // the person (`actor_*`), and is sealed into its chain (`subject_id`, `seq`, hashes).
    // Orphaned identifiers get an internal id, the subject of their chains. `chain_heads` keeps
    // each chain's end so that sealing needs no scan, and the anchor that ledger retention
    // leaves. The new columns are filled, and made NOT NULL, by the data step that runs in
    // this migration's transaction (`super::ledger::upgrade`).
    (
        4,
        r#"
ALTER TABLE changes
    ADD COLUMN source INT2 NOT NULL DEFAULT 1,
    ADD COLUMN actor_ip TEXT NULL,
    ADD COLUMN actor_user_agent TEXT NULL,
    ADD COLUMN subject_id UUID NULL,
    ADD COLUMN seq BIGINT NULL,
    ADD COLUMN previous_hash BYTEA NULL,
    ADD COLUMN hash BYTEA NULL,
    ALTER COLUMN api_key_id DROP NOT NULL,
    ALTER COLUMN endpoint DROP NOT NULL,
    ALTER COLUMN request_id DROP NOT NULL;
ALTER TABLE orphans ADD COLUMN orphan_id UUID NULL;
CREATE TABLE chain_heads (
    workspace_id UUID NOT NULL,
    chain_group UUID NOT NULL,
    subject_id UUID NOT NULL,
    seq BIGINT NOT NULL,
    last_hash BYTEA NOT NULL,
    anchor_seq BIGINT NOT NULL DEFAULT 0,
    anchor_hash BYTEA NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
    PRIMARY KEY (workspace_id, chain_group, subject_id)
);
"#,
    ),
    // Issue 10, the ledger's history: a subject's records are read oldest first, by (time,
    // record id), a page at a time from a cursor. The two indexes on a subject's records are
    // replaced by ones in that order, under the same names, so that a page is an index range
    // and no index is added to the write path (the equality lookups that used the old ones,
    // such as the erasure of an identifier's records, use the new ones' leading columns).
    (
        5,
        r#"
DROP INDEX changes_by_profile;
CREATE INDEX changes_by_profile ON changes (workspace_id, profile_id, at, change_id);
DROP INDEX changes_by_identifier;
CREATE INDEX changes_by_identifier ON changes (workspace_id, subject_kind, identifier, at, change_id);
"#,
    ),
    // Issue 11, the change stream. `stream_outbox` has a row per destination and change record,
    // inserted in the change's own transaction, so a record is deliverable exactly when it is
    // committed and a late commit is a row like any other, never behind a time cursor. A
    // relay takes a destination's oldest rows into its one `stream_messages` row (deleting
    // them, `FOR UPDATE` so that two nodes never take one row) and leases that message while
    // it sends it (see `crate::stream::postgres`).
    (
        6,
        r#"
CREATE TABLE stream_destinations (
    id UUID PRIMARY KEY,
    workspace_id UUID NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL,
    disabled BOOL NOT NULL DEFAULT false
);
CREATE INDEX stream_destinations_by_workspace ON stream_destinations (workspace_id);
CREATE TABLE stream_outbox (
    destination_id UUID NOT NULL,
    at BIGINT NOT NULL,
    change_id UUID NOT NULL,
    PRIMARY KEY (destination_id, at, change_id)
);
CREATE TABLE stream_messages (
    destination_id UUID PRIMARY KEY,
    message TEXT NOT NULL,
    next_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0
);
"#,
    ),
    // Issue 11: a profile's deletion is an event too (`users.UserDeleteRequest`), made
    // deliverable in the deletion's transaction. It is no change record: its outbox row
    // carries the deleted profile itself, and `change_id` holds the event's own id.
    (
        7,
        r#"
ALTER TABLE stream_outbox ADD COLUMN deleted_profile UUID;
"#,
    ),
    // Ledger retention (issue 10) looks for a workspace's records older than its cut-off. With
    // no index on the time, that was a scan of the whole table at every pass (1M records:
    // 23,000 buffers, 0.9 s, for 5,000 expired ones); with this one it reads the expired
    // range only (160 buffers). See docs/ledger.md, "How reads stay bounded".
    (
        8,
        r#"
CREATE INDEX changes_by_time ON changes (workspace_id, at);
"#,
    ),
    // Issue 12, the global email state: the emails whose global state became unsubscribed,
    // with when, for `GET /email/unsubscribes` (a page is a range of the time index). The
    // global state itself is a state of the nil group id in `states` and `orphans`, which
    // needs no change; a database of an earlier release has no global state, hence no row.
    (
        9,
        r#"
CREATE TABLE email_unsubscribes (
    workspace_id UUID NOT NULL,
    email TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, email)
);
CREATE INDEX email_unsubscribes_by_time ON email_unsubscribes (workspace_id, at, email);
"#,
    ),
];

/// The version whose migration carries the ledger's data step.
const LEDGER_UPGRADE: i32 = 4;

const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INT4 PRIMARY KEY, applied_at BIGINT NOT NULL)";

/// Applies every migration not applied yet; returns the versions it applied.
pub async fn apply(client: &mut Client) -> Result<Vec<i32>, StoreError> {
    apply_up_to(client, i32::MAX).await
}

/// Applies the migrations up to `last` only: what an earlier release did, for the tests of
/// upgrades.
#[doc(hidden)]
pub async fn apply_up_to(client: &mut Client, last: i32) -> Result<Vec<i32>, StoreError> {
    // Processes starting together on an empty database race to create this table; the loser
    // sees the winner's table as a unique violation and finds it there on a second try.
    if let Err(err) = client.batch_execute(CREATE_TABLE).await {
        if !created_concurrently(&err) {
            return Err(retry::db_error(err));
        }
        client.batch_execute(CREATE_TABLE).await.map_err(retry::db_error)?;
    }
    let mut applied = Vec::new();
    for &(version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version <= last) {
        let done = retry::transaction(client, tokio_postgres::IsolationLevel::Serializable, &(version, sql), migrate)
            .await
            .map_err(|e| StoreError::Open(format!("migration {version} failed: {}", crate::store::report(&e))))?;
        if done {
            applied.push(version);
        }
    }
    Ok(applied)
}

/// One migration's attempt: nothing if it is recorded already, else its SQL and its record.
fn migrate<'c>(
    tx: &'c tokio_postgres::Transaction<'_>,
    &(version, sql): &'c (i32, &str),
) -> BoxFuture<'c, Result<bool, TxError>> {
    Box::pin(async move {
        let found = tx.query_opt("SELECT version FROM schema_migrations WHERE version = $1", &[&version]).await?;
        if found.is_some() {
            return Ok(false);
        }
        // A migration may rewrite a large table: the request-path statement timeout does not
        // apply to it.
        tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
        // A process applying the same migration at the same moment makes ours collide with
        // its uncommitted tables; once it commits, the next attempt finds the version recorded.
        tx.batch_execute(sql).await.map_err(|err| match created_concurrently(&err) {
            true => TxError::Conflict("a migration another process applies at the same time"),
            false => TxError::Db(err),
        })?;
        if version == LEDGER_UPGRADE {
            super::ledger::upgrade(tx).await?;
        }
        // Bookkeeping of the schema, not domain time: always the system's clock.
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &crate::domain::time::Clock::system().now().0],
        )
        .await?;
        Ok(true)
    })
}

/// Whether `err` is what creating a table or index that another transaction has just created
/// fails with: a unique violation in the system catalog, or "already exists".
fn created_concurrently(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(err.code(), Some(code) if [SqlState::UNIQUE_VIOLATION, SqlState::DUPLICATE_TABLE, SqlState::DUPLICATE_OBJECT, SqlState::DUPLICATE_COLUMN].contains(code))
}
