//! The tamper-evident ledger: how a change record is sealed into its chain, and how a chain is
//! verified.
//!
//! A chain is the records of one (workspace, group, subject), in the order they were applied.
//! Each record carries its position (`seq`, from 1), the hash of the record before it
//! (`previous_hash`, 64 zeros for the first) and its own `hash`: SHA-256 over the canonical
//! encoding below. Altering, removing or reordering a record breaks the chain from that record
//! on. The encoding covers internal ids only, never an email, a phone or an actor's contents,
//! so erasing those (`users/delete`) leaves every chain verifiable. `docs/ledger.md` is the
//! reference for anyone who wants to verify a chain with their own tools.
//!
//! Canonical encoding, version 1 (fixed length, big-endian integers, 195 bytes):
//!
//! | bytes | field |
//! |---|---|
//! | 18 | ASCII `consentry-ledger-1` (domain separation and version) |
//! | 16 | record id |
//! | 8 | `seq` (u64) |
//! | 8 | time, microseconds since the epoch (i64) |
//! | 16 | workspace id |
//! | 1 + 16 | chain group: 1 and the group id, or 2 and 16 zeros for the global email state |
//! | 1 + 16 | subject: 1 and the profile id, or 2 and the orphaned identifier's internal id |
//! | 1 | previous state: 0 none, 1 subscribed, 2 unsubscribed, 3 opted in |
//! | 1 | new state (same codes) |
//! | 1 | source ([`Source::code`]) |
//! | 1 | endpoint ([`Endpoint::code`]), 0 when none |
//! | 1 + 16 | API key id: 1 and the id, or 0 and 16 zeros |
//! | 1 + 16 | request id: 1 and the id, or 0 and 16 zeros |
//! | 1 | `use_double_opt_in_logic`: 0 or 1 |
//! | 1 | actor present: 0 or 1 |
//! | 32 | `previous_hash` |

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::change::{ChangeRecord, Endpoint};
use super::ids::{ChangeId, GroupId, WorkspaceId};
use super::subscription::SubscriptionState;

/// The ASCII tag that starts every hashed encoding; its last digit is the encoding's version.
pub const ENCODING_TAG: &[u8; 18] = b"consentry-ledger-1";

/// Length of the canonical encoding.
pub const ENCODING_LEN: usize = 18 + 16 + 8 + 8 + 16 + 17 + 17 + 1 + 1 + 1 + 1 + 17 + 17 + 1 + 1 + 32;

/// A SHA-256 digest: a record's `hash` or `previous_hash`. Shown as 64 lowercase hex digits.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The `previous_hash` of a chain's first record.
    pub const ZERO: ChainHash = ChainHash([0; 32]);

    /// Parses 64 hex digits (either case).
    pub fn parse_hex(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(ChainHash(out))
    }

    /// The digest from stored bytes; `None` unless exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(ChainHash)
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ChainHash::parse_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// What a chain is about: one subscription group, or (a later issue) the global email state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainGroup {
    /// A subscription group.
    Group(GroupId),
    /// The global email state.
    Global,
}

impl ChainGroup {
    /// The tag and 16 bytes of the encoding (and of store keys): a group is tagged 1, the
    /// global state 2 with zeros.
    pub fn to_bytes(self) -> [u8; 17] {
        let mut out = [0u8; 17];
        match self {
            ChainGroup::Group(id) => {
                out[0] = 1;
                out[1..].copy_from_slice(id.as_bytes());
            }
            ChainGroup::Global => out[0] = 2,
        }
        out
    }

    /// The chain group of [`ChainGroup::to_bytes`].
    pub fn from_bytes(bytes: [u8; 17]) -> Option<Self> {
        let id: [u8; 16] = bytes[1..].try_into().expect("16 bytes");
        match bytes[0] {
            1 => Some(ChainGroup::Group(GroupId::from_bytes(id))),
            2 if id == [0; 16] => Some(ChainGroup::Global),
            _ => None,
        }
    }

    /// The id a store keeps in a UUID column: the group id, or the nil UUID for the global
    /// state (group ids are random v4 UUIDs, never nil).
    pub fn as_uuid(self) -> Uuid {
        match self {
            ChainGroup::Group(id) => id.0,
            ChainGroup::Global => Uuid::nil(),
        }
    }

    /// The group, or `None` for the global email state.
    pub fn group_id(self) -> Option<GroupId> {
        match self {
            ChainGroup::Group(id) => Some(id),
            ChainGroup::Global => None,
        }
    }

    /// The id stores keep states and records under: the group's, or the nil id for the global
    /// email state, so that the global state is stored as a state of one more group and every
    /// store path (inheritance, retention, erasure) treats it alike without a new format.
    pub fn storage_id(self) -> GroupId {
        GroupId(self.as_uuid())
    }

    /// The chain group of a stored id (see [`ChainGroup::storage_id`]).
    pub fn from_storage(id: GroupId) -> Self {
        Self::from_uuid(id.0)
    }

    /// The chain group of a UUID column (see [`ChainGroup::as_uuid`]).
    pub fn from_uuid(id: Uuid) -> Self {
        if id.is_nil() {
            ChainGroup::Global
        } else {
            ChainGroup::Group(GroupId(id))
        }
    }
}

/// One chain: (workspace, group, subject's internal id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainKey {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// The group, or the global email state.
    pub group: ChainGroup,
    /// The profile id or the orphaned identifier's internal id.
    pub subject: Uuid,
}

/// The end of a chain as a store keeps it, so that sealing a record needs no scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainHead {
    /// `seq` of the last record (0: none yet).
    pub seq: u64,
    /// `hash` of the last record (zeros: none yet).
    pub hash: ChainHash,
    /// Where the kept records start: the last record deleted by ledger retention (0 and zeros
    /// when none was).
    pub anchor: Anchor,
}

/// The record a chain's kept records follow: `seq` 0 and zeros for a complete chain, else the
/// last record that ledger retention deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Anchor {
    /// Its `seq`.
    pub seq: u64,
    /// Its `hash`.
    pub hash: ChainHash,
}

/// The canonical encoding of a record (see the module documentation).
pub fn encode(record: &ChangeRecord) -> [u8; ENCODING_LEN] {
    let mut out = [0u8; ENCODING_LEN];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(ENCODING_TAG);
    put(record.id.as_bytes());
    put(&record.seq.to_be_bytes());
    put(&record.at.0.to_be_bytes());
    put(record.workspace_id.as_bytes());
    put(&record.group.to_bytes());
    put(&[if record.subject.is_profile() { 1 } else { 2 }]);
    put(record.subject.internal_id().as_bytes());
    put(&[state_code(record.old), state_code(Some(record.new))]);
    put(&[record.kind.code(), record.trace.endpoint.map_or(0, Endpoint::code)]);
    put(&optional_id(record.trace.api_key_id.map(|k| k.0)));
    put(&optional_id(record.trace.request_id.map(|r| r.0)));
    put(&[record.use_double_opt_in_logic as u8, record.actor.is_some() as u8]);
    put(&record.previous_hash.0);
    debug_assert_eq!(at, ENCODING_LEN);
    out
}

fn optional_id(id: Option<Uuid>) -> [u8; 17] {
    let mut out = [0u8; 17];
    if let Some(id) = id {
        out[0] = 1;
        out[1..].copy_from_slice(id.as_bytes());
    }
    out
}

/// The hashed state codes: fixed here, independent of any store's codes.
fn state_code(state: Option<SubscriptionState>) -> u8 {
    match state {
        None => 0,
        Some(SubscriptionState::Subscribed) => 1,
        Some(SubscriptionState::Unsubscribed) => 2,
        Some(SubscriptionState::OptedIn) => 3,
    }
}

/// The hash a record must carry: SHA-256 of its canonical encoding.
pub fn hash(record: &ChangeRecord) -> ChainHash {
    ChainHash(Sha256::digest(encode(record)).into())
}

/// Appends `record` to the chain whose end is `head`: sets its `seq`, `previous_hash` and
/// `hash`, and moves `head` on to it.
pub fn seal(record: &mut ChangeRecord, head: &mut ChainHead) {
    record.seq = head.seq + 1;
    record.previous_hash = head.hash;
    record.hash = hash(record);
    head.seq = record.seq;
    head.hash = record.hash;
}

/// Why a chain does not hold, at the first record where it stops holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Break {
    /// The record's fields do not hash to its `hash`: it was altered.
    Hash,
    /// Its `previous_hash` is not the hash of the record before it.
    Link,
    /// Its `seq` does not follow the record before it: a record is missing or out of place.
    Sequence,
    /// The chain ends before its recorded head: its latest records are missing.
    Truncated,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Break::Hash => "its fields do not match its hash",
            Break::Link => "its previous_hash is not the hash of the record before it",
            Break::Sequence => "its position does not follow the record before it (a record is missing)",
            Break::Truncated => "the chain ends before its recorded head (its latest records are missing)",
        })
    }
}

/// The first record at which a chain does not hold. For [`Break::Truncated`], the record is the
/// last one present (the nil id when none is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRecord {
    /// The record.
    pub id: ChangeId,
    /// What is wrong with it.
    pub why: Break,
}

/// Checks one chain record by record, in `seq` order, without holding the chain in memory.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_seq: u64,
    expected_previous: ChainHash,
    last: Option<ChangeId>,
}

impl ChainVerifier {
    /// A verifier for a chain whose kept records follow `anchor`.
    pub fn new(anchor: Anchor) -> Self {
        ChainVerifier { expected_seq: anchor.seq + 1, expected_previous: anchor.hash, last: None }
    }

    /// Checks the next record of the chain.
    pub fn check(&mut self, record: &ChangeRecord) -> Result<(), BadRecord> {
        let bad = |why| Err(BadRecord { id: record.id, why });
        if hash(record) != record.hash {
            return bad(Break::Hash);
        }
        if record.seq != self.expected_seq {
            return bad(Break::Sequence);
        }
        if record.previous_hash != self.expected_previous {
            return bad(Break::Link);
        }
        self.expected_seq += 1;
        self.expected_previous = record.hash;
        self.last = Some(record.id);
        Ok(())
    }

    /// Checks that the chain ended where its store says its head is.
    pub fn finish(self, head: &ChainHead) -> Result<(), BadRecord> {
        if self.expected_seq == head.seq + 1 && self.expected_previous == head.hash {
            return Ok(());
        }
        Err(BadRecord { id: self.last.unwrap_or(ChangeId(Uuid::nil())), why: Break::Truncated })
    }
}

/// Verifies a whole chain given in `seq` order: the first record that does not hold, if any.
/// Without a head, a missing tail cannot be seen; pass the store's head when there is one.
pub fn verify_chain<'a>(
    records: impl IntoIterator<Item = &'a ChangeRecord>,
    anchor: Anchor,
    head: Option<&ChainHead>,
) -> Result<(), BadRecord> {
    let mut verifier = ChainVerifier::new(anchor);
    for record in records {
        verifier.check(record)?;
    }
    match head {
        Some(head) => verifier.finish(head),
        None => Ok(()),
    }
}

/// What walking a store's chains found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerCheck {
    /// Chains walked.
    pub chains: u64,
    /// Records checked.
    pub records: u64,
    /// The first record that does not hold, with its chain; `None` when every chain holds.
    pub first_bad: Option<(ChainKey, BadRecord)>,
}

/// Ledger retention: the `seq` of the last record of a chain to delete, given its head, its
/// kept records as (`seq`, time) oldest first (those after the anchor; a store may pass only
/// the ones before `cutoff`), and the cut-off. Records go from the oldest on, while they are
/// older than `cutoff` and follow one another without a gap, and never the latest record of
/// the chain: it carries the chain on, and the last one deleted becomes its anchor. `None`
/// when nothing expires.
pub fn expire_through(
    head: &ChainHead,
    records: impl IntoIterator<Item = (u64, crate::domain::time::Timestamp)>,
    cutoff: crate::domain::time::Timestamp,
) -> Option<u64> {
    let mut next = head.anchor.seq + 1;
    let mut through = None;
    for (seq, at) in records {
        if seq < next {
            continue;
        }
        if seq != next || seq >= head.seq || at >= cutoff {
            break;
        }
        through = Some(seq);
        next += 1;
    }
    through
}
