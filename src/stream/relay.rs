//! The relay: a task on every server that delivers each destination's messages, one at a time
//! per destination so that events go out in ledger order.
//!
//! It looks for work every [`POLL`] of real time, but decides what is due by the store's
//! [`Clock`], so tests move retries along with a manual clock instead of sleeping.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::domain::change::{ChangeRecord, Subject};
use crate::domain::events::{self, Event, SubjectDetails};
use crate::domain::identifiers::ExternalId;
use crate::domain::time::{Clock, Timestamp};
use crate::store::{Store, StoreError};

use super::destination::{retry_delay, verdict, DeliveryState, Destination, EventKind, Format, Message, Verdict};
use super::send::{SendError, Sender};
use super::sign;
use super::StreamStore;

/// How often the relay looks for work.
pub const POLL: Duration = Duration::from_millis(100);
/// How long a node holds a message it sends (PostgreSQL): past the send timeout, so that a
/// live node's lease never expires under it.
const LEASE: Duration = Duration::from_secs(60);
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
}

impl Relay {
    /// A relay over `catalog`'s store; `allow_private` as `serve --allow-private-webhooks`.
    pub fn new(catalog: Arc<Catalog>, clock: Clock, allow_private: bool) -> Relay {
        let store = catalog.store().clone();
        Relay { stream: StreamStore::new(store.clone()), store, catalog, clock, sender: Sender::new(allow_private) }
    }

    /// Delivers until the task is dropped.
    pub async fn run(self) {
        loop {
            if let Err(err) = self.pass().await {
                tracing::warn!(error = %crate::store::report(&err), "the change stream's relay failed a pass; it tries again");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One look at every destination.
    pub async fn pass(&self) -> Result<(), StoreError> {
        let destinations = self.stream.list().await?;
        let mut live = Vec::new();
        for (destination, mut state) in destinations {
            if state.disabled.is_some() {
                continue;
            }
            for _ in 0..PER_PASS {
                match self.deliver_one(&destination, &mut state).await {
                    Ok(true) => {}
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
        self.stream.collect(&live).await
    }

    /// Sends the destination's next due message; whether it should go on at once.
    async fn deliver_one(&self, destination: &Destination, state: &mut DeliveryState) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let form = |records: Vec<ChangeRecord>| self.form(destination, records, now);
        let Some(mut message) = self.stream.next_message(destination, state, now, now.plus(LEASE), form).await? else {
            return Ok(false);
        };
        let outcome = self.attempt(destination, &message).await;
        let now = self.clock.now();
        message.attempts += 1;
        let retry = match outcome {
            Ok(Verdict::Delivered) => {
                state.failing_since = None;
                None
            }
            Ok(Verdict::Gone) => {
                state.disabled = Some("the receiver answered 410 Gone".into());
                state.last_error = Some("HTTP 410".into());
                Some(message)
            }
            Ok(Verdict::Failed(why)) => {
                tracing::warn!(destination = %destination.id, message = %message.id, why = %why, "a message failed for good");
                state.last_error = Some(why);
                None
            }
            Err(SendError::Refused(why)) => {
                state.disabled = Some(why.clone());
                state.last_error = Some(why);
                Some(message)
            }
            Ok(Verdict::Retry { why, after }) => self.retry(state, message, why, after, now),
            Err(SendError::Network(why)) => self.retry(state, message, why, None, now),
        };
        let more = retry.is_none() && state.disabled.is_none();
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

    /// One POST of `message`.
    async fn attempt(&self, destination: &Destination, message: &Message) -> Result<Verdict, SendError> {
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
            Format::Currents => {
                headers.push(("braze-currents-version", "1".into()));
                if let Some(token) = &destination.bearer_token {
                    headers.push(("authorization", format!("Bearer {token}")));
                }
            }
        }
        let answer = self.sender.post(&destination.url, &headers, message.body.clone().into_bytes()).await?;
        Ok(verdict(answer.status, answer.retry_after))
    }

    /// The message of `records`: their events as the destination takes them, or none when it
    /// takes none of them.
    async fn form(
        &self,
        destination: &Destination,
        records: Vec<ChangeRecord>,
        now: Timestamp,
    ) -> Result<Option<Message>, StoreError> {
        // A global email state change goes only where `global_state_change` was asked for, a
        // group's only where `state_change` was; the message still covers every record.
        let wanted = |r: &ChangeRecord| {
            let kind = match r.group {
                crate::domain::ledger::ChainGroup::Group(_) => EventKind::StateChange,
                crate::domain::ledger::ChainGroup::Global => EventKind::GlobalStateChange,
            };
            destination.events.contains(&kind)
        };
        if !records.iter().any(wanted) {
            return Ok(None);
        }
        let ws = destination.workspace_id;
        let profiles: Vec<_> = records
            .iter()
            .filter_map(|r| match r.subject {
                Subject::Profile(id) => Some(id),
                _ => None,
            })
            .collect();
        let external_ids = self.store.external_ids_of(ws, &profiles).await?;
        let parsed: Vec<ExternalId> = external_ids.values().filter_map(|e| ExternalId::parse(e).ok()).collect();
        let asked: Vec<&ExternalId> = parsed.iter().collect();
        let views = self.store.read_profiles(ws, &asked).await?;
        let mut events: Vec<Event> = Vec::with_capacity(records.len());
        for record in records.iter().filter(|r| wanted(r)) {
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
            events.push(events::state_change(record, channel, &details));
        }
        let body = String::from_utf8(events::body(&events)).expect("JSON is UTF-8");
        Ok(Some(Message::new(records.iter().map(|r| r.id).collect(), body, now)))
    }
}
