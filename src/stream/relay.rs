//! The relay: a task on every server that delivers each destination's messages, one at a time
//! per destination so that events go out in ledger order.
//!
//! It wakes when a commit made something deliverable ([`crate::store::Store::stream_wake`]:
//! the embedded writer's commit, or PostgreSQL's `NOTIFY` from any node's transaction), and
//! otherwise looks every [`POLL`] of real time, for retries that came due and leases that
//! expired. What is due is decided by the store's [`Clock`], so tests move retries along with
//! a manual clock instead of sleeping.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::domain::change::{ChangeRecord, Subject};
use crate::domain::events::{self, Event, SubjectDetails};
use crate::domain::identifiers::ExternalId;
use crate::domain::time::{Clock, Timestamp};
use crate::store::{Store, StoreError};

use super::destination::{retry_delay, verdict, DeliveryState, Destination, EventKind, Format, Message, Verdict};
use super::outbox::Item;
use super::send::{SendError, Sender};
use super::sign;
use super::StreamStore;
use super::{nats, AbortOnDrop};

/// How often the relay looks for work without being woken: retries come due by the clock,
/// and a wake can be missed (a PostgreSQL listener reconnecting).
pub const POLL: Duration = Duration::from_millis(1000);
/// How long a node holds a message it sends (PostgreSQL): twice the send timeout, so that a
/// live node's lease never expires under it, and short, since the message of a node killed
/// mid-send waits this long for another node (or the restarted one) to send it.
const LEASE: Duration = Duration::from_secs(30);
/// The wait before publishing to NATS again after a failure: short and fixed (not the
/// webhooks' schedule), so that events flow again soon after a NATS server comes back.
const NATS_RETRY: Duration = Duration::from_secs(1);
/// Messages a destination sends in one pass at most, so that one busy destination does not
/// hold up the others.
const PER_PASS: usize = 50;

/// The relay's settings.
pub struct Relay {
    stream: StreamStore,
    store: Store,
    catalog: Arc<Catalog>,
    clock: Clock,
    sender: Sender,
    /// `serve --stream`: each workspace gets a NATS destination of this URL.
    nats: Option<String>,
    /// Open NATS connections by URL, kept between attempts; dropped on a failure and opened
    /// again at the next attempt (a restarted NATS server is reconnected to).
    nats_connections: tokio::sync::Mutex<std::collections::HashMap<String, nats::Connection>>,
}

impl Relay {
    /// A relay over `catalog`'s store; `allow_private` as `serve --allow-private-webhooks`.
    pub fn new(catalog: Arc<Catalog>, clock: Clock, allow_private: bool) -> Relay {
        let store = catalog.store().clone();
        Relay {
            stream: StreamStore::new(store.clone()),
            store,
            catalog,
            clock,
            sender: Sender::new(allow_private),
            nats: None,
            nats_connections: Default::default(),
        }
    }

    /// Publishes every workspace's events to NATS JetStream at `url` too (`serve --stream`).
    pub fn with_nats(mut self, url: Option<String>) -> Relay {
        self.nats = url;
        self
    }

    /// Creates the NATS destination of each workspace that lacks one. Its id is derived from
    /// the workspace and the URL, so that nodes starting together create one, not several.
    async fn ensure_nats(&self, url: &str, destinations: &[(Destination, DeliveryState)]) -> Result<bool, StoreError> {
        let mut created = false;
        for workspace in self.catalog.workspaces() {
            let id = nats_destination_id(workspace.id, url);
            if destinations.iter().any(|(d, _)| d.id == id) {
                continue;
            }
            let destination = Destination {
                id,
                workspace_id: workspace.id,
                url: url.to_string(),
                format: Format::Nats,
                secrets: Vec::new(),
                bearer_token: None,
                events: EventKind::ALL.to_vec(),
                max_batch: super::destination::MAX_BATCH,
                created_at: self.clock.now(),
            };
            // Another node may have created it meanwhile: the next pass lists it.
            match self.stream.create(&destination).await {
                Ok(()) => created = true,
                Err(err) => {
                    tracing::debug!(error = %crate::store::report(&err), "the NATS destination was not created")
                }
            }
        }
        Ok(created)
    }

    /// Publishes each event of `message` to JetStream, waiting for each acknowledgement.
    async fn publish(&self, destination: &Destination, message: &Message) -> Verdict {
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            id: &'a str,
            event_type: &'a str,
        }
        let retry = |why: String| Verdict::Retry { why, after: Some(NATS_RETRY) };
        let Some(events) = message.events() else {
            return Verdict::Failed("the message's body does not parse".into());
        };
        let mut connections = self.nats_connections.lock().await;
        let connection = match connections.remove(&destination.url) {
            Some(connection) => connection,
            None => match nats::Connection::connect(&destination.url).await {
                Ok(mut connection) => match connection.ensure_stream().await {
                    Ok(()) => connection,
                    Err(why) => return retry(why),
                },
                Err(why) => return retry(why),
            },
        };
        let mut connection = connection;
        let workspace = destination.workspace_id.to_string();
        for raw in &events {
            let Ok(head) = serde_json::from_str::<Head<'_>>(raw.get()) else {
                return Verdict::Failed("an event without id or event_type".into());
            };
            let subject = nats::subject(&workspace, head.event_type);
            if let Err(why) = connection.publish(&subject, head.id, raw.get().as_bytes()).await {
                // The connection is dropped: the next attempt connects again.
                return retry(why);
            }
        }
        connections.insert(destination.url.clone(), connection);
        Verdict::Delivered
    }

    /// Delivers until the task is dropped.
    pub async fn run(self) {
        let wake = self.store.stream_wake();
        let store = self.store.clone();
        let listener = tokio::spawn(async move { store.listen_stream().await });
        let _listener = AbortOnDrop(listener.abort_handle());
        loop {
            // Taken before the pass: a commit during the pass leaves a permit, so the next
            // wait returns at once and nothing committed waits for the poll.
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let more = match self.pass().await {
                Ok(more) => more,
                Err(err) => {
                    tracing::warn!(error = %crate::store::report(&err), "the change stream's relay failed a pass; it tries again");
                    false
                }
            };
            if !more {
                let _ = tokio::time::timeout(POLL, woken).await;
            }
        }
    }

    /// One look at every destination; whether one of them has more to send at once.
    pub async fn pass(&self) -> Result<bool, StoreError> {
        let mut destinations = self.stream.list().await?;
        if let Some(url) = &self.nats {
            if self.ensure_nats(url, &destinations).await? {
                destinations = self.stream.list().await?;
            }
        }
        let mut live = Vec::new();
        let mut more = false;
        for (destination, mut state) in destinations {
            if state.disabled.is_some() {
                continue;
            }
            for n in 0..PER_PASS {
                match self.deliver_one(&destination, &mut state).await {
                    Ok(true) => more |= n + 1 == PER_PASS,
                    Ok(false) => break,
                    Err(err) => {
                        tracing::warn!(destination = %destination.id, error = %crate::store::report(&err), "delivery failed");
                        break;
                    }
                }
            }
            if state.disabled.is_none() {
                live.push(state);
            }
        }
        self.stream.collect(&live).await?;
        Ok(more)
    }

    /// Sends the destination's next due message; whether it should go on at once.
    async fn deliver_one(&self, destination: &Destination, state: &mut DeliveryState) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let form = |items: Vec<Item>| self.form(destination, items, now);
        let Some(mut message) = self.stream.next_message(destination, state, now, now.plus(LEASE), form).await? else {
            return Ok(false);
        };
        let outcome = self.attempt(destination, &message).await;
        let now = self.clock.now();
        message.attempts += 1;
        let mut retry = match outcome {
            Ok((_, Verdict::Delivered)) => {
                state.failing_since = None;
                None
            }
            Ok((_, Verdict::Gone)) => {
                state.disabled = Some("the receiver answered 410 Gone".into());
                state.last_error = Some("HTTP 410".into());
                Some(message.clone())
            }
            // Braze Currents: a 400 refuses the batch as a whole; each event is tried alone,
            // so one event the receiver cannot take does not drop the others.
            Ok((400, Verdict::Failed(why))) if destination.format == Format::Currents => match message.split(now) {
                Some(mut singles) => {
                    tracing::info!(destination = %destination.id, message = %message.id, events = singles.len(), "a 400 refused a batch; its events go one at a time");
                    state.last_error = Some(format!("{why}: the batch is split"));
                    singles.append(&mut message.then);
                    message.then = singles;
                    None
                }
                None => {
                    tracing::warn!(destination = %destination.id, message = %message.id, why = %why, "a message failed for good");
                    state.last_error = Some(why);
                    None
                }
            },
            Ok((_, Verdict::Failed(why))) => {
                tracing::warn!(destination = %destination.id, message = %message.id, why = %why, "a message failed for good");
                state.last_error = Some(why);
                None
            }
            Err(SendError::Refused(why)) => {
                state.disabled = Some(why.clone());
                state.last_error = Some(why);
                Some(message.clone())
            }
            Ok((_, Verdict::Retry { why, after })) => self.retry(state, message.clone(), why, after, now),
            Err(SendError::Network(why)) => self.retry(state, message.clone(), why, None, now),
        };
        if retry.is_none() {
            // Done with it: the messages of a split batch follow, each on its own.
            retry = message.next(now);
        }
        let more = state.disabled.is_none() && retry.as_ref().is_none_or(|m| m.next_at <= now);
        self.stream.settle(destination.id, state, retry.as_ref()).await?;
        Ok(more)
    }

    /// The message again after the schedule's wait, or dropped once it is spent; the
    /// destination disabled once it has failed for five days.
    fn retry(
        &self,
        state: &mut DeliveryState,
        mut message: Message,
        why: String,
        after: Option<Duration>,
        now: Timestamp,
    ) -> Option<Message> {
        let since = *state.failing_since.get_or_insert(now);
        state.last_error = Some(why);
        if now.0 - since.0 >= super::destination::FAILING_LIMIT.as_micros() as i64 {
            state.disabled = Some("failing for 5 days".into());
            return Some(message);
        }
        let jitter = f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 256.0;
        let wait = after.or_else(|| retry_delay(message.attempts, jitter))?;
        message.next_at = now.plus(wait);
        Some(message)
    }

    /// One POST of `message` (one publish per event for NATS): the answer's status and what
    /// it means.
    async fn attempt(&self, destination: &Destination, message: &Message) -> Result<(u16, Verdict), SendError> {
        let mut headers = vec![("content-type", "application/json".to_string())];
        match destination.format {
            Format::Standard => {
                let timestamp = self.clock.now().as_secs();
                let secrets = destination.signing_secrets(self.clock.now());
                headers.push(("webhook-id", message.id.clone()));
                headers.push(("webhook-timestamp", timestamp.to_string()));
                headers.push((
                    "webhook-signature",
                    sign::header(&secrets, &message.id, timestamp, message.body.as_bytes()),
                ));
            }
            Format::Nats => return Ok((0, self.publish(destination, message).await)),
            Format::Currents => {
                headers.push(("braze-currents-version", "1".into()));
                if let Some(token) = &destination.bearer_token {
                    headers.push(("authorization", format!("Bearer {token}")));
                }
            }
        }
        let answer = self.sender.post(&destination.url, &headers, message.body.clone().into_bytes()).await?;
        Ok((answer.status, verdict(answer.status, answer.retry_after)))
    }

    /// The message of `items`: their events as the destination takes them, or none when it
    /// takes none of them. It names every item taken, sent or not, so that the store takes
    /// them all out of the outbox.
    async fn form(
        &self,
        destination: &Destination,
        items: Vec<Item>,
        now: Timestamp,
    ) -> Result<Option<Message>, StoreError> {
        let ws = destination.workspace_id;
        let takes = |kind| destination.events.contains(&kind);
        // A global email state change goes only where `global_state_change` was asked for, a
        // group's only where `state_change` was; the message still covers every record.
        let kind_of = |record: &ChangeRecord| match record.group {
            crate::domain::ledger::ChainGroup::Group(_) => EventKind::StateChange,
            crate::domain::ledger::ChainGroup::Global => EventKind::GlobalStateChange,
        };
        let profiles: Vec<_> = items
            .iter()
            .filter_map(|item| match item {
                Item::Change(record @ ChangeRecord { subject: Subject::Profile(id), .. }) if takes(kind_of(record)) => {
                    Some(*id)
                }
                _ => None,
            })
            .collect();
        let external_ids =
            if profiles.is_empty() { Default::default() } else { self.store.external_ids_of(ws, &profiles).await? };
        let parsed: Vec<ExternalId> = external_ids.values().filter_map(|e| ExternalId::parse(e).ok()).collect();
        let asked: Vec<&ExternalId> = parsed.iter().collect();
        let views = if asked.is_empty() { Vec::new() } else { self.store.read_profiles(ws, &asked).await? };
        let mut events: Vec<Event> = Vec::with_capacity(items.len());
        let mut sent = Vec::with_capacity(items.len());
        for item in &items {
            let event = match item {
                Item::Change(record) if takes(kind_of(record)) => {
                    let details = match record.subject {
                        Subject::Profile(id) => {
                            let view = views.iter().flatten().find(|v| v.id == id);
                            SubjectDetails {
                                external_id: external_ids.get(&id).cloned(),
                                email: view.and_then(|v| v.email.clone()),
                                phone: view.and_then(|v| v.phone.clone()),
                            }
                        }
                        _ => SubjectDetails::default(),
                    };
                    let channel = record
                        .group
                        .group_id()
                        .and_then(|id| self.catalog.group(ws, id))
                        .map_or(crate::domain::subscription::Channel::Email, |g| g.channel);
                    events::state_change(record, channel, &details)
                }
                Item::Deletion(deletion) if takes(EventKind::UserDelete) => events::user_deleted(deletion),
                _ => continue,
            };
            sent.push(item.id());
            events.push(event);
        }
        if events.is_empty() {
            return Ok(None);
        }
        let body = String::from_utf8(events::body(&events)).expect("JSON is UTF-8");
        let mut message = Message::new(sent, body, now);
        message.changes = items.iter().map(Item::id).collect();
        Ok(Some(message))
    }
}

/// The id of the NATS destination of `workspace` for `url`: the same on every node.
fn nats_destination_id(workspace: crate::domain::ids::WorkspaceId, url: &str) -> uuid::Uuid {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(b"consentry nats destination\0")
        .chain_update(workspace.as_bytes())
        .chain_update(url.as_bytes())
        .finalize();
    let bytes: [u8; 16] = digest[..16].try_into().expect("16 bytes");
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}
