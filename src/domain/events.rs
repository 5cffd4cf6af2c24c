//! The change stream's events: a change record as the Braze-Currents-shaped JSON that every
//! destination receives (see `docs/stream.md`).
//!
//! Pure: the store supplies what the record does not carry (the profile's external id and
//! addresses as they are when the event is first formed, the group's channel); this module only
//! decides the shape and the spellings, so both stores and every transport send the same bytes.

use serde::Serialize;

use super::change::{ChangeRecord, Source, Subject};
use super::ids::ProfileId;
use super::subscription::{Channel, SubscriptionState};

/// Braze's event type of a subscription group state change.
pub const STATE_CHANGE: &str = "users.behaviors.subscriptiongroup.StateChange";
/// Braze's event type of a change of the global email state.
pub const GLOBAL_STATE_CHANGE: &str = "users.behaviors.subscription.GlobalStateChange";
/// Braze's event type of a deleted user.
pub const USER_DELETE: &str = "users.UserDeleteRequest";

/// What the store knows about a record's subject beyond the record itself, read when the event
/// is formed. A deleted profile or an erased identifier has none of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectDetails {
    /// The profile's external id.
    pub external_id: Option<String>,
    /// The profile's email, or the orphaned email.
    pub email: Option<String>,
    /// The profile's phone, or the orphaned phone.
    pub phone: Option<String>,
}

/// One event as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Braze's event type.
    pub event_type: &'static str,
    /// The change record's id: stable across retries and replays, so receivers deduplicate.
    pub id: String,
    /// Seconds since the Unix epoch.
    pub time: i64,
    /// Who it is about.
    pub user: EventUser,
    /// What changed (absent for a deleted user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<EventProperties>,
}

/// The event's `user` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventUser {
    /// The internal profile id, `null` for an email or phone without a profile.
    pub user_id: Option<String>,
    /// The profile's external id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<Option<String>>,
}

/// The event's `properties` object: Braze's fields, then Consentry's own from the ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventProperties {
    /// The group; absent from a global email state change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_group_id: Option<String>,
    /// `Subscribed` or `Unsubscribed`.
    pub subscription_status: &'static str,
    /// `email`, `sms` or `whatsapp`.
    pub channel: &'static str,
    /// The email the change concerns, if any.
    pub email_address: Option<String>,
    /// The phone the change concerns, if any.
    pub phone_number: Option<String>,
    /// How the change happened, in Braze's words.
    pub state_change_source: &'static str,
    /// The workspace.
    pub app_group_id: String,
    /// The state before, `null` when there was none.
    pub previous_status: Option<&'static str>,
    /// Microseconds since the Unix epoch: orders events exactly.
    pub time_micros: i64,
    /// The API request that made the change, if any.
    pub request_id: Option<String>,
    /// The record's ledger hash.
    pub hash: String,
}

/// Braze's spelling of a state.
pub fn status_name(state: SubscriptionState) -> &'static str {
    match state {
        SubscriptionState::Subscribed => "Subscribed",
        SubscriptionState::Unsubscribed => "Unsubscribed",
        SubscriptionState::OptedIn => "Opted In",
    }
}

/// Braze's name for the way a change happened.
pub fn source_name(source: Source) -> &'static str {
    match source {
        Source::Api => "REST API",
        Source::OneClick => "List-Unsubscribe",
        Source::UnsubscribePage => "Subscription Page",
        Source::PreferencePage => "Preference Center",
        Source::Import => "CSV Import",
        Source::Admin => "Dashboard",
    }
}

/// The channel as the events spell it.
pub fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "email",
        Channel::Sms => "sms",
        Channel::Whatsapp => "whatsapp",
    }
}

/// The state change event of `record`, in a group of `channel`.
pub fn state_change(record: &ChangeRecord, channel: Channel, details: &SubjectDetails) -> Event {
    let (user_id, external_user_id, email, phone) = match &record.subject {
        Subject::Profile(id) => {
            (Some(id.0.to_string()), Some(details.external_id.clone()), details.email.clone(), details.phone.clone())
        }
        Subject::Orphan(_, contact) => {
            let text = Some(contact.as_str().to_string());
            match contact.kind() {
                super::change::ContactKind::Email => (None, None, text, None),
                super::change::ContactKind::Phone => (None, None, None, text),
            }
        }
        Subject::Erased(_) => (None, None, None, None),
    };
    // Only the address of the group's own channel: an SMS group's event does not leak the email.
    let (email, phone) = match channel {
        Channel::Email => (email, None),
        Channel::Sms | Channel::Whatsapp => (None, phone),
    };
    Event {
        event_type: match record.group.group_id() {
            Some(_) => STATE_CHANGE,
            None => GLOBAL_STATE_CHANGE,
        },
        id: record.id.0.to_string(),
        time: record.at.as_secs(),
        user: EventUser { user_id, external_user_id: Some(external_user_id.flatten()) },
        properties: Some(EventProperties {
            subscription_group_id: record.group.group_id().map(|id| id.to_string()),
            subscription_status: status_name(record.new),
            channel: channel_name(channel),
            email_address: email,
            phone_number: phone,
            state_change_source: source_name(record.kind),
            app_group_id: record.workspace_id.0.to_string(),
            previous_status: record.old.map(status_name),
            time_micros: record.at.0,
            request_id: record.trace.request_id.map(|r| r.0.to_string()),
            hash: record.hash.to_string(),
        }),
    }
}

/// A profile's deletion as the stream carries it: made by `POST /users/delete` and made
/// deliverable in the deletion's own commit. It names the profile by its internal id only:
/// the external id, email and phone the deletion erases are never in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deletion {
    /// The event's own id (a deletion is no change record), stable across retries.
    pub id: uuid::Uuid,
    /// When the deletion was committed.
    pub at: super::time::Timestamp,
    /// The deleted profile.
    pub profile: ProfileId,
}

/// The deletions of the profiles a delete removes, at `at`, each with a new event id.
pub fn deletions(profiles: &[ProfileId], at: super::time::Timestamp) -> Vec<Deletion> {
    profiles.iter().map(|&profile| Deletion { id: uuid::Uuid::now_v7(), at, profile }).collect()
}

/// The event of a deleted profile; `id` is the deletion's own id, `time` its seconds.
pub fn user_deleted(deletion: &Deletion) -> Event {
    Event {
        event_type: USER_DELETE,
        id: deletion.id.to_string(),
        time: deletion.at.as_secs(),
        user: EventUser { user_id: Some(deletion.profile.0.to_string()), external_user_id: None },
        properties: None,
    }
}

/// The body of one message: `{"events":[…]}`, the bytes every attempt resends.
pub fn body(events: &[Event]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        events: &'a [Event],
    }
    serde_json::to_vec(&Body { events }).expect("events always encode")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::change::{Contact, Trace};
    use crate::domain::identifiers::Email;
    use crate::domain::ids::{ChangeId, GroupId, OrphanId, RequestId, WorkspaceId};
    use crate::domain::ledger::{ChainGroup, ChainHash};
    use crate::domain::time::Timestamp;
    use uuid::Uuid;

    fn record(subject: Subject, old: Option<SubscriptionState>, kind: Source) -> ChangeRecord {
        ChangeRecord {
            id: ChangeId(Uuid::from_u128(7)),
            at: Timestamp(1_764_460_800_123_456),
            workspace_id: WorkspaceId(Uuid::from_u128(1)),
            group: ChainGroup::Group(GroupId(Uuid::from_u128(2))),
            subject,
            old,
            new: SubscriptionState::Unsubscribed,
            kind,
            trace: Trace { request_id: Some(RequestId(Uuid::from_u128(9))), ..Trace::default() },
            use_double_opt_in_logic: false,
            actor: None,
            seq: 2,
            previous_hash: ChainHash::default(),
            hash: ChainHash::default(),
        }
    }

    #[test]
    fn a_profile_change_has_braze_currents_fields_and_only_its_channel_address() {
        let details = SubjectDetails {
            external_id: Some("u-1".into()),
            email: Some("a@example.com".into()),
            phone: Some("+12223334444".into()),
        };
        let r =
            record(Subject::Profile(ProfileId(Uuid::from_u128(3))), Some(SubscriptionState::Subscribed), Source::Api);
        let json = serde_json::to_value(state_change(&r, Channel::Email, &details)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "event_type": "users.behaviors.subscriptiongroup.StateChange",
                "id": "00000000-0000-0000-0000-000000000007",
                "time": 1_764_460_800,
                "user": {"user_id": "00000000-0000-0000-0000-000000000003", "external_user_id": "u-1"},
                "properties": {
                    "subscription_group_id": "00000000-0000-0000-0000-000000000002",
                    "subscription_status": "Unsubscribed",
                    "channel": "email",
                    "email_address": "a@example.com",
                    "phone_number": null,
                    "state_change_source": "REST API",
                    "app_group_id": "00000000-0000-0000-0000-000000000001",
                    "previous_status": "Subscribed",
                    "time_micros": 1_764_460_800_123_456_i64,
                    "request_id": "00000000-0000-0000-0000-000000000009",
                    "hash": ChainHash::default().to_string(),
                }
            })
        );
    }

    #[test]
    fn an_orphaned_email_has_no_user_id_and_carries_its_address() {
        let contact = Contact::Email(Email::parse("o@example.com").unwrap());
        let r = record(Subject::Orphan(OrphanId(Uuid::from_u128(4)), contact), None, Source::OneClick);
        let event = state_change(&r, Channel::Email, &SubjectDetails::default());
        assert_eq!(event.user.user_id, None);
        let p = event.properties.unwrap();
        assert_eq!((p.email_address.as_deref(), p.previous_status), (Some("o@example.com"), None));
        assert_eq!(p.state_change_source, "List-Unsubscribe");
    }

    #[test]
    fn every_source_has_its_braze_name() {
        let names: Vec<_> = Source::ALL.into_iter().map(source_name).collect();
        assert_eq!(
            names,
            ["REST API", "List-Unsubscribe", "Subscription Page", "Preference Center", "CSV Import", "Dashboard"]
        );
    }

    #[test]
    fn a_deleted_user_is_a_user_delete_request_without_properties() {
        let deletion =
            Deletion { id: Uuid::from_u128(5), at: Timestamp(2_000_000), profile: ProfileId(Uuid::from_u128(3)) };
        let event = user_deleted(&deletion);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event_type"], "users.UserDeleteRequest");
        assert_eq!(json["time"], 2);
        assert!(json.get("properties").is_none());
        assert!(json["user"].get("external_user_id").is_none());
        assert_eq!(json["user"]["user_id"], "00000000-0000-0000-0000-000000000003");
        assert_eq!(json.as_object().unwrap().len(), 4, "event_type, id, time, user: {json}");
    }
}
