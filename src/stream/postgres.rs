//! The change stream on PostgreSQL (tables of migration 6).
//!
//! Every node runs a relay. For a destination, a relay first *forms* a message: it reads the
//! destination's oldest outbox rows (by record time, then id), deletes exactly those rows and
//! inserts the destination's one `stream_messages` row, in one transaction; if another node
//! took any of the rows meanwhile, the delete finds fewer and the transaction is rolled back,
//! so no row goes into two messages. It then *leases* the message (a conditional UPDATE of
//! `lease_until`) before sending it, so that two nodes do not send one message at once; a node
//! that dies mid-send leaves a lease that expires, and another node sends the message again
//! (at least once).

use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::destination::{DeliveryState, Destination, Message};
use super::outbox::Item;
use crate::domain::events::Deletion;
use crate::domain::ids::{ChangeId, ProfileId};
use crate::domain::time::Timestamp;
use crate::store::postgres::retry::db_error;
use crate::store::StoreError;

/// The notification channel of commits that made something deliverable (see
/// `crate::store::Store::listen_stream`).
pub const CHANNEL: &str = "consentry_stream";

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("stream records always encode")
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &'static str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt { what, detail: e.to_string() })
}

/// Stores a new destination; it takes the records committed from now on.
pub async fn create(client: &impl GenericClient, destination: &Destination) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO stream_destinations (id, workspace_id, config, state) VALUES ($1, $2, $3, $4)",
            &[&destination.id, &destination.workspace_id.0, &json(destination), &json(&DeliveryState::default())],
        )
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Replaces a destination's settings.
pub async fn update(client: &impl GenericClient, destination: &Destination) -> Result<(), StoreError> {
    client
        .execute("UPDATE stream_destinations SET config = $2 WHERE id = $1", &[&destination.id, &json(destination)])
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Removes a destination, its rows and its message; whether it existed.
pub async fn delete(client: &mut deadpool_postgres::Object, id: Uuid) -> Result<bool, StoreError> {
    let tx = client.transaction().await.map_err(db_error)?;
    let n = tx.execute("DELETE FROM stream_destinations WHERE id = $1", &[&id]).await.map_err(db_error)?;
    tx.execute("DELETE FROM stream_outbox WHERE destination_id = $1", &[&id]).await.map_err(db_error)?;
    tx.execute("DELETE FROM stream_messages WHERE destination_id = $1", &[&id]).await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(n > 0)
}

/// Every destination with its delivery state.
pub async fn list(client: &impl GenericClient) -> Result<Vec<(Destination, DeliveryState)>, StoreError> {
    let rows =
        client.query("SELECT config, state FROM stream_destinations ORDER BY id", &[]).await.map_err(db_error)?;
    rows.iter().map(|r| Ok((parse(r.get(0), "stream destination")?, parse(r.get(1), "stream state")?))).collect()
}

/// The destination's message, leased to this node until `lease_until` if it is due at `now`
/// and no other node holds it; `None` when there is no message, or it is not ours to send now.
pub async fn lease(
    client: &impl GenericClient,
    id: Uuid,
    now: Timestamp,
    lease_until: Timestamp,
) -> Result<Option<Message>, StoreError> {
    let row = client
        .query_opt(
            "UPDATE stream_messages SET lease_until = $3 \
             WHERE destination_id = $1 AND next_at <= $2 AND lease_until <= $2 RETURNING message",
            &[&id, &now.0, &lease_until.0],
        )
        .await
        .map_err(db_error)?;
    row.map(|r| parse(r.get(0), "stream message")).transpose()
}

/// Whether the destination has a message (due or not).
pub async fn has_message(client: &impl GenericClient, id: Uuid) -> Result<bool, StoreError> {
    let row =
        client.query_opt("SELECT 1 FROM stream_messages WHERE destination_id = $1", &[&id]).await.map_err(db_error)?;
    Ok(row.is_some())
}

/// Up to `limit` of the destination's oldest records and deletions.
pub async fn pending(
    client: &impl GenericClient,
    destination: &Destination,
    limit: usize,
) -> Result<Vec<Item>, StoreError> {
    // The record's columns first, where `change_from_row` reads them; a deletion's row has no
    // record (NULLs) and says so by its `deleted_profile`.
    let sql = format!(
        "SELECT {}, o.deleted_profile, o.change_id, o.at FROM stream_outbox o \
         LEFT JOIN changes c ON o.deleted_profile IS NULL AND c.workspace_id = $2 AND c.change_id = o.change_id \
         WHERE o.destination_id = $1 AND (o.deleted_profile IS NOT NULL OR c.change_id IS NOT NULL) \
         ORDER BY o.at, o.change_id LIMIT $3",
        crate::store::postgres::ledger::CHANGE_COLUMNS
            .split(", ")
            .map(|c| format!("c.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows =
        client.query(&sql, &[&destination.id, &destination.workspace_id.0, &(limit as i64)]).await.map_err(db_error)?;
    let columns = crate::store::postgres::ledger::CHANGE_COLUMNS.split(", ").count();
    rows.iter()
        .map(|row| match row.get::<_, Option<Uuid>>(columns) {
            Some(profile) => Ok(Item::Deletion(Deletion {
                id: row.get(columns + 1),
                at: Timestamp(row.get(columns + 2)),
                profile: ProfileId(profile),
            })),
            None => crate::store::postgres::ledger::change_from_row(row).map(Item::Change),
        })
        .collect()
}

/// Deletes the outbox rows of records ledger retention deleted (`ids`, all older than
/// `cutoff`), in its transaction: a row whose record is gone can never be sent (`pending`
/// joins the record) and would stay in the outbox for good. A delivered row is already gone
/// (taken out when its message formed); what is left is a row a disabled or failing
/// destination had not sent yet. Reads each destination's range of the primary key before
/// `cutoff`.
pub async fn forget_expired(
    client: &impl GenericClient,
    workspace: Uuid,
    cutoff: Timestamp,
    ids: &[Uuid],
) -> Result<u64, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    client
        .execute(
            "DELETE FROM stream_outbox o USING stream_destinations d \
             WHERE d.workspace_id = $1 AND o.destination_id = d.id AND o.at < $2 AND o.change_id = ANY($3)",
            &[&workspace, &cutoff.0, &ids],
        )
        .await
}

/// Queues the workspace's records of `[since, until)` for the destination again; how many.
pub async fn replay(
    client: &impl GenericClient,
    destination: &Destination,
    since: Timestamp,
    until: Timestamp,
) -> Result<usize, StoreError> {
    let n = client
        .execute(
            "INSERT INTO stream_outbox (destination_id, at, change_id) \
             SELECT $1, at, change_id FROM changes WHERE workspace_id = $2 AND at >= $3 AND at < $4 \
             ON CONFLICT DO NOTHING",
            &[&destination.id, &destination.workspace_id.0, &since.0, &until.0],
        )
        .await
        .map_err(db_error)?;
    Ok(n as usize)
}

/// Takes `message`'s records out of the outbox into the destination's message row; `false`
/// (and nothing done) when another node took one of them or formed a message first.
pub async fn begin(client: &mut deadpool_postgres::Object, id: Uuid, message: &Message) -> Result<bool, StoreError> {
    let tx = client.transaction().await.map_err(db_error)?;
    let ids: Vec<Uuid> = message.changes.iter().map(|c: &ChangeId| c.0).collect();
    let taken = tx
        .execute("DELETE FROM stream_outbox WHERE destination_id = $1 AND change_id = ANY($2)", &[&id, &ids])
        .await
        .map_err(db_error)?;
    if taken != ids.len() as u64 {
        return Ok(false); // dropping `tx` rolls it back
    }
    let inserted = tx
        .execute(
            "INSERT INTO stream_messages (destination_id, message, next_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&id, &json(message), &message.next_at.0],
        )
        .await
        .map_err(db_error)?;
    if inserted == 0 {
        return Ok(false);
    }
    tx.commit().await.map_err(db_error)?;
    Ok(true)
}

/// Records the outcome of an attempt: the new state, and the message to try again (its lease
/// given up), or none when it is done with. A disabled state stops the destination's rows.
pub async fn settle(
    client: &mut deadpool_postgres::Object,
    id: Uuid,
    state: &DeliveryState,
    retry: Option<&Message>,
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute(
        "UPDATE stream_destinations SET state = $2, disabled = $3 WHERE id = $1",
        &[&id, &json(state), &state.disabled.is_some()],
    )
    .await
    .map_err(db_error)?;
    match retry {
        Some(message) => tx
            .execute(
                "UPDATE stream_messages SET message = $2, next_at = $3, lease_until = 0 WHERE destination_id = $1",
                &[&id, &json(message), &message.next_at.0],
            )
            .await
            .map_err(db_error)?,
        None => tx.execute("DELETE FROM stream_messages WHERE destination_id = $1", &[&id]).await.map_err(db_error)?,
    };
    tx.commit().await.map_err(db_error)?;
    Ok(())
}
