//! Reading the ledger: the query of `GET /consent/history` (and of `consentry ledger export`),
//! its opaque paging cursor, RFC 3339 times on input, the shape a record takes on the wire, and
//! the state of a subject as of any instant, computed from its records.
//!
//! # Whose records a subject has
//!
//! A subject is named as it is identified *now*:
//! - an external id: its profile's own records, plus the records of its current email and of
//!   its current phone from when no profile carried them (orphaned identifier records). Those
//!   are the records a profile inherits: an email or phone gets orphaned records only while no
//!   profile carries it, and a profile that takes it inherits its orphaned states. The ledger
//!   does not record which profile an identifier moved to, so the rule is the one the store can
//!   answer from its indexes: the orphaned records of the identifiers the profile carries now.
//!   A profile that drops an email stops showing that email's orphaned records; one that takes
//!   it later shows them.
//! - an email or phone: the records of every profile carrying it now, and its own orphaned
//!   records.
//! - a deleted profile has no external id any more: it is unknown, at any time. Its records
//!   stay in the ledger (`ledger export` without a subject lists them, without identifiers).
//!
//! # Order and paging
//!
//! Records come oldest first, by (time, record id). The cursor is the position of the last
//! record of a page, so the next page starts strictly after it: across pages every record
//! that matched when the first page was read appears exactly once, whatever is written
//! meanwhile (new records land after the cursor, or, on PostgreSQL with several nodes whose
//! clocks disagree, possibly before it, where they are not shown twice either). A cursor also
//! carries a fingerprint of the query it belongs to, so that it cannot be replayed against
//! another subject or other filters by mistake.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::change::{ChangeRecord, Contact, Endpoint, Subject};
use super::identifiers::{Email, ExternalId, Phone};
use super::ids::{ChangeId, GroupId};
use super::read::{self, QueryParams};
use super::subscription::{Channel, StateView, SubscriptionState};
use super::tenant::GroupStatus;
use super::time::Timestamp;
use super::validation::{quote, GroupDirectory, Problems};

/// Default page of `GET /consent/history`.
pub const DEFAULT_HISTORY_PAGE: usize = 100;
/// Largest page of `GET /consent/history`.
pub const MAX_HISTORY_PAGE: usize = 1000;
/// The `subscription_group_id` value that names the global email state.
pub const GLOBAL_GROUP: &str = "global";

/// Whose records are asked for, as the caller named the subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HistorySubject {
    /// A profile, by external id.
    ExternalId(ExternalId),
    /// An email or a phone.
    Contact(Contact),
}

impl HistorySubject {
    /// The parameter the subject was named by.
    pub fn field(&self) -> &'static str {
        match self {
            HistorySubject::ExternalId(_) => "external_id",
            HistorySubject::Contact(Contact::Email(_)) => "email",
            HistorySubject::Contact(Contact::Phone(_)) => "phone",
        }
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        match self {
            HistorySubject::ExternalId(id) => id.as_str(),
            HistorySubject::Contact(contact) => contact.as_str(),
        }
    }
}

/// Which groups' records are asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupFilter {
    /// Subscription groups named.
    pub groups: Vec<GroupId>,
    /// Whether `global` (the global email state) was named.
    pub global: bool,
}

impl GroupFilter {
    /// The ids the stores keep the named groups' records under, the global state's included.
    pub fn storage_ids(&self) -> Vec<GroupId> {
        let mut ids = self.groups.clone();
        if self.global {
            ids.push(super::email::GLOBAL);
        }
        ids
    }
}

/// A position in the ledger's order: (time, record id). Records after a position sort after
/// it in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The record's time.
    pub at: Timestamp,
    /// The record's id.
    pub id: ChangeId,
}

impl Position {
    /// The position of a record.
    pub fn of(record: &ChangeRecord) -> Position {
        Position { at: record.at, id: record.id }
    }
}

/// The time and order bounds of a read of the ledger, shared by the history endpoint, the
/// export and the as-of reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    /// Only records at or after this time.
    pub since: Option<Timestamp>,
    /// Only records before this time.
    pub until: Option<Timestamp>,
    /// Only records after this position (the cursor).
    pub after: Option<Position>,
}

impl Window {
    /// Whether a record at `position` falls in the window.
    pub fn contains(&self, position: Position) -> bool {
        self.since.is_none_or(|since| position.at >= since)
            && self.until.is_none_or(|until| position.at < until)
            && self.after.is_none_or(|after| position > after)
    }

    /// The window of every record up to and including `at`: what an as-of read needs.
    pub fn up_to(at: Timestamp) -> Window {
        Window { since: None, until: Some(Timestamp(at.0.saturating_add(1))), after: None }
    }
}

/// A validated `GET /consent/history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Whose records.
    pub subject: HistorySubject,
    /// Which groups; `None` is every group.
    pub groups: Option<GroupFilter>,
    /// Time bounds and the cursor's position.
    pub window: Window,
    /// Most records in the answer.
    pub limit: usize,
}

impl HistoryQuery {
    /// Whether a record passes the group filter.
    pub fn wants_group(&self, group: GroupId) -> bool {
        self.groups.as_ref().is_none_or(|f| f.storage_ids().contains(&group))
    }

    /// The cursor that continues after `last`.
    pub fn cursor_after(&self, last: Position) -> String {
        Cursor { fingerprint: self.fingerprint(), position: last }.encode()
    }

    /// What the query asks, without its cursor and limit: a cursor is only valid for the
    /// query that produced it.
    fn fingerprint(&self) -> [u8; 8] {
        let mut hash = Sha256::new();
        hash.update(self.subject.field().as_bytes());
        hash.update([0]);
        hash.update(self.subject.as_str().as_bytes());
        hash.update([0]);
        match &self.groups {
            None => hash.update(b"*"),
            Some(filter) => {
                let mut groups = filter.groups.clone();
                groups.sort();
                for group in groups {
                    hash.update(group.as_bytes());
                }
                hash.update([u8::from(filter.global)]);
            }
        }
        for bound in [self.window.since, self.window.until] {
            match bound {
                Some(t) => {
                    hash.update([1]);
                    hash.update(t.0.to_be_bytes());
                }
                None => hash.update([0]),
            }
        }
        let digest = hash.finalize();
        digest[..8].try_into().expect("a SHA-256 digest has 8 bytes")
    }
}

/// The paging cursor: version 1 is the fingerprint of its query (8 bytes), the position's
/// time (8 bytes, big-endian) and record id (16 bytes), base64url without padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    fingerprint: [u8; 8],
    position: Position,
}

const CURSOR_VERSION: u8 = 1;
const CURSOR_LEN: usize = 1 + 8 + 8 + 16;

impl Cursor {
    fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(CURSOR_LEN);
        bytes.push(CURSOR_VERSION);
        bytes.extend_from_slice(&self.fingerprint);
        bytes.extend_from_slice(&self.position.at.0.to_be_bytes());
        bytes.extend_from_slice(self.position.id.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode(raw: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        if bytes.len() != CURSOR_LEN || bytes[0] != CURSOR_VERSION {
            return None;
        }
        let fingerprint = bytes[1..9].try_into().ok()?;
        let at = Timestamp(i64::from_be_bytes(bytes[9..17].try_into().ok()?));
        let id = ChangeId::from_bytes(bytes[17..33].try_into().ok()?);
        Some(Cursor { fingerprint, position: Position { at, id } })
    }
}

/// Validates the query of `GET /consent/history`. `groups` is the caller's workspace.
pub fn parse_history_query(params: &QueryParams, groups: &dyn GroupDirectory) -> Result<HistoryQuery, Problems> {
    let mut problems = Problems::default();
    let subject = subject_param(params, &mut problems);
    let filter = group_filter(params, groups, &mut problems);
    let since = time_param(params, "since", &mut problems);
    let until = time_param(params, "until", &mut problems);
    if let (Some(since), Some(until)) = (since, until) {
        if until <= since {
            problems.push("until", format!("{} is not after since ({})", until.to_rfc3339(), since.to_rfc3339()));
        }
    }
    let limit = match params.single("limit", &mut problems) {
        None => Some(DEFAULT_HISTORY_PAGE),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_HISTORY_PAGE).contains(&n) => Some(n),
            _ => {
                problems.push("limit", format!("{} is not a whole number from 1 to {MAX_HISTORY_PAGE}", quote(raw)));
                None
            }
        },
    };
    let cursor = params.single("cursor", &mut problems);
    let (Some(subject), Some(limit)) = (subject, limit) else { return Err(problems) };
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut query = HistoryQuery { subject, groups: filter, window: Window { since, until, after: None }, limit };
    if let Some(raw) = cursor {
        match Cursor::decode(raw) {
            Some(cursor) if cursor.fingerprint == query.fingerprint() => query.window.after = Some(cursor.position),
            Some(_) => problems.push(
                "cursor",
                format!("{} belongs to another query: send the same subject and filters as the first page", quote(raw)),
            ),
            None => problems.push("cursor", format!("{} is not a cursor this server handed out", quote(raw))),
        }
    }
    if problems.is_empty() {
        Ok(query)
    } else {
        Err(problems)
    }
}

/// Validates a query that names one subject (`GET /consent/proof`): exactly one of
/// `external_id`, `email` and `phone`, with one value.
pub fn parse_subject(params: &QueryParams) -> Result<HistorySubject, Problems> {
    let mut problems = Problems::default();
    match subject_param(params, &mut problems) {
        Some(subject) if problems.is_empty() => Ok(subject),
        _ => Err(problems),
    }
}

/// Exactly one of `external_id`, `email` and `phone`, with one value.
fn subject_param(params: &QueryParams, problems: &mut Problems) -> Option<HistorySubject> {
    let given: Vec<&str> = ["external_id", "email", "phone"].into_iter().filter(|name| params.has(name)).collect();
    let name = match given.as_slice() {
        [one] => *one,
        [] => {
            problems.push("query", "needs one of external_id, email or phone");
            return None;
        }
        more => {
            problems.push(more[1], format!("cannot be asked together with {}; ask for one subject at a time", more[0]));
            return None;
        }
    };
    if params.values(name).count() > 1 {
        problems.push(name, "may be given only once: the history is of one subject");
        return None;
    }
    match name {
        "external_id" => read::identifiers(params, name, problems, ExternalId::parse)
            .pop()
            .map(|a| HistorySubject::ExternalId(a.value)),
        "email" => read::identifiers(params, name, problems, Email::parse)
            .pop()
            .map(|a| HistorySubject::Contact(Contact::Email(a.value))),
        _ => read::identifiers(params, name, problems, Phone::parse)
            .pop()
            .map(|a| HistorySubject::Contact(Contact::Phone(a.value))),
    }
}

/// `subscription_group_id` (repeatable): groups of the workspace, archived or not, or `global`.
fn group_filter(params: &QueryParams, groups: &dyn GroupDirectory, problems: &mut Problems) -> Option<GroupFilter> {
    const NAME: &str = "subscription_group_id";
    let raw: Vec<&str> = params.values(NAME).collect();
    if raw.is_empty() {
        return None;
    }
    let single = raw.len() == 1;
    let mut filter = GroupFilter::default();
    for (i, value) in raw.into_iter().enumerate() {
        let path = if single { NAME.to_string() } else { format!("{NAME}[{i}]") };
        if value == GLOBAL_GROUP {
            filter.global = true;
            continue;
        }
        match GroupId::parse(value)
            .filter(|id| matches!(groups.find(*id), Some((_, GroupStatus::Active | GroupStatus::Archived))))
        {
            Some(id) if !filter.groups.contains(&id) => filter.groups.push(id),
            Some(_) => {}
            None => problems.push(
                &path,
                format!("{} is not a subscription group of this workspace, nor {GLOBAL_GROUP:?}", quote(value)),
            ),
        }
    }
    Some(filter)
}

/// An optional RFC 3339 time parameter, given at most once.
pub fn time_param(params: &QueryParams, name: &str, problems: &mut Problems) -> Option<Timestamp> {
    let raw = params.single(name, problems)?;
    match parse_rfc3339(raw) {
        Ok(t) => Some(t),
        Err(why) => {
            problems.push(name, format!("{} is not an RFC 3339 time ({why})", quote(raw)));
            None
        }
    }
}

/// Parses an RFC 3339 date-time with any offset (`2025-01-31T12:00:00Z`,
/// `2025-01-31T13:00:00.5+01:00`) to the microsecond; digits past the microsecond are cut.
/// A `+` offset whose sign arrived as a space (an unencoded `+` in a query string) reads as
/// `+`, as the caller meant it.
pub fn parse_rfc3339(raw: &str) -> Result<Timestamp, &'static str> {
    let b = raw.as_bytes();
    let digits = |from: usize, len: usize| -> Result<i64, &'static str> {
        let part = b.get(from..from + len).ok_or("too short")?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err("expected YYYY-MM-DDTHH:MM:SS followed by Z or an offset");
        }
        Ok(part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let expect = |at: usize, chars: &[u8]| -> Result<(), &'static str> {
        match b.get(at) {
            Some(c) if chars.contains(c) => Ok(()),
            _ => Err("expected YYYY-MM-DDTHH:MM:SS followed by Z or an offset"),
        }
    };
    let year = digits(0, 4)?;
    expect(4, b"-")?;
    let month = digits(5, 2)?;
    expect(7, b"-")?;
    let day = digits(8, 2)?;
    expect(10, b"Tt ")?;
    let hour = digits(11, 2)?;
    expect(13, b":")?;
    let minute = digits(14, 2)?;
    expect(16, b":")?;
    let second = digits(17, 2)?;
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 6 {
                micros = micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err("a decimal point needs digits after it");
        }
        for _ in (i - start)..6 {
            micros *= 10;
        }
    }
    let offset_minutes = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-' | b' ')) if i + 6 == b.len() => {
            let hours = digits(i + 1, 2)?;
            expect(i + 3, b":")?;
            let minutes = digits(i + 4, 2)?;
            if hours > 23 || minutes > 59 {
                return Err("the offset is out of range");
            }
            let total = hours * 60 + minutes;
            if sign == b'-' {
                -total
            } else {
                total
            }
        }
        None => return Err("the offset is missing: end with Z or +HH:MM"),
        _ => return Err("expected Z or an offset such as +02:00 at the end"),
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err("no such time of day");
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Ok(Timestamp(secs * 1_000_000 + micros))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Howard Hinnant's civil-to-days algorithm, the inverse of the one in [`super::time`].
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Keeps the first `limit` of `records` (sorted in the ledger's order) and says where the
/// next page starts: `None` when nothing is left. Stores fetch `limit + 1` records, so that a
/// last page is known to be the last without another read.
pub fn page(mut records: Vec<ChangeRecord>, limit: usize) -> (Vec<ChangeRecord>, Option<Position>) {
    if records.len() > limit {
        records.truncate(limit);
        let last = records.last().map(Position::of);
        (records, last)
    } else {
        (records, None)
    }
}

/// The latest record of each group at or before `at`, as states: what the subject's state
/// was at that instant. `records` are one subject's, in any order. "Latest" is the last in
/// its chain (`seq`): the order the changes were applied in, even where the clocks of several
/// PostgreSQL nodes disagree on their times.
pub fn states_at(records: &[ChangeRecord], at: Timestamp) -> Vec<StateView> {
    let order = |r: &ChangeRecord| (r.seq, Position::of(r));
    let mut latest: Vec<&ChangeRecord> = Vec::new();
    for record in records.iter().filter(|r| r.at <= at) {
        match latest.iter_mut().find(|r| r.group == record.group) {
            Some(slot) if order(slot) < order(record) => *slot = record,
            Some(_) => {}
            None => latest.push(record),
        }
    }
    let mut out: Vec<StateView> = latest
        .into_iter()
        .map(|r| StateView { group_id: r.group.storage_id(), state: r.new, updated_at: r.at })
        .collect();
    out.sort_by_key(|s| s.group_id);
    out
}

/// The orphaned states an email or phone held at `at`, from its orphaned records: the latest
/// record per group at or before `at`, unless the state had gone by then, as the live reads
/// treat orphaned state now. It goes by expiry (older than `retention` at `at`) or by being
/// handed over to a profile that takes the identifier, which leaves no record of its own (the
/// profile's inherited state is the profile's record). `records` are the identifier's orphaned
/// records before *and after* `at`, `live` its orphaned states now ([`read::ContactView`]'s,
/// expired ones included) and `now` the time of the read. See [`still_held`].
pub fn orphan_states_at(
    records: &[ChangeRecord],
    at: Timestamp,
    live: &[StateView],
    now: Timestamp,
    retention: crate::domain::retention::Retention,
) -> Vec<StateView> {
    let held = states_at(records, at).into_iter().filter(|state| still_held(records, state, at, live, now, retention));
    read::live_orphans(held.collect(), at, retention)
}

/// Whether the orphaned `state` (the latest record of its group at or before `at`) was still
/// the identifier's at `at`, judged from what came after it:
/// - a later orphaned record of the group says what state it replaced: one with no previous
///   state means the state had gone before it (handed over, or expired and swept), one with a
///   previous state means it lasted until then;
/// - with no later record, the state lasts while the store still holds it, or until it
///   expired (a swept state leaves no row).
///
/// A state handed over and gone by the next record is taken as gone from its own record on:
/// the ledger does not say when it was handed over, and a read must not answer with a state
/// that a profile took away (the live read then answered `Unknown`, or the profile's state).
fn still_held(
    records: &[ChangeRecord],
    state: &StateView,
    at: Timestamp,
    live: &[StateView],
    now: Timestamp,
    retention: crate::domain::retention::Retention,
) -> bool {
    let next = records
        .iter()
        .filter(|r| r.group.storage_id() == state.group_id && r.at > at)
        .min_by_key(|r| (r.seq, Position::of(r)));
    match next {
        Some(next) => next.old.is_some(),
        None => live.iter().any(|s| s.group_id == state.group_id) || !retention.is_live(state.updated_at, now),
    }
}

/// The records of `records` whose subject is this profile.
pub fn of_profile(records: &[ChangeRecord], profile: super::ids::ProfileId) -> Vec<ChangeRecord> {
    records.iter().filter(|r| r.subject == Subject::Profile(profile)).cloned().collect()
}

/// The records of `records` whose subject is this orphaned email or phone.
pub fn of_orphan(records: &[ChangeRecord], contact: &Contact) -> Vec<ChangeRecord> {
    records.iter().filter(|r| matches!(&r.subject, Subject::Orphan(_, c) if c == contact)).cloned().collect()
}

/// A profile's state in `group` at `at`, from records that include its own.
pub fn profile_state_at(
    records: &[ChangeRecord],
    profile: super::ids::ProfileId,
    group: GroupId,
    at: Timestamp,
) -> Option<SubscriptionState> {
    let own = of_profile(records, profile);
    states_at(&own, at).into_iter().find(|s| s.group_id == group).map(|s| s.state)
}

/// What `GET /subscription/status/get` answered at `at` for an email or phone carried now by
/// `carriers`: the most restrictive of their states then, as the live read does now; for one
/// no profile carries now, its orphaned state then (see [`orphan_states_at`], whose `live` and
/// `now` this passes on). The identifier is taken as it is carried now: the ledger does not
/// record who carried it at `at`.
#[allow(clippy::too_many_arguments)]
pub fn contact_state_at(
    records: &[ChangeRecord],
    carriers: &[super::ids::ProfileId],
    contact: &Contact,
    group: GroupId,
    at: Timestamp,
    live: &[StateView],
    now: Timestamp,
    retention: crate::domain::retention::Retention,
) -> read::ReadState {
    if carriers.is_empty() {
        let orphan = orphan_states_at(&of_orphan(records, contact), at, live, now, retention);
        read::ReadState::of(orphan.iter().find(|s| s.group_id == group).map(|s| s.state))
    } else {
        read::ReadState::most_restrictive(carriers.iter().map(|&p| profile_state_at(records, p, group, at)))
    }
}

/// A state in the ledger's REST spelling.
fn state_name(state: SubscriptionState) -> &'static str {
    state.as_str()
}

/// A change record as `GET /consent/history`, `GET /consent/proof` and `ledger export` show it.
/// Fields in this order are also the columns of the CSV export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LedgerRecord {
    /// The record's id.
    #[schema(format = "uuid")]
    pub id: String,
    /// When the change was applied: RFC 3339, UTC, microseconds.
    #[schema(format = DateTime, examples("2025-01-31T12:00:00.123456Z"))]
    pub time: String,
    /// The subscription group; `null` for the global email state.
    #[schema(required = true, format = "uuid")]
    pub subscription_group_id: Option<String>,
    /// The group's channel (`email` for the global email state).
    #[schema(value_type = Channel)]
    pub channel: &'static str,
    /// The profile's external id, for a profile's record whose profile still exists.
    #[schema(required = true)]
    pub external_id: Option<String>,
    /// The email, for a record of an orphaned email (one no profile carried then).
    #[schema(required = true, format = Email)]
    pub email: Option<String>,
    /// The phone, for a record of an orphaned phone.
    #[schema(required = true)]
    pub phone: Option<String>,
    /// The state before; `null` when there was none.
    #[schema(required = true, value_type = Option<LedgerState>)]
    pub previous_state: Option<&'static str>,
    /// The state after.
    #[schema(value_type = LedgerState)]
    pub state: &'static str,
    /// How the change happened.
    #[schema(value_type = super::change::Source)]
    pub source: &'static str,
    /// The API endpoint it came through, for changes made with a key.
    #[schema(required = true)]
    pub endpoint: Option<&'static str>,
    /// The API key that made it, for changes made with a key.
    #[schema(required = true, format = "uuid")]
    pub api_key_id: Option<String>,
    /// The request's id (its `x-request-id`).
    #[schema(required = true, format = "uuid")]
    pub request_id: Option<String>,
    /// `use_double_opt_in_logic` as the request sent it.
    pub use_double_opt_in_logic: bool,
    /// The person, for changes made through a link or page.
    #[schema(required = true, value_type = Option<LedgerActor>)]
    pub actor: Option<LedgerActor>,
    /// SHA-256 of the record's canonical encoding, lowercase hex.
    #[schema(examples("9f2c…"))]
    pub hash: String,
    /// The hash of the record before it in its chain; 64 zeros for the first.
    pub previous_hash: String,
}

/// The person behind a change made through a link or page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LedgerActor {
    /// The client's IP address.
    pub ip: String,
    /// Its `User-Agent`.
    pub user_agent: String,
}

/// A state in the ledger's spelling.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum LedgerState {
    /// Subscribed.
    Subscribed,
    /// Unsubscribed.
    Unsubscribed,
    /// Opted in (the global email state only).
    OptedIn,
}

/// The record as shown: `channel` is its group's, `external_id` the current external id of
/// its profile (`None` once deleted, or for an orphaned identifier's record).
pub fn record_view(record: &ChangeRecord, channel: Channel, external_id: Option<&str>) -> LedgerRecord {
    let (email, phone) = match &record.subject {
        Subject::Orphan(_, Contact::Email(e)) => (Some(e.as_str().to_string()), None),
        Subject::Orphan(_, Contact::Phone(p)) => (None, Some(p.as_str().to_string())),
        Subject::Profile(_) | Subject::Erased(_) => (None, None),
    };
    let external_id = match record.subject {
        Subject::Profile(_) => external_id.map(str::to_string),
        _ => None,
    };
    LedgerRecord {
        id: record.id.to_string(),
        time: record.at.to_rfc3339(),
        subscription_group_id: record.group.group_id().map(|id| id.to_string()),
        channel: channel.as_str(),
        external_id,
        email,
        phone,
        previous_state: record.old.map(state_name),
        state: state_name(record.new),
        source: record.kind.as_str(),
        endpoint: record.trace.endpoint.map(Endpoint::path),
        api_key_id: record.trace.api_key_id.map(|id| id.to_string()),
        request_id: record.trace.request_id.map(|id| id.to_string()),
        use_double_opt_in_logic: record.use_double_opt_in_logic,
        actor: record.actor.as_ref().map(|a| LedgerActor { ip: a.ip.clone(), user_agent: a.user_agent.clone() }),
        hash: record.hash.to_string(),
        previous_hash: record.previous_hash.to_string(),
    }
}

/// The CSV header of the export: [`LedgerRecord`]'s fields, actor split in two columns.
pub const CSV_HEADER: &str = "id,time,subscription_group_id,channel,external_id,email,phone,previous_state,state,\
source,endpoint,api_key_id,request_id,use_double_opt_in_logic,actor_ip,actor_user_agent,hash,previous_hash";

impl LedgerRecord {
    /// One CSV line, ended by CRLF and quoted as RFC 4180 says: a field holding a comma, a
    /// quote or a line break is quoted, its quotes doubled; `null` is an empty field. Values
    /// are written exactly as stored (no spreadsheet formula guard), because the export feeds
    /// audits and warehouses that must see the data unaltered.
    pub fn csv_line(&self) -> String {
        let bool_text = if self.use_double_opt_in_logic { "true" } else { "false" };
        let fields: [Option<&str>; 18] = [
            Some(&self.id),
            Some(&self.time),
            self.subscription_group_id.as_deref(),
            Some(self.channel),
            self.external_id.as_deref(),
            self.email.as_deref(),
            self.phone.as_deref(),
            self.previous_state,
            Some(self.state),
            Some(self.source),
            self.endpoint,
            self.api_key_id.as_deref(),
            self.request_id.as_deref(),
            Some(bool_text),
            self.actor.as_ref().map(|a| a.ip.as_str()),
            self.actor.as_ref().map(|a| a.user_agent.as_str()),
            Some(&self.hash),
            Some(&self.previous_hash),
        ];
        let mut line = String::with_capacity(256);
        for (i, field) in fields.into_iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            let Some(field) = field else { continue };
            if field.contains([',', '"', '\n', '\r']) {
                line.push('"');
                line.push_str(&field.replace('"', "\"\""));
                line.push('"');
            } else {
                line.push_str(field);
            }
        }
        line.push_str("\r\n");
        line
    }
}
