//! The read endpoints' rules: how their query strings are read into identifiers, and how the
//! states found are answered.
//!
//! Braze clients send arrays in query strings three ways (`a=1&a=2`, `a[]=1`, `a%5B%5D=1`) and
//! often leave a phone's `+` unencoded, which form decoding turns into a space; all of these
//! are read as the caller meant them. Like the set endpoints, every problem is reported with
//! the parameter and the value.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::catalog::GroupStatus;
use super::change::Contact;
use super::identifiers::{Email, ExternalId, Phone};
use super::ids::GroupId;
use super::set_status::{quote, GroupDirectory, Problems, MAX_IDENTIFIERS_PER_LIST};
use super::subscription::{Channel, StateView, SubscriptionState};
use super::time::Timestamp;

/// The decoded `name=value` pairs of a query string, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Decodes a raw query string (without the `?`): percent-escapes and `+` as space, as
    /// every HTML form and HTTP client encodes it.
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw.map(|raw| form_urlencoded::parse(raw.as_bytes()).into_owned().collect()).unwrap_or_default();
        QueryParams(pairs)
    }

    /// Every value of `name`, sent as `name` or `name[]`.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(key, _)| key.strip_suffix("[]").unwrap_or(key) == name).map(|(_, v)| v.as_str())
    }

    /// The value of a parameter that may be given once; a repeat is a problem.
    pub fn single<'a>(&'a self, name: &'a str, problems: &mut Problems) -> Option<&'a str> {
        let mut values = self.values(name);
        let first = values.next();
        if values.next().is_some() {
            problems.push(name, "may be given only once");
        }
        first
    }

    /// Whether `name` was sent at all (even empty).
    pub fn has(&self, name: &str) -> bool {
        self.values(name).next().is_some()
    }
}

/// An identifier as the caller wrote it, and as it is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked<T> {
    /// As written (a phone's `+` restored): the key of the answer.
    pub written: String,
    /// Parsed and normalized.
    pub value: T,
}

/// The identifiers a read asks about, each list without repeats, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentifierQuery {
    /// `external_id` values.
    pub external_ids: Vec<Asked<ExternalId>>,
    /// `email` values.
    pub emails: Vec<Asked<Email>>,
    /// `phone` values.
    pub phones: Vec<Asked<Phone>>,
}

impl IdentifierQuery {
    /// Whether nothing is asked.
    pub fn is_empty(&self) -> bool {
        self.external_ids.is_empty() && self.emails.is_empty() && self.phones.is_empty()
    }

    /// The emails and phones asked, as contacts, in that order.
    pub fn contacts(&self) -> impl Iterator<Item = (&str, Contact)> + '_ {
        let emails = self.emails.iter().map(|a| (a.written.as_str(), Contact::Email(a.value.clone())));
        let phones = self.phones.iter().map(|a| (a.written.as_str(), Contact::Phone(a.value.clone())));
        emails.chain(phones)
    }
}

/// Reads one identifier parameter: 1 to 50 values (a parameter that is absent reads as none).
pub fn identifiers<T, E>(
    params: &QueryParams,
    name: &str,
    problems: &mut Problems,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Vec<Asked<T>>
where
    E: std::fmt::Display,
{
    let raw: Vec<&str> = params.values(name).collect();
    if raw.len() > MAX_IDENTIFIERS_PER_LIST {
        problems.push(name, format!("must hold 1 to {MAX_IDENTIFIERS_PER_LIST} values, got {}", raw.len()));
        return Vec::new();
    }
    let single = raw.len() == 1;
    let mut seen = HashSet::with_capacity(raw.len());
    let mut out = Vec::with_capacity(raw.len());
    let mut path = String::new();
    for (i, value) in raw.into_iter().enumerate() {
        let written = if name == "phone" { restore_plus(value) } else { value.to_string() };
        path.clear();
        if single {
            path.push_str(name);
        } else {
            let _ = write!(path, "{name}[{i}]");
        }
        // Repeats are told apart as written, not as normalized: the answer has one key per
        // spelling the caller used, so each spelling finds its answer.
        if seen.contains(&written) {
            continue;
        }
        match parse(&written) {
            Ok(parsed) => {
                seen.insert(written.clone());
                out.push(Asked { written, value: parsed });
            }
            Err(err) => problems.push(&path, err),
        }
    }
    out
}

/// A phone whose leading `+` was sent unencoded arrives as a space; no phone starts with one.
fn restore_plus(value: &str) -> String {
    match value.strip_prefix(' ') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => format!("+{rest}"),
        _ => value.to_string(),
    }
}

/// Reads the `subscription_group_id` parameter: a group of the caller's workspace, archived or
/// not (an archived group keeps its states, and reading them is harmless).
pub fn group_param(
    params: &QueryParams,
    groups: &dyn GroupDirectory,
    problems: &mut Problems,
) -> Option<(GroupId, Channel)> {
    const NAME: &str = "subscription_group_id";
    let raw = match params.single(NAME, problems) {
        None | Some("") => {
            problems.push(NAME, "is required");
            return None;
        }
        Some(raw) => raw,
    };
    match GroupId::parse(raw).and_then(|id| Some((id, groups.find(id)?))) {
        Some((id, (channel, GroupStatus::Active | GroupStatus::Archived))) => Some((id, channel)),
        None => {
            problems.push(NAME, format!("{} is not a subscription group of this workspace", quote(raw)));
            None
        }
    }
}

/// A validated `GET /subscription/status/get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusQuery {
    /// The group asked about.
    pub group_id: GroupId,
    /// External ids, or else emails or phones (never both kinds).
    pub identifiers: IdentifierQuery,
}

/// Validates the query of `GET /subscription/status/get`. External ids take precedence: when
/// any is given, emails and phones are not read at all, as Braze documents.
pub fn parse_status_query(params: &QueryParams, groups: &dyn GroupDirectory) -> Result<StatusQuery, Problems> {
    let mut problems = Problems::default();
    let group = group_param(params, groups, &mut problems);
    let mut identifiers = IdentifierQuery::default();
    if params.has("external_id") {
        identifiers.external_ids = self::identifiers(params, "external_id", &mut problems, ExternalId::parse);
    } else if params.has("email") && params.has("phone") {
        problems.push("email", "and phone cannot be asked together; ask for one kind of identifier at a time");
    } else {
        identifiers.emails = self::identifiers(params, "email", &mut problems, Email::parse);
        identifiers.phones = self::identifiers(params, "phone", &mut problems, Phone::parse);
        check_channel(group, &identifiers, &mut problems);
    }
    if problems.is_empty() && identifiers.is_empty() {
        problems.push("query", "needs external_id, email or phone (1 to 50 values)");
    }
    match group {
        Some((group_id, _)) if problems.is_empty() => Ok(StatusQuery { group_id, identifiers }),
        _ => Err(problems),
    }
}

/// Emails only for email groups, phones only for SMS and WhatsApp groups, as on the set
/// endpoints: asking the other kind is a mistake worth telling, not an `Unknown`.
fn check_channel(group: Option<(GroupId, Channel)>, identifiers: &IdentifierQuery, problems: &mut Problems) {
    let Some((id, channel)) = group else { return };
    if !identifiers.emails.is_empty() && channel != Channel::Email {
        problems.push(
            "email",
            format!("subscription group {id} is on the {} channel; emails only address email groups", channel.as_str()),
        );
    }
    if !identifiers.phones.is_empty() && !channel.uses_phones() {
        problems.push(
            "phone",
            format!("subscription group {id} is on the email channel; phones only address sms and whatsapp groups"),
        );
    }
}

/// Largest (and default) page of `GET /subscription/user/status`.
pub const MAX_USERS_PAGE: usize = 100;

/// A validated `GET /subscription/user/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserStatusQuery {
    /// Identifiers whose profiles are listed; all three kinds may be given together.
    pub identifiers: IdentifierQuery,
    /// Most profiles in the answer.
    pub limit: usize,
    /// Profiles skipped before the answer.
    pub offset: usize,
}

/// Validates the query of `GET /subscription/user/status`.
pub fn parse_user_status_query(params: &QueryParams) -> Result<UserStatusQuery, Problems> {
    let mut problems = Problems::default();
    let identifiers = IdentifierQuery {
        external_ids: identifiers(params, "external_id", &mut problems, ExternalId::parse),
        emails: identifiers(params, "email", &mut problems, Email::parse),
        phones: identifiers(params, "phone", &mut problems, Phone::parse),
    };
    if problems.is_empty() && identifiers.is_empty() {
        problems.push("query", "needs external_id, email or phone (1 to 50 values each)");
    }
    let limit = match params.single("limit", &mut problems) {
        None => Some(MAX_USERS_PAGE),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_USERS_PAGE).contains(&n) => Some(n),
            _ => {
                problems.push("limit", format!("{} is not a whole number from 1 to {MAX_USERS_PAGE}", quote(raw)));
                None
            }
        },
    };
    let offset = match params.single("offset", &mut problems) {
        None => Some(0),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) => Some(n),
            _ => {
                problems.push("offset", format!("{} is not a whole number of 0 or more", quote(raw)));
                None
            }
        },
    };
    match (limit, offset) {
        (Some(limit), Some(offset)) if problems.is_empty() => Ok(UserStatusQuery { identifiers, limit, offset }),
        _ => Err(problems),
    }
}

/// A state as the read endpoints spell it. The schema's values are the variants' names, which
/// are [`ReadState::as_str`]'s spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(description = "A state as `/subscription/status/get` answers it; `Unknown` means no state at all.")]
pub enum ReadState {
    /// `Subscribed`
    Subscribed,
    /// `Unsubscribed`
    Unsubscribed,
    /// `Unknown`: no state at all.
    Unknown,
}

impl ReadState {
    /// Braze's capitalized spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadState::Subscribed => "Subscribed",
            ReadState::Unsubscribed => "Unsubscribed",
            ReadState::Unknown => "Unknown",
        }
    }

    /// The reading of one stored state.
    pub fn of(state: Option<SubscriptionState>) -> Self {
        match state {
            Some(SubscriptionState::Subscribed) => ReadState::Subscribed,
            Some(SubscriptionState::Unsubscribed) => ReadState::Unsubscribed,
            None => ReadState::Unknown,
        }
    }

    /// The answer for an email or phone carried by several profiles: the most restrictive of
    /// their states, because sending to someone who unsubscribed is the mistake that matters.
    pub fn most_restrictive(states: impl IntoIterator<Item = Option<SubscriptionState>>) -> Self {
        let mut answer = ReadState::Unknown;
        for state in states {
            match state {
                Some(SubscriptionState::Unsubscribed) => return ReadState::Unsubscribed,
                Some(SubscriptionState::Subscribed) => answer = ReadState::Subscribed,
                None => {}
            }
        }
        answer
    }
}

/// Orphaned states still inside their retention at `now`; older ones have expired, whether or
/// not the sweep has deleted them yet.
pub fn live_orphans(states: Vec<StateView>, now: Timestamp, retention: super::retention::Retention) -> Vec<StateView> {
    states.into_iter().filter(|s| retention.is_live(s.updated_at, now)).collect()
}
