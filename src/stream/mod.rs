//! The change stream: every change record, delivered at least once to the destinations of its
//! workspace, in ledger order per destination (see `docs/stream.md`).
//!
//! The foundation is the outbox: each store makes a record deliverable in the same atomic
//! commit that writes it ([`outbox`]), so a crash between the state change and the delivery
//! loses nothing. A [`relay`] on every server turns outbox entries into messages, fixed when
//! formed, and sends them ([`send`]) signed ([`sign`]) until they are delivered or given up.

pub mod admin;
pub mod destination;
pub mod embedded;
pub mod nats;
pub mod outbox;
pub mod postgres;
pub mod relay;
pub mod send;
pub mod sign;

use uuid::Uuid;

use crate::domain::time::Timestamp;
use crate::store::{Store, StoreError};
use destination::{DeliveryState, Destination, Message};
use outbox::Item;

/// Aborts a task when dropped: a helper task (the relay's listener, its connection's driver)
/// goes with the task that started it.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The stream's persistence on either store.
#[derive(Clone)]
pub struct StreamStore {
    store: Store,
}

impl StreamStore {
    /// The stream of `store`.
    pub fn new(store: Store) -> StreamStore {
        StreamStore { store }
    }

    /// Stores a new destination; it takes the records committed from now on.
    pub async fn create(&self, destination: &Destination) -> Result<(), StoreError> {
        match &self.store {
            Store::Embedded(s) => s.stream_parts().create(destination),
            Store::Postgres(s) => postgres::create(&**s.stream_client().await?, destination).await,
        }
    }

    /// Replaces a destination's settings.
    pub async fn update(&self, destination: &Destination) -> Result<(), StoreError> {
        match &self.store {
            Store::Embedded(s) => s.stream_parts().update(destination),
            Store::Postgres(s) => postgres::update(&**s.stream_client().await?, destination).await,
        }
    }

    /// Removes a destination; whether it existed.
    pub async fn delete(&self, id: Uuid) -> Result<bool, StoreError> {
        match &self.store {
            Store::Embedded(s) => s.stream_parts().delete(id),
            Store::Postgres(s) => postgres::delete(&mut s.stream_client().await?, id).await,
        }
    }

    /// Every destination with its delivery state.
    pub async fn list(&self) -> Result<Vec<(Destination, DeliveryState)>, StoreError> {
        match &self.store {
            Store::Embedded(s) => s.stream_parts().list(),
            Store::Postgres(s) => postgres::list(&**s.stream_client().await?).await,
        }
    }

    /// The destination's message if it is due at `now` and this node may send it (on
    /// PostgreSQL, leased until `lease_until`); forms one from its oldest records if it has
    /// none, with `form` turning records and deletions into a message.
    pub(crate) async fn next_message<F, Fut>(
        &self,
        destination: &Destination,
        state: &mut DeliveryState,
        now: Timestamp,
        lease_until: Timestamp,
        form: F,
    ) -> Result<Option<Message>, StoreError>
    where
        F: FnOnce(Vec<Item>) -> Fut,
        Fut: std::future::Future<Output = Result<Option<Message>, StoreError>>,
    {
        let id = destination.id;
        match &self.store {
            Store::Embedded(s) => {
                let parts = s.stream_parts();
                let message = match parts.message(id)? {
                    Some(message) => message,
                    None if parts.has_replay(id)? => {
                        let (keys, records) = parts.replayed(destination, destination.max_batch)?;
                        let message = if records.is_empty() { None } else { form(records).await? };
                        parts.begin_replay(id, &keys, message.as_ref())?;
                        match message {
                            Some(message) => message,
                            None => return Ok(None),
                        }
                    }
                    None => {
                        let pending = parts.pending(destination, state, destination.max_batch)?;
                        if pending.cursor == state.cursor {
                            return Ok(None);
                        }
                        let message = if pending.records.is_empty() { None } else { form(pending.records).await? };
                        state.cursor = pending.cursor;
                        parts.begin(id, state, message.as_ref())?;
                        match message {
                            Some(message) => message,
                            None => return Ok(None),
                        }
                    }
                };
                Ok((message.next_at <= now).then_some(message))
            }
            Store::Postgres(s) => {
                let mut client = s.stream_client().await?;
                if !postgres::has_message(&**client, id).await? {
                    let records = postgres::pending(&**client, destination, destination.max_batch).await?;
                    if records.is_empty() {
                        return Ok(None);
                    }
                    let ids: Vec<_> = records.iter().map(Item::id).collect();
                    match form(records).await? {
                        Some(message) => {
                            postgres::begin(&mut client, id, &message).await?;
                        }
                        None => {
                            let skip = Message::new(ids, String::new(), now);
                            if postgres::begin(&mut client, id, &skip).await? {
                                postgres::settle(&mut client, id, state, None).await?;
                            }
                            return Ok(None);
                        }
                    }
                }
                postgres::lease(&**client, id, now, lease_until).await
            }
        }
    }

    /// Sends the workspace's records of `[since, until)` to the destination again, with their
    /// original event ids; how many.
    pub async fn replay(
        &self,
        destination: &Destination,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<usize, StoreError> {
        match &self.store {
            Store::Embedded(s) => s.stream_parts().replay(destination, since, until),
            Store::Postgres(s) => postgres::replay(&**s.stream_client().await?, destination, since, until).await,
        }
    }

    /// Records the outcome of an attempt (see [`relay`]).
    pub(crate) async fn settle(
        &self,
        id: Uuid,
        state: &DeliveryState,
        retry: Option<&Message>,
    ) -> Result<(), StoreError> {
        match &self.store {
            Store::Embedded(s) => s.stream_parts().settle(id, state, retry),
            Store::Postgres(s) => postgres::settle(&mut s.stream_client().await?, id, state, retry).await,
        }
    }

    /// Frees what every destination has read (the embedded outbox; PostgreSQL deletes rows as
    /// it takes them).
    pub(crate) async fn collect(&self, states: &[DeliveryState]) -> Result<(), StoreError> {
        match &self.store {
            Store::Embedded(s) => s.stream_parts().collect(states.iter().map(|s| s.cursor)),
            Store::Postgres(_) => Ok(()),
        }
    }
}
