//! The validation toolkit every request parser shares: [`Problems`] (everything wrong with a
//! request, each with the place it was found and the offending value), the field readers
//! ([`parse_list`], [`group_field`], [`state_field`]) and the way client values are shown back
//! ([`describe`], [`quote`]).

use std::collections::HashSet;
use std::fmt::Write as _;

use serde_json::Value;

use super::identifiers::QuotedValue;
use super::ids::GroupId;
use super::subscription::{Channel, SubscriptionState};
use super::tenant::GroupStatus;

/// Identifiers in one list of one entry, as Braze allows.
pub const MAX_IDENTIFIERS_PER_LIST: usize = 50;
/// Problems listed in one error response; a hostile body with 100,000 bad items gets the first
/// ones and a count, not a response as large as itself.
pub const MAX_REPORTED_PROBLEMS: usize = 25;

/// What a validator needs to know of the caller's groups. Implemented by the catalog; an id of
/// another workspace must answer `None`, exactly like an id that does not exist.
pub trait GroupDirectory {
    /// The group's channel and status, if the caller's workspace has it.
    fn find(&self, id: GroupId) -> Option<(Channel, GroupStatus)>;
}

/// Everything wrong with a request, in the order found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Problems {
    list: Vec<String>,
    omitted: usize,
}

impl Problems {
    /// Adds a problem found at `path`.
    pub fn push(&mut self, path: &str, message: impl std::fmt::Display) {
        if self.list.len() < MAX_REPORTED_PROBLEMS {
            let mut line = String::with_capacity(path.len() + 64);
            if path.is_empty() {
                let _ = write!(line, "{message}");
            } else {
                let _ = write!(line, "{path}: {message}");
            }
            self.list.push(line);
        } else {
            self.omitted += 1;
        }
    }

    /// How many problems were found, reported or not: a parser compares it before and after
    /// reading a part to know whether that part was valid.
    pub fn count(&self) -> usize {
        self.list.len() + self.omitted
    }

    /// Whether nothing was found wrong.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The first problem: what the response's `message` says.
    pub fn first(&self) -> &str {
        self.list.first().map(String::as_str).unwrap_or("invalid request")
    }

    /// All reported problems, with a last line counting those left out.
    pub fn into_list(self) -> Vec<String> {
        let mut list = self.list;
        if self.omitted > 0 {
            list.push(format!("…and {} more problems", self.omitted));
        }
        list
    }
}

/// Reads a `subscription_group_id` found at `path`: an active group of the caller's workspace.
pub fn group_field(
    value: Option<&Value>,
    path: &str,
    groups: &dyn GroupDirectory,
    problems: &mut Problems,
) -> Option<(GroupId, Channel)> {
    match value {
        None | Some(Value::Null) => {
            problems.push(path, "is required");
            None
        }
        Some(Value::String(raw)) => match GroupId::parse(raw).and_then(|id| Some((id, groups.find(id)?))) {
            Some((id, (channel, GroupStatus::Active))) => Some((id, channel)),
            Some((_, (_, GroupStatus::Archived))) => {
                problems.push(path, format!("subscription group {} is archived", quote(raw)));
                None
            }
            None => {
                problems.push(path, format!("{} is not a subscription group of this workspace", quote(raw)));
                None
            }
        },
        Some(other) => {
            problems.push(path, format!("expected a string, got {}", describe(other)));
            None
        }
    }
}

/// Reads a `subscription_state` found at `path`: exactly `subscribed` or `unsubscribed`.
pub fn state_field(value: Option<&Value>, path: &str, problems: &mut Problems) -> Option<SubscriptionState> {
    match value {
        None | Some(Value::Null) => {
            problems.push(path, "is required");
            None
        }
        Some(Value::String(raw)) => match SubscriptionState::parse(raw) {
            Some(state) => Some(state),
            None => {
                problems.push(
                    path,
                    format!("{} is not a subscription state; use \"subscribed\" or \"unsubscribed\"", quote(raw)),
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

/// Reads a list of 1 to 50 identifiers (a single string counts as a list of one), parsing each
/// and dropping repeats of the same normalized value.
pub fn parse_list<T, E>(
    value: &Value,
    path: &str,
    problems: &mut Problems,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Vec<T>
where
    T: Eq + std::hash::Hash + Clone,
    E: std::fmt::Display,
{
    let items: &[Value] = match value {
        Value::String(_) => std::slice::from_ref(value),
        Value::Array(items) => items,
        other => {
            problems.push(path, format!("expected a string or an array of strings, got {}", describe(other)));
            return Vec::new();
        }
    };
    if items.is_empty() || items.len() > MAX_IDENTIFIERS_PER_LIST {
        problems.push(path, format!("must hold 1 to {MAX_IDENTIFIERS_PER_LIST} identifiers, got {}", items.len()));
        return Vec::new();
    }
    let single = value.is_string();
    let mut seen = HashSet::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = || if single { path.to_string() } else { format!("{path}[{i}]") };
        match item {
            Value::String(raw) => match parse(raw) {
                Ok(parsed) => {
                    if seen.insert(parsed.clone()) {
                        out.push(parsed);
                    }
                }
                Err(err) => problems.push(&item_path(), err),
            },
            other => problems.push(&item_path(), format!("expected a string, got {}", describe(other))),
        }
    }
    out
}

/// Names a JSON value's type for an error message, with the value itself when it is short.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => {
            let text = n.to_string();
            if text.len() <= 32 {
                format!("the number {text}")
            } else {
                "a number".into()
            }
        }
        Value::String(s) => format!("the string {}", quote(s)),
        Value::Array(items) => format!("an array of {} items", items.len()),
        Value::Object(_) => "an object".into(),
    }
}

/// Quotes a client's value for an error message: escaped and cut to 64 characters, so that a
/// hostile megabyte string never comes back in a response.
pub fn quote(raw: &str) -> String {
    QuotedValue::new(raw).to_string()
}
