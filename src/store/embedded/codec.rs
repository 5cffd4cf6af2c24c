//! Key layout and value encoding of the embedded store.
//!
//! Keys start with the workspace id so that nothing ever reads across workspaces, and are laid
//! out for the prefix scans the service needs:
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `profiles` | ws · external id | [`ProfileRecord`] (id, email, phone, all states) |
//! | `profile_ids` | ws · profile id | external id |
//! | `emails` / `phones` | ws · identifier · 0x00 · profile id | external id |
//! | `orphans` | ws · kind · identifier · 0x00 · group id | state · updated at · orphan id |
//! | `changes` | ws · change id (time-ordered) | [`ChangeRecord`] |
//! | `changes_by_profile` | ws · profile id · change id | empty |
//! | `changes_by_contact` | ws · kind · identifier · 0x00 · change id | empty |
//! | `chain_heads` | ws · chain group (17) · subject id | seq · hash · anchor seq · anchor hash |
//! | `chain_records` | ws · chain group (17) · subject id · seq | change id |
//! | `meta` | name | value (`format`: the store's format version, u32) |
//! | `outbox` | position (u64) | ws · change id: records not yet delivered everywhere |
//! | `stream` | `d`/`s`/`m` · destination id | destination, delivery state, message (JSON) |
//! | `email_unsubscribes` | ws · `e` · email | time it became unsubscribed (i64) |
//! | | ws · `t` · time (i64) · email | empty: the same entries in time order |
//!
//! A profile's states live inside its record: the hot path (50 external ids) then costs one
//! point read and one write per profile instead of two of each. Emails and phones are ASCII
//! without NUL (the parsers guarantee it), so 0x00 ends them unambiguously.

use crate::domain::change::{Actor, ChangeRecord, Contact, ContactKind, Endpoint, Source, Subject, Trace};
use crate::domain::identifiers::{Email, Phone};
use crate::domain::ids::{ApiKeyId, ChangeId, GroupId, OrphanId, ProfileId, RequestId, WorkspaceId};
use crate::domain::ledger::{Anchor, ChainGroup, ChainHash, ChainHead, ChainKey};
use crate::domain::subscription::SubscriptionState;
use crate::domain::time::Timestamp;
use crate::store::{StateView, StoreError};

const RECORD_VERSION: u8 = 1;
/// The encoding of change records since the ledger (issue 10): source, optional trace, actor,
/// chain position and hashes, and the internal id of orphaned subjects.
const CHANGE_VERSION: u8 = 2;

/// The format of the whole store, kept in `meta` under [`FORMAT_KEY`]. A store without it was
/// written before the ledger (format 1) and is upgraded on open (see `super::upgrade`).
pub const FORMAT: u32 = 2;
/// The `meta` key of the store's format.
pub const FORMAT_KEY: &[u8] = b"format";

/// A stored profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRecord {
    /// Internal id.
    pub id: ProfileId,
    /// Normalized email.
    pub email: Option<String>,
    /// E.164 phone.
    pub phone: Option<String>,
    /// States, sorted by group id.
    pub states: Vec<StateView>,
}

impl ProfileRecord {
    /// A new profile with nothing but its id.
    pub fn new(id: ProfileId) -> Self {
        ProfileRecord { id, email: None, phone: None, states: Vec::new() }
    }

    /// Its state in `group`.
    pub fn state(&self, group: GroupId) -> Option<SubscriptionState> {
        self.states.binary_search_by(|s| s.group_id.cmp(&group)).ok().map(|i| self.states[i].state)
    }

    /// Sets its state in `group`, keeping the states sorted.
    pub fn set_state(&mut self, group: GroupId, state: SubscriptionState, at: Timestamp) {
        let view = StateView { group_id: group, state, updated_at: at };
        match self.states.binary_search_by(|s| s.group_id.cmp(&group)) {
            Ok(i) => self.states[i] = view,
            Err(i) => self.states.insert(i, view),
        }
    }

    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + self.states.len() * 25);
        out.push(RECORD_VERSION);
        out.extend_from_slice(self.id.as_bytes());
        put_opt_str(&mut out, self.email.as_deref());
        put_opt_str(&mut out, self.phone.as_deref());
        out.extend_from_slice(&(self.states.len() as u16).to_be_bytes());
        for s in &self.states {
            out.extend_from_slice(s.group_id.as_bytes());
            out.push(state_code(Some(s.state)));
            out.extend_from_slice(&s.updated_at.0.to_be_bytes());
        }
        out
    }

    /// Decodes a record written by [`ProfileRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut r = Reader::new(bytes, "profile");
        r.version()?;
        let id = ProfileId::from_bytes(r.array()?);
        let email = r.opt_str()?;
        let phone = r.opt_str()?;
        let count = u16::from_be_bytes(r.array()?) as usize;
        let mut states = Vec::with_capacity(count);
        for _ in 0..count {
            let group_id = GroupId::from_bytes(r.array()?);
            let state = r.state()?.ok_or_else(|| r.corrupt("missing state"))?;
            let updated_at = Timestamp(i64::from_be_bytes(r.array()?));
            states.push(StateView { group_id, state, updated_at });
        }
        Ok(ProfileRecord { id, email, phone, states })
    }
}

/// `profiles` key: ws · external id.
pub fn profile_key(ws: WorkspaceId, external_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 + external_id.len());
    key.extend_from_slice(ws.as_bytes());
    key.extend_from_slice(external_id.as_bytes());
    key
}

/// The workspace and external id of a `profiles` key.
pub fn decode_profile_key(key: &[u8]) -> Result<(WorkspaceId, &str), StoreError> {
    let corrupt = |detail: &str| StoreError::Corrupt { what: "profile key", detail: detail.into() };
    let (ws, external_id) = key.split_first_chunk::<16>().ok_or_else(|| corrupt("short key"))?;
    let external_id = std::str::from_utf8(external_id).map_err(|_| corrupt("external id is not UTF-8"))?;
    Ok((WorkspaceId::from_bytes(*ws), external_id))
}

/// `profile_ids` key: ws · profile id.
pub fn profile_id_key(ws: WorkspaceId, id: ProfileId) -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(ws.as_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// Prefix of a contact's entries in `emails`/`phones`: ws · identifier · 0x00.
pub fn contact_prefix(ws: WorkspaceId, text: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 + text.len() + 17);
    key.extend_from_slice(ws.as_bytes());
    key.extend_from_slice(text.as_bytes());
    key.push(0);
    key
}

/// `emails`/`phones` key: ws · identifier · 0x00 · profile id.
pub fn contact_key(ws: WorkspaceId, text: &str, profile: ProfileId) -> Vec<u8> {
    let mut key = contact_prefix(ws, text);
    key.extend_from_slice(profile.as_bytes());
    key
}

/// The profile id at the end of an `emails`/`phones` key.
pub fn contact_key_profile(key: &[u8]) -> Result<ProfileId, StoreError> {
    trailing_id(key, "contact index").map(ProfileId::from_bytes)
}

/// Prefix of a contact's orphaned states: ws · kind · identifier · 0x00.
pub fn orphan_prefix(ws: WorkspaceId, contact: &Contact) -> Vec<u8> {
    let text = contact.as_str();
    let mut key = Vec::with_capacity(16 + 1 + text.len() + 17);
    key.extend_from_slice(ws.as_bytes());
    key.push(match contact {
        Contact::Email(_) => b'e',
        Contact::Phone(_) => b'p',
    });
    key.extend_from_slice(text.as_bytes());
    key.push(0);
    key
}

/// `orphans` key: the prefix · group id.
pub fn orphan_key(ws: WorkspaceId, contact: &Contact, group: GroupId) -> Vec<u8> {
    let mut key = orphan_prefix(ws, contact);
    key.extend_from_slice(group.as_bytes());
    key
}

/// The workspace, contact and group of an `orphans` key (see [`orphan_key`]).
pub fn decode_orphan_key(key: &[u8]) -> Result<(WorkspaceId, Contact, GroupId), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt { what: "orphan state key", detail };
    let group = orphan_key_group(key)?;
    // ws (16) · kind (1) · identifier · 0x00 · group (16)
    let (ws, rest) = key.split_first_chunk::<16>().ok_or_else(|| corrupt("short key".into()))?;
    let (&kind, rest) = rest.split_first().ok_or_else(|| corrupt("short key".into()))?;
    let text = rest
        .len()
        .checked_sub(17)
        .filter(|&end| rest[end] == 0)
        .map(|end| &rest[..end])
        .ok_or_else(|| corrupt("no identifier terminator".into()))?;
    let text = std::str::from_utf8(text).map_err(|_| corrupt("identifier is not UTF-8".into()))?;
    let contact = match kind {
        b'e' => Contact::Email(Email::parse(text).map_err(|e| corrupt(e.to_string()))?),
        b'p' => Contact::Phone(Phone::parse(text).map_err(|e| corrupt(e.to_string()))?),
        other => return Err(corrupt(format!("contact kind {other}"))),
    };
    Ok((WorkspaceId::from_bytes(*ws), contact, group))
}

/// The group id at the end of an `orphans` key.
pub fn orphan_key_group(key: &[u8]) -> Result<GroupId, StoreError> {
    trailing_id(key, "orphan state").map(GroupId::from_bytes)
}

/// The 16-byte id that ends a key of `what`.
fn trailing_id(key: &[u8], what: &'static str) -> Result<[u8; 16], StoreError> {
    key.len()
        .checked_sub(16)
        .and_then(|at| key[at..].try_into().ok())
        .ok_or_else(|| StoreError::Corrupt { what, detail: "short key".into() })
}

/// `orphans` value: state · updated at · the identifier's internal id.
pub fn encode_orphan(state: SubscriptionState, at: Timestamp, id: OrphanId) -> Vec<u8> {
    let mut out = Vec::with_capacity(25);
    out.push(state_code(Some(state)));
    out.extend_from_slice(&at.0.to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    out
}

/// Decodes an `orphans` value.
pub fn decode_orphan(bytes: &[u8]) -> Result<(SubscriptionState, Timestamp), StoreError> {
    decode_orphan_with_id(bytes).map(|(state, at, _)| (state, at))
}

/// Decodes an `orphans` value with the identifier's internal id: nil in a value written before
/// the ledger (the upgrade gives every one an id).
pub fn decode_orphan_with_id(bytes: &[u8]) -> Result<(SubscriptionState, Timestamp, OrphanId), StoreError> {
    let mut r = Reader::new(bytes, "orphan state");
    let state = r.state()?.ok_or_else(|| r.corrupt("missing state"))?;
    let at = Timestamp(i64::from_be_bytes(r.array()?));
    let id = if r.bytes.is_empty() { OrphanId(uuid::Uuid::nil()) } else { OrphanId::from_bytes(r.array()?) };
    Ok((state, at, id))
}

/// Prefix of one chain's keys in `chain_heads` and `chain_records`: ws · chain group · subject.
pub fn chain_key(chain: &ChainKey) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 + 17 + 16 + 8);
    key.extend_from_slice(chain.workspace_id.as_bytes());
    key.extend_from_slice(&chain.group.to_bytes());
    key.extend_from_slice(chain.subject.as_bytes());
    key
}

/// The chain of a `chain_heads` key (or of the start of a `chain_records` key).
pub fn decode_chain_key(key: &[u8]) -> Result<ChainKey, StoreError> {
    let mut r = Reader::new(key, "chain key");
    let workspace_id = WorkspaceId::from_bytes(r.array()?);
    let group = ChainGroup::from_bytes(r.array()?).ok_or_else(|| r.corrupt("chain group"))?;
    let subject = uuid::Uuid::from_bytes(r.array()?);
    Ok(ChainKey { workspace_id, group, subject })
}

/// `chain_records` key: the chain's [`chain_key`] · seq.
pub fn chain_record_key(chain: &ChainKey, seq: u64) -> Vec<u8> {
    let mut key = chain_key(chain);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `chain_heads` value.
pub fn encode_head(head: &ChainHead) -> Vec<u8> {
    let mut out = Vec::with_capacity(80);
    out.extend_from_slice(&head.seq.to_be_bytes());
    out.extend_from_slice(&head.hash.0);
    out.extend_from_slice(&head.anchor.seq.to_be_bytes());
    out.extend_from_slice(&head.anchor.hash.0);
    out
}

/// Decodes a `chain_heads` value.
pub fn decode_head(bytes: &[u8]) -> Result<ChainHead, StoreError> {
    let mut r = Reader::new(bytes, "chain head");
    let seq = u64::from_be_bytes(r.array()?);
    let hash = ChainHash(r.array()?);
    let anchor = Anchor { seq: u64::from_be_bytes(r.array()?), hash: ChainHash(r.array()?) };
    Ok(ChainHead { seq, hash, anchor })
}

/// `changes` key: ws · change id.
pub fn change_key(ws: WorkspaceId, id: ChangeId) -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(ws.as_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// `changes_by_contact` key: the contact's [`orphan_prefix`] · change id. Indexes the change
/// records that name an email or phone, so that they can be erased with it.
pub fn change_by_contact_key(ws: WorkspaceId, contact: &Contact, id: ChangeId) -> Vec<u8> {
    let mut key = orphan_prefix(ws, contact);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The change id at the end of a `changes_by_contact` key.
pub fn change_by_contact_id(key: &[u8]) -> Result<ChangeId, StoreError> {
    trailing_id(key, "change index").map(ChangeId::from_bytes)
}

/// `changes_by_profile` key: ws · profile id · change id.
pub fn change_by_profile_key(ws: WorkspaceId, profile: ProfileId, id: ChangeId) -> Vec<u8> {
    let mut key = Vec::with_capacity(48);
    key.extend_from_slice(ws.as_bytes());
    key.extend_from_slice(profile.as_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// Encodes a change record (its workspace and id are in the key).
pub fn encode_change(c: &ChangeRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(200);
    out.push(CHANGE_VERSION);
    out.extend_from_slice(&c.at.0.to_be_bytes());
    out.extend_from_slice(c.group.storage_id().as_bytes());
    out.push(c.subject.code());
    match &c.subject {
        Subject::Profile(id) => out.extend_from_slice(id.as_bytes()),
        Subject::Orphan(id, contact) => {
            out.extend_from_slice(id.as_bytes());
            put_opt_str(&mut out, Some(contact.as_str()));
        }
        Subject::Erased(id) => out.extend_from_slice(id.as_bytes()),
    }
    out.push(state_code(c.old));
    out.push(state_code(Some(c.new)));
    out.push(c.kind.code());
    out.push(c.trace.endpoint.map_or(0, Endpoint::code));
    let flags = c.trace.api_key_id.is_some() as u8
        | (c.trace.request_id.is_some() as u8) << 1
        | (c.use_double_opt_in_logic as u8) << 2
        | (c.actor.is_some() as u8) << 3;
    out.push(flags);
    if let Some(key) = c.trace.api_key_id {
        out.extend_from_slice(key.as_bytes());
    }
    if let Some(request) = c.trace.request_id {
        out.extend_from_slice(request.as_bytes());
    }
    if let Some(actor) = &c.actor {
        put_opt_str(&mut out, Some(&actor.ip));
        put_opt_str(&mut out, Some(&actor.user_agent));
    }
    out.extend_from_slice(&c.seq.to_be_bytes());
    out.extend_from_slice(&c.previous_hash.0);
    out.extend_from_slice(&c.hash.0);
    out
}

/// Decodes a change record stored under `key`, in either encoding. A record written before the
/// ledger reads as `source: api` with seq 0, zero hashes and a nil orphan id (the upgrade then
/// seals it).
pub fn decode_change(key: &[u8], bytes: &[u8]) -> Result<ChangeRecord, StoreError> {
    let mut k = Reader::new(key, "change record key");
    let workspace_id = WorkspaceId::from_bytes(k.array()?);
    let id = ChangeId::from_bytes(k.array()?);
    let mut r = Reader::new(bytes, "change record");
    let version = r.byte()?;
    if version != RECORD_VERSION && version != CHANGE_VERSION {
        return Err(r.corrupt(&format!("unknown version {version}")));
    }
    let legacy = version == RECORD_VERSION;
    let at = Timestamp(i64::from_be_bytes(r.array()?));
    let group = ChainGroup::from_storage(GroupId::from_bytes(r.array()?));
    let orphan_id = |r: &mut Reader<'_>| -> Result<OrphanId, StoreError> {
        Ok(if legacy { OrphanId(uuid::Uuid::nil()) } else { OrphanId::from_bytes(r.array()?) })
    };
    let subject = match r.byte()? {
        Subject::PROFILE_CODE => Subject::Profile(ProfileId::from_bytes(r.array()?)),
        Subject::ERASED_CODE => Subject::Erased(orphan_id(&mut r)?),
        code => {
            let kind = ContactKind::from_code(code).ok_or_else(|| r.corrupt(&format!("subject tag {code}")))?;
            let id = orphan_id(&mut r)?;
            let text = r.opt_str()?.unwrap_or_default();
            Subject::Orphan(id, kind.parse(&text).map_err(|e| r.corrupt(&e.to_string()))?)
        }
    };
    let old = r.state()?;
    let new = r.state()?.ok_or_else(|| r.corrupt("missing new state"))?;
    let mut record = ChangeRecord {
        id,
        at,
        workspace_id,
        group,
        subject,
        old,
        new,
        kind: Source::Api,
        trace: Trace::default(),
        use_double_opt_in_logic: false,
        actor: None,
        seq: 0,
        previous_hash: ChainHash::ZERO,
        hash: ChainHash::ZERO,
    };
    if legacy {
        let api_key_id = ApiKeyId::from_bytes(r.array()?);
        let endpoint = Endpoint::from_code(r.byte()?).ok_or_else(|| r.corrupt("endpoint"))?;
        let request_id = RequestId::from_bytes(r.array()?);
        record.trace = Trace::api(api_key_id, endpoint, request_id);
        record.use_double_opt_in_logic = r.byte()? != 0;
        return Ok(record);
    }
    record.kind = Source::from_code(r.byte()?).ok_or_else(|| r.corrupt("source"))?;
    record.trace.endpoint = match r.byte()? {
        0 => None,
        code => Some(Endpoint::from_code(code).ok_or_else(|| r.corrupt("endpoint"))?),
    };
    let flags = r.byte()?;
    if flags & 1 != 0 {
        record.trace.api_key_id = Some(ApiKeyId::from_bytes(r.array()?));
    }
    if flags & 2 != 0 {
        record.trace.request_id = Some(RequestId::from_bytes(r.array()?));
    }
    record.use_double_opt_in_logic = flags & 4 != 0;
    if flags & 8 != 0 {
        let ip = r.opt_str()?.unwrap_or_default();
        let user_agent = r.opt_str()?.unwrap_or_default();
        record.actor = Some(Actor { ip, user_agent });
    }
    record.seq = u64::from_be_bytes(r.array()?);
    record.previous_hash = ChainHash(r.array()?);
    record.hash = ChainHash(r.array()?);
    Ok(record)
}

/// A state's byte, 0 for none (no state has code 0).
fn state_code(state: Option<SubscriptionState>) -> u8 {
    state.map_or(0, SubscriptionState::code)
}

fn put_opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    let text = text.unwrap_or("");
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// A cursor over stored bytes that reports where decoding failed instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader { bytes, what }
    }

    fn corrupt(&self, detail: &str) -> StoreError {
        StoreError::Corrupt { what: self.what, detail: detail.to_string() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.bytes.len() < n {
            return Err(self.corrupt("truncated"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn version(&mut self) -> Result<(), StoreError> {
        match self.byte()? {
            RECORD_VERSION => Ok(()),
            other => Err(self.corrupt(&format!("unknown version {other}"))),
        }
    }

    fn state(&mut self) -> Result<Option<SubscriptionState>, StoreError> {
        match self.byte()? {
            0 => Ok(None),
            code => {
                SubscriptionState::from_code(code).map(Some).ok_or_else(|| self.corrupt(&format!("state code {code}")))
            }
        }
    }

    fn opt_str(&mut self) -> Result<Option<String>, StoreError> {
        let len = u16::from_be_bytes(self.array()?) as usize;
        let raw = self.take(len)?;
        if raw.is_empty() {
            return Ok(None);
        }
        String::from_utf8(raw.to_vec()).map(Some).map_err(|_| self.corrupt("invalid UTF-8"))
    }
}

/// The unsubscribe index's entry of `email` (see the table above).
pub fn unsubscribe_email_key(ws: WorkspaceId, email: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(17 + email.len());
    key.extend_from_slice(ws.as_bytes());
    key.push(b'e');
    key.extend_from_slice(email.as_bytes());
    key
}

/// The unsubscribe index's time-ordered entry of `email` unsubscribed at `at`. Times are
/// after the epoch, so their big-endian bytes sort as the times do.
pub fn unsubscribe_time_key(ws: WorkspaceId, at: Timestamp, email: &str) -> Vec<u8> {
    let mut key = unsubscribe_time_prefix(ws);
    key.extend_from_slice(&at.0.to_be_bytes());
    key.extend_from_slice(email.as_bytes());
    key
}

/// The start of the time-ordered entries of a workspace.
pub fn unsubscribe_time_prefix(ws: WorkspaceId) -> Vec<u8> {
    let mut key = Vec::with_capacity(25 + 254);
    key.extend_from_slice(ws.as_bytes());
    key.push(b't');
    key
}

/// The time of an unsubscribe index entry.
pub fn decode_unsubscribed_at(bytes: &[u8]) -> Result<Timestamp, StoreError> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt { what: "unsubscribe index", detail: "time is not 8 bytes".into() })?;
    Ok(Timestamp(i64::from_be_bytes(bytes)))
}
