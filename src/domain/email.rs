//! The global email state (Braze's `email_subscribe`): `opted_in`, `subscribed` or
//! `unsubscribed` per profile and per orphaned email, independent of group states, `subscribed`
//! when never set.
//!
//! It is stored as the state of one more group, [`ChainGroup::Global`]'s storage id (the nil
//! id), so that every rule of group states holds for it without a second code path: an email
//! reaches every profile that carries it or else is kept as orphaned state, a profile inherits
//! it with its email, orphaned state expires after the same retention, `users/delete` erases it,
//! and its changes are records of their own chain. This module validates `POST /email/status`
//! and `GET /email/unsubscribes`, and decides what the unsubscribe index (the emails whose
//! global state became `unsubscribed`, by time) records for a change.

use serde_json::Value;

use super::change::{ChangeRecord, Contact};
use super::identifiers::Email;
use super::ids::GroupId;
use super::ledger::ChainGroup;
use super::read::QueryParams;
use super::set_status::{SetEntry, SetStatusCommand};
use super::subscription::SubscriptionState;
use super::time::Timestamp;
use super::validation::{describe, parse_list, quote, Problems};

/// The id the global email state is stored under.
pub const GLOBAL: GroupId = GroupId(uuid::Uuid::nil());

/// Whether a stored group id is the global email state's (never listed among groups).
pub fn is_global(group: GroupId) -> bool {
    group == GLOBAL
}

/// The state a profile or email reads as when it never had one.
pub const DEFAULT_STATE: SubscriptionState = SubscriptionState::Subscribed;

/// Reads a global `subscription_state` (or `email_subscribe`) found at `path`.
pub fn global_state_field(value: Option<&Value>, path: &str, problems: &mut Problems) -> Option<SubscriptionState> {
    match value {
        None | Some(Value::Null) => {
            problems.push(path, "is required");
            None
        }
        Some(Value::String(raw)) => match SubscriptionState::parse_global(raw) {
            Some(state) => Some(state),
            None => {
                problems.push(
                    path,
                    format!(
                        "{} is not a global email state; use \"opted_in\", \"subscribed\" or \"unsubscribed\"",
                        quote(raw)
                    ),
                );
                None
            }
        },
        Some(other) => {
            problems.push(path, format!("expected a string, got {}", describe(other)));
            None
        }
    }
}

/// Validates a `POST /email/status` body into a command on the global state: the same command
/// as a set request on one email group, so that it is planned and stored by the same code.
pub fn parse_email_status(body: &Value) -> Result<SetStatusCommand, Problems> {
    let mut problems = Problems::default();
    let Some(top) = body.as_object() else {
        problems.push("request body", format!("expected a JSON object, got {}", describe(body)));
        return Err(problems);
    };
    let emails = match top.get("email") {
        None | Some(Value::Null) => {
            problems.push("email", "is required");
            Vec::new()
        }
        Some(value) => parse_list(value, "email", &mut problems, Email::parse),
    };
    let state = global_state_field(top.get("subscription_state"), "subscription_state", &mut problems);
    match state {
        Some(state) if problems.is_empty() => Ok(global_command(emails, state)),
        _ => Err(problems),
    }
}

/// The command that sets the global state of `emails` (every profile carrying each, else the
/// email's orphaned state).
pub fn global_command(emails: Vec<Email>, state: SubscriptionState) -> SetStatusCommand {
    SetStatusCommand {
        entries: vec![SetEntry {
            group_id: GLOBAL,
            state,
            external_ids: Vec::new(),
            contacts: emails.into_iter().map(Contact::Email).collect(),
            use_double_opt_in_logic: false,
        }],
    }
}

/// What the unsubscribe index records for one email: the time its global state became
/// `unsubscribed`, or `None` to drop it (it is no longer unsubscribed, or was erased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeUpdate {
    /// The email.
    pub email: Email,
    /// When it became unsubscribed; `None` removes it from the index.
    pub at: Option<Timestamp>,
}

/// The index updates of a change of the global state of a subject carrying `email`: the latest
/// change wins, so an email that unsubscribes again moves to its new time, and one that
/// subscribes again leaves the list.
pub fn unsubscribe_update(record: &ChangeRecord, email: &Email) -> Option<UnsubscribeUpdate> {
    if record.group != ChainGroup::Global {
        return None;
    }
    let at = (record.new == SubscriptionState::Unsubscribed).then_some(record.at);
    Some(UnsubscribeUpdate { email: email.clone(), at })
}

/// The index updates of `users/delete` releasing these emails and phones: an email no profile
/// carries any more leaves the list with the rest of its personal data.
pub fn released(contacts: &[Contact]) -> Vec<UnsubscribeUpdate> {
    contacts
        .iter()
        .filter_map(|c| match c {
            Contact::Email(email) => Some(UnsubscribeUpdate { email: email.clone(), at: None }),
            Contact::Phone(_) => None,
        })
        .collect()
}

/// Most entries one `GET /email/unsubscribes` page holds, as Braze allows.
pub const MAX_UNSUBSCRIBES_PAGE: usize = 500;
/// Entries a page holds when `limit` is absent.
pub const DEFAULT_UNSUBSCRIBES_PAGE: usize = 100;
/// The longest range one request may ask for.
pub const MAX_RANGE_DAYS: i64 = 366;

/// A validated `GET /email/unsubscribes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribesQuery {
    /// Start of the range (inclusive); `None` when only `email` and `end_date` were given.
    pub since: Option<Timestamp>,
    /// End of the range (exclusive): `end_date` at midnight UTC, as Braze reads it.
    pub until: Timestamp,
    /// Entries to return.
    pub limit: usize,
    /// Entries to skip.
    pub offset: usize,
    /// Oldest first (`asc`) or newest first (`desc`, the default).
    pub ascending: bool,
    /// Only this email.
    pub email: Option<Email>,
}

fn date_param(params: &QueryParams, name: &str, problems: &mut Problems) -> Option<Option<Timestamp>> {
    let raw = params.single(name, problems)?;
    let shaped = raw.len() == 10
        && raw.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    let parsed = shaped.then(|| super::history::parse_rfc3339(&format!("{raw}T00:00:00Z")).ok()).flatten();
    match parsed {
        Some(at) => Some(Some(at)),
        None => {
            problems.push(name, format!("{} is not a date in YYYY-MM-DD format", quote(raw)));
            None
        }
    }
}

/// Validates the query of `GET /email/unsubscribes`: `end_date` and one of `start_date` or
/// `email` are required (as Braze documents), the range is at most a year.
pub fn parse_unsubscribes_query(params: &QueryParams) -> Result<UnsubscribesQuery, Problems> {
    let mut problems = Problems::default();
    let start = if params.has("start_date") { date_param(params, "start_date", &mut problems) } else { Some(None) };
    let end = if params.has("end_date") {
        date_param(params, "end_date", &mut problems).flatten()
    } else {
        problems.push("end_date", "is required");
        None
    };
    let email = match params.single("email", &mut problems) {
        None => None,
        Some(raw) => match Email::parse(raw) {
            Ok(email) => Some(email),
            Err(e) => {
                problems.push("email", e);
                None
            }
        },
    };
    let (limit, offset) = params.limit_and_offset(DEFAULT_UNSUBSCRIBES_PAGE, MAX_UNSUBSCRIBES_PAGE, &mut problems);
    let ascending = match params.single("sort_direction", &mut problems) {
        None | Some("desc") => Some(false),
        Some("asc") => Some(true),
        Some(raw) => {
            problems.push("sort_direction", format!("{} is not a sort direction; use \"asc\" or \"desc\"", quote(raw)));
            None
        }
    };
    if let (Some(Some(start)), Some(end)) = (start, end) {
        if start >= end {
            problems.push("start_date", "must be earlier than end_date");
        } else if end.0 - start.0 > MAX_RANGE_DAYS * 86_400_000_000 {
            problems.push("end_date", "the range from start_date to end_date must be at most one year");
        }
    }
    if matches!(start, Some(None)) && email.is_none() && problems.is_empty() {
        problems.push("start_date", "is required unless email is given");
    }
    match (start, end, limit, offset, ascending) {
        (Some(since), Some(until), Some(limit), Some(offset), Some(ascending)) if problems.is_empty() => {
            Ok(UnsubscribesQuery { since, until, limit, offset, ascending, email })
        }
        _ => Err(problems),
    }
}

/// One listed unsubscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The email.
    pub email: String,
    /// When its global state became `unsubscribed` (its latest such change).
    pub at: Timestamp,
}
