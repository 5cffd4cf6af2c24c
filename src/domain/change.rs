//! Change records: the trustworthy history of every consent change, each sealed into its
//! chain by [`super::ledger`].

use serde::{Deserialize, Serialize};

use uuid::Uuid;

use super::identifiers::{Email, IdentifierError, Phone};
use super::ids::{ApiKeyId, ChangeId, OrphanId, ProfileId, RequestId, WorkspaceId};
use super::ledger::{ChainGroup, ChainHash, ChainKey};
use super::subscription::SubscriptionState;
use super::time::Timestamp;

/// The API endpoint a change came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Endpoint {
    /// `POST /v2/subscription/status/set`
    #[serde(rename = "/v2/subscription/status/set")]
    V2StatusSet,
    /// `POST /subscription/status/set`
    #[serde(rename = "/subscription/status/set")]
    V1StatusSet,
    /// `POST /users/track`
    #[serde(rename = "/users/track")]
    UsersTrack,
    /// `POST /users/delete`
    #[serde(rename = "/users/delete")]
    UsersDelete,
    /// `POST /email/status`
    #[serde(rename = "/email/status")]
    EmailStatus,
}

impl Endpoint {
    /// Every endpoint that changes state, in code order.
    pub const ALL: [Endpoint; 5] = [
        Endpoint::V2StatusSet,
        Endpoint::V1StatusSet,
        Endpoint::UsersTrack,
        Endpoint::UsersDelete,
        Endpoint::EmailStatus,
    ];

    /// The path, as it appears in change records.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::V2StatusSet => "/v2/subscription/status/set",
            Endpoint::V1StatusSet => "/subscription/status/set",
            Endpoint::UsersTrack => "/users/track",
            Endpoint::UsersDelete => "/users/delete",
            Endpoint::EmailStatus => "/email/status",
        }
    }

    /// A stable one-byte code for binary storage.
    pub fn code(self) -> u8 {
        match self {
            Endpoint::V2StatusSet => 1,
            Endpoint::V1StatusSet => 2,
            Endpoint::UsersTrack => 3,
            Endpoint::UsersDelete => 4,
            Endpoint::EmailStatus => 5,
        }
    }

    /// The endpoint of a stored code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }
}

/// How a change happened: the kind of path it came through. Every record names one, so an
/// auditor can tell an API call from a person's click.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = LedgerSource)]
pub enum Source {
    /// An API call with a key.
    Api,
    /// A `List-Unsubscribe=One-Click` POST (RFC 8058).
    OneClick,
    /// The unsubscribe page of a link.
    UnsubscribePage,
    /// The preference page of a link.
    PreferencePage,
    /// A bulk import.
    Import,
    /// An operator's command.
    Admin,
}

impl Source {
    /// Every kind, in code order.
    pub const ALL: [Source; 6] =
        [Source::Api, Source::OneClick, Source::UnsubscribePage, Source::PreferencePage, Source::Import, Source::Admin];

    /// The name on the wire and in exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::OneClick => "one_click",
            Source::UnsubscribePage => "unsubscribe_page",
            Source::PreferencePage => "preference_page",
            Source::Import => "import",
            Source::Admin => "admin",
        }
    }

    /// A stable one-byte code for storage and for the hashed encoding (never reused).
    pub fn code(self) -> u8 {
        match self {
            Source::Api => 1,
            Source::OneClick => 2,
            Source::UnsubscribePage => 3,
            Source::PreferencePage => 4,
            Source::Import => 5,
            Source::Admin => 6,
        }
    }

    /// The kind of a stored code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// Where a change can be traced back to: the key, endpoint and request it came with. A change
/// a person makes through a link has no key and no API endpoint, hence the options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// The API key that made the request.
    pub api_key_id: Option<ApiKeyId>,
    /// The endpoint it called.
    pub endpoint: Option<Endpoint>,
    /// The request's id, as returned in its `x-request-id` header.
    pub request_id: Option<RequestId>,
}

impl Trace {
    /// The trace of an API call.
    pub fn api(api_key_id: ApiKeyId, endpoint: Endpoint, request_id: RequestId) -> Self {
        Trace { api_key_id: Some(api_key_id), endpoint: Some(endpoint), request_id: Some(request_id) }
    }
}

/// The person behind a change made through a page or a link. Personal data: erased with the
/// identifiers by `users/delete`, and therefore not covered by the record's hash (only its
/// presence is; see `docs/ledger.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The client's IP address, as the server saw it.
    pub ip: String,
    /// The `User-Agent` header, if any.
    pub user_agent: String,
}

/// An email or phone number without a profile: the holder of orphaned identifier state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Contact {
    /// An email address.
    Email(Email),
    /// A phone number.
    Phone(Phone),
}

impl Contact {
    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        match self {
            Contact::Email(e) => e.as_str(),
            Contact::Phone(p) => p.as_str(),
        }
    }

    /// Whether it is an email or a phone.
    pub fn kind(&self) -> ContactKind {
        match self {
            Contact::Email(_) => ContactKind::Email,
            Contact::Phone(_) => ContactKind::Phone,
        }
    }
}

/// The kind of a [`Contact`], as stores keep it beside the identifier's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactKind {
    /// An email address.
    Email,
    /// A phone number.
    Phone,
}

impl ContactKind {
    /// Both kinds, emails first.
    pub const ALL: [ContactKind; 2] = [ContactKind::Email, ContactKind::Phone];

    /// The stable code both stores keep it as; it is also the [`Subject::code`] of an orphaned
    /// identifier of this kind.
    pub const fn code(self) -> u8 {
        match self {
            ContactKind::Email => 1,
            ContactKind::Phone => 2,
        }
    }

    /// The kind of a stored code; `None` for a code no kind has.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Reads a stored identifier of this kind back into a contact.
    pub fn parse(self, text: &str) -> Result<Contact, IdentifierError> {
        match self {
            ContactKind::Email => Email::parse(text).map(Contact::Email),
            ContactKind::Phone => Phone::parse(text).map(Contact::Phone),
        }
    }
}

/// Whose state changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// A user profile.
    Profile(ProfileId),
    /// An email or phone that no profile carried at the time, with its internal id.
    Orphan(OrphanId, Contact),
    /// An email or phone erased from the history (the profiles that carried it were deleted):
    /// only its internal id remains, so its chain still verifies.
    Erased(OrphanId),
}

impl Subject {
    /// The internal id that names the subject in its chains: the profile id, or the orphaned
    /// identifier's id. Never personal data.
    pub fn internal_id(&self) -> Uuid {
        match self {
            Subject::Profile(id) => id.0,
            Subject::Orphan(id, _) | Subject::Erased(id) => id.0,
        }
    }

    /// Whether the subject is a profile (else an orphaned, possibly erased, identifier).
    pub fn is_profile(&self) -> bool {
        matches!(self, Subject::Profile(_))
    }

    /// The email or phone, while it is not erased.
    pub fn contact(&self) -> Option<&Contact> {
        match self {
            Subject::Orphan(_, contact) => Some(contact),
            _ => None,
        }
    }

    /// [`Subject::code`] of a profile subject.
    pub const PROFILE_CODE: u8 = 0;
    /// [`Subject::code`] of an erased subject.
    pub const ERASED_CODE: u8 = 3;

    /// The stable code both stores keep the kind of subject as: an orphaned identifier's is
    /// its [`ContactKind::code`].
    pub fn code(&self) -> u8 {
        match self {
            Subject::Profile(_) => Self::PROFILE_CODE,
            Subject::Orphan(_, contact) => contact.kind().code(),
            Subject::Erased(_) => Self::ERASED_CODE,
        }
    }
}

/// One state change: written atomically with the state it describes, never for a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// Its id; ids sort by time.
    pub id: ChangeId,
    /// When the change was applied.
    pub at: Timestamp,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// The group, or the global email state.
    pub group: ChainGroup,
    /// The profile or orphaned identifier.
    pub subject: Subject,
    /// The state before; `None` is `Unknown`.
    pub old: Option<SubscriptionState>,
    /// The state after.
    pub new: SubscriptionState,
    /// How the change happened (`source` on the wire).
    pub kind: Source,
    /// The key, endpoint and request it came with.
    pub trace: Trace,
    /// `use_double_opt_in_logic` as the request sent it.
    pub use_double_opt_in_logic: bool,
    /// The person, for changes made through a page or link; `None` once erased.
    pub actor: Option<Actor>,
    /// Its position in its chain, from 1. Stored, and hashed, so that the order of a chain
    /// does not depend on clocks (several PostgreSQL nodes may disagree on the time).
    pub seq: u64,
    /// The hash of the record before it in its chain ([`ChainHash::ZERO`] for the first).
    pub previous_hash: ChainHash,
    /// SHA-256 of its canonical encoding (see [`super::ledger`]).
    pub hash: ChainHash,
}

impl ChangeRecord {
    /// The chain the record belongs to.
    pub fn chain(&self) -> ChainKey {
        ChainKey { workspace_id: self.workspace_id, group: self.group, subject: self.subject.internal_id() }
    }
}
