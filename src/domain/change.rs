//! Change records: the trustworthy history of every consent change.

use serde::{Deserialize, Serialize};

use super::identifiers::{Email, IdentifierError, Phone};
use super::ids::{ApiKeyId, ChangeId, GroupId, ProfileId, RequestId, WorkspaceId};
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
}

impl Endpoint {
    /// Every endpoint that changes state, in code order.
    pub const ALL: [Endpoint; 4] =
        [Endpoint::V2StatusSet, Endpoint::V1StatusSet, Endpoint::UsersTrack, Endpoint::UsersDelete];

    /// The path, as it appears in change records.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::V2StatusSet => "/v2/subscription/status/set",
            Endpoint::V1StatusSet => "/subscription/status/set",
            Endpoint::UsersTrack => "/users/track",
            Endpoint::UsersDelete => "/users/delete",
        }
    }

    /// A stable one-byte code for binary storage.
    pub fn code(self) -> u8 {
        match self {
            Endpoint::V2StatusSet => 1,
            Endpoint::V1StatusSet => 2,
            Endpoint::UsersTrack => 3,
            Endpoint::UsersDelete => 4,
        }
    }

    /// The endpoint of a stored code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }
}

/// Where a change came from: enough to trace it back to a key and a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSource {
    /// The API key that made the request.
    pub api_key_id: ApiKeyId,
    /// The endpoint it called.
    pub endpoint: Endpoint,
    /// The request's id, as returned in its `x-request-id` header.
    pub request_id: RequestId,
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
    /// An email or phone that no profile carried at the time.
    Orphan(Contact),
    /// An email or phone erased from the history: the profiles that carried it were deleted.
    Erased,
}

impl Subject {
    /// [`Subject::code`] of a profile subject.
    pub const PROFILE_CODE: u8 = 0;
    /// [`Subject::code`] of an erased subject.
    pub const ERASED_CODE: u8 = 3;

    /// The stable code both stores keep the kind of subject as: an orphaned identifier's is
    /// its [`ContactKind::code`].
    pub fn code(&self) -> u8 {
        match self {
            Subject::Profile(_) => Self::PROFILE_CODE,
            Subject::Orphan(contact) => contact.kind().code(),
            Subject::Erased => Self::ERASED_CODE,
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
    /// The group.
    pub group_id: GroupId,
    /// The profile or orphaned identifier.
    pub subject: Subject,
    /// The state before; `None` is `Unknown`.
    pub old: Option<SubscriptionState>,
    /// The state after.
    pub new: SubscriptionState,
    /// The request it came from.
    pub source: ChangeSource,
    /// `use_double_opt_in_logic` as the request sent it.
    pub use_double_opt_in_logic: bool,
}
