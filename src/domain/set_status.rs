//! Validation of the set endpoints' bodies into a [`SetStatusCommand`].
//!
//! The whole body is checked before anything is applied; every problem is reported with the
//! place it was found (`subscription_groups[1].phones[3]`) and the offending value. The entry
//! rules are shared by V2 (plural field names, an array of entries) and V1 (singular field
//! names, one entry at the top level) through [`EntryFields`].

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::change::Contact;
use super::identifiers::{Email, ExternalId, Phone};
use super::ids::GroupId;
use super::subscription::{Channel, SubscriptionState};
use super::validation::{describe, group_field, parse_list, state_field, GroupDirectory, Problems};

/// Entries in one V2 request, as Braze allows.
pub const MAX_ENTRIES: usize = 25;

/// One validated entry: a state for a set of profiles and contacts in one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetEntry {
    /// The group, known to exist, be active and belong to the caller's workspace.
    pub group_id: GroupId,
    /// The state to set.
    pub state: SubscriptionState,
    /// Profiles by external id, without duplicates, in the order given.
    pub external_ids: Vec<ExternalId>,
    /// Emails (email groups) or phones (SMS/WhatsApp groups), without duplicates.
    pub contacts: Vec<Contact>,
    /// `use_double_opt_in_logic` as sent (false when absent).
    pub use_double_opt_in_logic: bool,
}

/// A validated set request: its entries, applied in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetStatusCommand {
    /// Entries in request order; a later entry for the same profile and group wins.
    pub entries: Vec<SetEntry>,
}

/// The field names an entry is read from: V2's plural lists or V1's singular fields.
#[derive(Debug, Clone, Copy)]
pub struct EntryFields {
    /// `external_ids` or `external_id`.
    pub external_ids: &'static str,
    /// `emails` or `email`.
    pub emails: &'static str,
    /// `phones` or `phone`.
    pub phones: &'static str,
}

/// V2's field names.
pub const V2_FIELDS: EntryFields = EntryFields { external_ids: "external_ids", emails: "emails", phones: "phones" };

/// V1's field names.
pub const V1_FIELDS: EntryFields = EntryFields { external_ids: "external_id", emails: "email", phones: "phone" };

/// Braze's own answer to a V1 request that sends both, kept word for word because clients
/// match on it.
pub const V1_EMAIL_AND_PHONE: &str = "Either an email address or a phone number should be provided, but not both.";

/// Validates a V1 body: one entry at the top level, with singular field names.
pub fn parse_v1(body: &Value, groups: &dyn GroupDirectory) -> Result<SetStatusCommand, Problems> {
    let mut problems = Problems::default();
    let Some(top) = body.as_object() else {
        problems.push("request body", format!("expected a JSON object, got {}", describe(body)));
        return Err(problems);
    };
    let present = |name: &str| top.get(name).is_some_and(|v| !v.is_null());
    if present(V1_FIELDS.emails) && present(V1_FIELDS.phones) {
        problems.push("", V1_EMAIL_AND_PHONE);
        return Err(problems);
    }
    // Typed Braze clients (the npm `braze-api` types, for one) require `external_id` on V1 and
    // so send `[]` when setting by email or phone alone: that means "no external ids".
    let trimmed;
    let top = match top.get(V1_FIELDS.external_ids) {
        Some(Value::Array(ids)) if ids.is_empty() && (present(V1_FIELDS.emails) || present(V1_FIELDS.phones)) => {
            trimmed =
                top.iter().filter(|(k, _)| *k != V1_FIELDS.external_ids).map(|(k, v)| (k.clone(), v.clone())).collect();
            &trimmed
        }
        _ => top,
    };
    match parse_entry(top, "", V1_FIELDS, groups, &mut problems) {
        Some(entry) if problems.is_empty() => Ok(SetStatusCommand { entries: vec![entry] }),
        _ => Err(problems),
    }
}

/// Validates a V2 body (`{"subscription_groups": [...]}`).
pub fn parse_v2(body: &Value, groups: &dyn GroupDirectory) -> Result<SetStatusCommand, Problems> {
    let mut problems = Problems::default();
    let Some(top) = body.as_object() else {
        problems.push("request body", format!("expected a JSON object, got {}", describe(body)));
        return Err(problems);
    };
    let entries = match top.get("subscription_groups") {
        None | Some(Value::Null) => {
            problems.push("subscription_groups", "is required");
            return Err(problems);
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            problems.push("subscription_groups", format!("expected an array of objects, got {}", describe(other)));
            return Err(problems);
        }
    };
    if entries.is_empty() || entries.len() > MAX_ENTRIES {
        problems.push("subscription_groups", format!("must hold 1 to {MAX_ENTRIES} entries, got {}", entries.len()));
        return Err(problems);
    }
    let mut parsed = Vec::with_capacity(entries.len());
    let mut path = String::with_capacity(64);
    for (i, item) in entries.iter().enumerate() {
        path.clear();
        let _ = write!(path, "subscription_groups[{i}]");
        match item.as_object() {
            Some(obj) => {
                if let Some(entry) = parse_entry(obj, &path, V2_FIELDS, groups, &mut problems) {
                    parsed.push(entry);
                }
            }
            None => problems.push(&path, format!("expected an object, got {}", describe(item))),
        }
    }
    if problems.is_empty() {
        Ok(SetStatusCommand { entries: parsed })
    } else {
        Err(problems)
    }
}

/// Validates one entry found at `path` (`""` for V1's top-level entry), adding every problem
/// found to `problems`. Returns the entry only if it is entirely valid.
pub fn parse_entry(
    obj: &Map<String, Value>,
    path: &str,
    fields: EntryFields,
    groups: &dyn GroupDirectory,
    problems: &mut Problems,
) -> Option<SetEntry> {
    let before = problems.count();
    let field_path = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };

    let group = group_field(obj.get("subscription_group_id"), &field_path("subscription_group_id"), groups, problems);
    let state = state_field(obj.get("subscription_state"), &field_path("subscription_state"), problems);

    let use_double_opt_in_logic = match obj.get("use_double_opt_in_logic") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(other) => {
            problems
                .push(&field_path("use_double_opt_in_logic"), format!("expected a boolean, got {}", describe(other)));
            false
        }
    };

    let external_ids = obj
        .get(fields.external_ids)
        .filter(|v| !v.is_null())
        .map(|v| parse_list(v, &field_path(fields.external_ids), problems, ExternalId::parse));
    let emails = obj
        .get(fields.emails)
        .filter(|v| !v.is_null())
        .map(|v| parse_list(v, &field_path(fields.emails), problems, Email::parse));
    let phones = obj
        .get(fields.phones)
        .filter(|v| !v.is_null())
        .map(|v| parse_list(v, &field_path(fields.phones), problems, Phone::parse));

    let entry_path = if path.is_empty() { "request body" } else { path };
    match (&external_ids, &emails, &phones) {
        (None, None, None) => problems.push(
            entry_path,
            format!("needs at least one of {}, {}, {}", fields.external_ids, fields.emails, fields.phones),
        ),
        (_, Some(_), Some(_)) => problems.push(
            entry_path,
            format!(
                "{} and {} cannot be sent together in one entry; send them in separate entries",
                fields.emails, fields.phones
            ),
        ),
        _ => {}
    }
    if let Some((id, channel)) = group {
        if emails.is_some() && channel != Channel::Email {
            problems.push(
                &field_path(fields.emails),
                format!(
                    "subscription group {id} is on the {} channel; emails only address email groups",
                    channel.as_str()
                ),
            );
        }
        if phones.is_some() && !channel.uses_phones() {
            problems.push(
                &field_path(fields.phones),
                format!("subscription group {id} is on the email channel; phones only address sms and whatsapp groups"),
            );
        }
    }

    if problems.count() != before {
        return None;
    }
    let (group_id, _) = group?;
    let contacts = match (emails, phones) {
        (Some(emails), _) => emails.into_iter().map(Contact::Email).collect(),
        (_, Some(phones)) => phones.into_iter().map(Contact::Phone).collect(),
        _ => Vec::new(),
    };
    Some(SetEntry {
        group_id,
        state: state?,
        external_ids: external_ids.unwrap_or_default(),
        contacts,
        use_double_opt_in_logic,
    })
}
