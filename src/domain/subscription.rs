//! Subscription states and channels.

use serde::{Deserialize, Serialize};

use super::ids::GroupId;
use super::time::Timestamp;

/// A profile's (or orphaned identifier's) state in one subscription group, or its global email
/// state. `Unknown` is the absence of a state, not a value of this type. `OptedIn` is a global
/// email state only: the group endpoints parse with [`SubscriptionState::parse`], which refuses
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionState {
    /// The person agreed to hear from this group.
    Subscribed,
    /// The person asked not to hear from this group.
    Unsubscribed,
    /// Global email state only: the person confirmed their address (Braze's `opted_in`).
    #[serde(rename = "opted_in")]
    OptedIn,
}

impl SubscriptionState {
    /// Parses the API's spelling exactly (`subscribed` | `unsubscribed`): a consent signal
    /// is too important to guess at `Subscribe` or `SUBSCRIBED`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "subscribed" => Some(Self::Subscribed),
            "unsubscribed" => Some(Self::Unsubscribed),
            _ => None,
        }
    }

    /// Parses a global email state (`opted_in` | `subscribed` | `unsubscribed`), exactly.
    pub fn parse_global(raw: &str) -> Option<Self> {
        match raw {
            "opted_in" => Some(Self::OptedIn),
            other => Self::parse(other),
        }
    }

    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscribed => "subscribed",
            Self::Unsubscribed => "unsubscribed",
            Self::OptedIn => "opted_in",
        }
    }

    /// The stable code both stores keep it as (a byte in the embedded store, an `INT2` on
    /// PostgreSQL). 0 is never a state's code: the embedded store spells "no state" with it.
    pub const fn code(self) -> u8 {
        match self {
            Self::Subscribed => 1,
            Self::Unsubscribed => 2,
            Self::OptedIn => 3,
        }
    }

    /// The state of a stored code; `None` for a code no state has.
    pub fn from_code(code: u8) -> Option<Self> {
        [Self::Subscribed, Self::Unsubscribed, Self::OptedIn].into_iter().find(|s| s.code() == code)
    }
}

/// The channel a subscription group sends on; it decides which identifiers the group takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Email: takes `emails`.
    Email,
    /// SMS, MMS and RCS: takes `phones`.
    Sms,
    /// WhatsApp: takes `phones`.
    Whatsapp,
}

impl Channel {
    /// Parses `email`, `sms` or `whatsapp`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "email" => Some(Self::Email),
            "sms" => Some(Self::Sms),
            "whatsapp" => Some(Self::Whatsapp),
            _ => None,
        }
    }

    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Whatsapp => "whatsapp",
        }
    }

    /// Whether phone numbers address this channel (SMS and WhatsApp do, email does not).
    pub fn uses_phones(self) -> bool {
        matches!(self, Self::Sms | Self::Whatsapp)
    }
}

/// A profile's (or orphaned identifier's) state in one group, with the time of its last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateView {
    /// The group.
    pub group_id: GroupId,
    /// Its state.
    pub state: SubscriptionState,
    /// When it was last changed.
    pub updated_at: Timestamp,
}
