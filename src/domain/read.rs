//! The read endpoints' rules: how their query strings are read into identifiers, and how the
//! states found are answered.
//!
//! Braze clients send arrays in query strings three ways (`a=1&a=2`, `a[]=1`, `a%5B%5D=1`) and
//! often leave a phone's `+` unencoded, which form decoding turns into a space; all of these
//! are read as the caller meant them. Like the set endpoints, every problem is reported with
//! the parameter and the value.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::change::Contact;
use super::identifiers::{Email, ExternalId, Phone};
use super::ids::{GroupId, ProfileId};
use super::subscription::{Channel, StateView, SubscriptionState};
use super::tenant::GroupStatus;
use super::time::Timestamp;
use super::validation::{quote, GroupDirectory, Problems, MAX_IDENTIFIERS_PER_LIST};

/// The decoded `name=value` pairs of a query string, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Decodes a raw query string (without the `?`): percent-escapes and `+` as space, as
    /// every HTML form and HTTP client encodes it. A name or value whose escapes are not UTF-8
    /// (`%ff`) is a problem naming the parameter, not a U+FFFD read as if it had been sent.
    pub fn parse(raw: Option<&str>) -> Result<Self, Problems> {
        fn decode(raw: &str) -> Option<String> {
            let spaced = raw.replace('+', " ");
            String::from_utf8(percent_encoding::percent_decode_str(&spaced).collect()).ok()
        }
        let mut pairs = Vec::new();
        let mut problems = Problems::default();
        for pair in raw.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            match (decode(raw_name), decode(raw_value)) {
                (Some(name), Some(value)) => pairs.push((name, value)),
                (Some(name), None) => {
                    problems.push(&name, format_args!("{} is not valid UTF-8 once percent-decoded", quote(raw_value)))
                }
                (None, _) => problems.push(
                    "",
                    format_args!("the parameter name {} is not valid UTF-8 once percent-decoded", quote(raw_name)),
                ),
            }
        }
        if problems.is_empty() {
            Ok(QueryParams(pairs))
        } else {
            Err(problems)
        }
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

    /// `limit` (1 to `max`, `default` when absent) and `offset` (0 or more, 0 when absent), the
    /// paging of Braze's list endpoints; `None` for each that is a problem.
    pub fn limit_and_offset(
        &self,
        default: usize,
        max: usize,
        problems: &mut Problems,
    ) -> (Option<usize>, Option<usize>) {
        let limit = match self.single("limit", problems) {
            None => Some(default),
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Some(n),
                _ => {
                    problems.push("limit", format!("{} is not a whole number from 1 to {max}", quote(raw)));
                    None
                }
            },
        };
        let offset = match self.single("offset", problems) {
            None => Some(0),
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) => Some(n),
                _ => {
                    problems.push("offset", format!("{} is not a whole number of 0 or more", quote(raw)));
                    None
                }
            },
        };
        (limit, offset)
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

    /// The emails and phones asked, each once however often and however spelled: two
    /// spellings of one email are one user.
    pub fn distinct_contacts(&self) -> Vec<Contact> {
        let mut seen = HashSet::new();
        self.contacts().map(|(_, contact)| contact).filter(|c| seen.insert(c.clone())).collect()
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
    let (limit, offset) = params.limit_and_offset(MAX_USERS_PAGE, MAX_USERS_PAGE, &mut problems);
    match (limit, offset) {
        (Some(limit), Some(offset)) if problems.is_empty() => Ok(UserStatusQuery { identifiers, limit, offset }),
        _ => Err(problems),
    }
}

/// A profile as stored, with all its states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileView {
    /// Internal id.
    pub id: ProfileId,
    /// External id.
    pub external_id: Option<String>,
    /// Normalized email.
    pub email: Option<String>,
    /// E.164 phone.
    pub phone: Option<String>,
    /// Its states, by group id.
    pub states: Vec<StateView>,
}

impl ProfileView {
    /// Its state in `group`.
    pub fn state(&self, group: GroupId) -> Option<SubscriptionState> {
        self.states.iter().find(|s| s.group_id == group).map(|s| s.state)
    }
}

/// What is known of an email or phone: the profiles that carry it, else its orphaned states.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactView {
    /// Profiles carrying it, in internal id order.
    pub carriers: Vec<ProfileView>,
    /// Its orphaned states, expired ones included (read them through
    /// [`live_orphans`]); empty when some profile carries it.
    pub orphans: Vec<StateView>,
}

/// The answer of `GET /subscription/status/get` for an external id: its profile's state in
/// `group`, `Unknown` when it has none or there is no such profile.
pub fn profile_answer(profile: Option<&ProfileView>, group: GroupId) -> ReadState {
    ReadState::of(profile.and_then(|p| p.state(group)))
}

/// The answer of `GET /subscription/status/get` for an email or phone. Carried by profiles: the
/// most restrictive of their states. Carried by none: its orphaned state, if any. The view's
/// `orphans` must hold only the live ones (see [`live_orphans`]).
pub fn contact_answer(view: &ContactView, group: GroupId) -> ReadState {
    if view.carriers.is_empty() {
        ReadState::of(view.orphans.iter().find(|s| s.group_id == group).map(|s| s.state))
    } else {
        ReadState::most_restrictive(view.carriers.iter().map(|p| p.state(group)))
    }
}

/// One user `GET /subscription/user/status` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListedUser {
    /// A profile, with all its states.
    Profile(ProfileView),
    /// An email or phone that no profile carries but that holds orphaned state.
    Orphan {
        /// The email or phone.
        contact: Contact,
        /// Its live orphaned states.
        states: Vec<StateView>,
    },
}

/// The users `GET /subscription/user/status` lists: the profiles of the external ids asked,
/// then for each email and phone its orphaned identifier (if no profile carries it and it holds
/// live state) or else its carriers, each profile once, in that order. `contacts` must hold
/// only live orphaned states (see [`live_orphans`]).
pub fn list_users(profiles: Vec<Option<ProfileView>>, contacts: Vec<(Contact, ContactView)>) -> Vec<ListedUser> {
    let mut users = Vec::new();
    let mut listed = HashSet::new();
    let mut list_profile = |profile: ProfileView, users: &mut Vec<ListedUser>| {
        if listed.insert(profile.id) {
            users.push(ListedUser::Profile(profile));
        }
    };
    for profile in profiles.into_iter().flatten() {
        list_profile(profile, &mut users);
    }
    for (contact, view) in contacts {
        // The global email state alone does not list an address here: this endpoint lists
        // subscription groups, and Braze keeps `email_subscribe` out of it.
        if view.carriers.is_empty() && view.orphans.iter().any(|s| !super::email::is_global(s.group_id)) {
            let states = view.orphans.into_iter().filter(|s| !super::email::is_global(s.group_id)).collect();
            users.push(ListedUser::Orphan { contact, states });
        }
        for profile in view.carriers {
            list_profile(profile, &mut users);
        }
    }
    users
}

impl UserStatusQuery {
    /// The page of `users` this query asks for, and how many there were in all.
    pub fn page<T>(&self, users: Vec<T>) -> (Vec<T>, usize) {
        let total = users.len();
        (users.into_iter().skip(self.offset).take(self.limit).collect(), total)
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
            // Opted in is a global email state, a stronger subscribed; group states never hold it.
            Some(SubscriptionState::Subscribed | SubscriptionState::OptedIn) => ReadState::Subscribed,
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
                Some(SubscriptionState::Subscribed | SubscriptionState::OptedIn) => answer = ReadState::Subscribed,
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
