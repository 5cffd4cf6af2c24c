//! The tenant's configuration: workspaces, API keys and subscription groups, and the rules
//! that govern them (names, limits, permissions, IP allowlists).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ids::{ApiKeyId, GroupId, WorkspaceId};
use super::links::LinkKey;
use super::rate_limit::{Bucket, Limit};
use super::subscription::Channel;
use super::time::Timestamp;

/// Braze's limit of subscription groups per workspace.
pub const DEFAULT_MAX_GROUPS_PER_WORKSPACE: usize = 450;

/// A tenant. Nothing crosses workspaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// Its id.
    pub id: WorkspaceId,
    /// Unique name, used by the command line.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// The limits this workspace sets instead of the buckets' defaults. Defaulted when absent,
    /// so workspaces stored before limits existed still load, with the default limits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rate_limits: BTreeMap<Bucket, Limit>,
    /// Keys that sign its links, oldest first; retired ones are kept so that `workspaces
    /// link-keys` can show when. Absent in workspaces stored before links existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_keys: Vec<LinkKey>,
    /// How its pages look. Absent: the workspace's name and the default colours.
    #[serde(default, skip_serializing_if = "Branding::is_default")]
    pub branding: Branding,
    /// How long its change records are kept. Defaulted when absent, so workspaces stored
    /// before ledger retention existed keep their records forever, as they did.
    #[serde(default, skip_serializing_if = "LedgerRetention::is_forever")]
    pub ledger_retention: LedgerRetention,
}

/// How long a workspace keeps its change records: forever (the default), or a number of days
/// after which a record is deleted unless it is the latest of its chain. The chain then
/// starts from an anchor (the hash of the last record deleted), so it still verifies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerRetention {
    /// Every record is kept.
    #[default]
    Forever,
    /// Records older than this many days are deleted, but for the latest of each chain.
    Days(u32),
}

impl LedgerRetention {
    /// The longest retention in days that can be set (100 years): beyond it, say forever.
    pub const MAX_DAYS: u32 = 36_500;

    /// A retention of `days` days; the error names the refused value.
    pub fn days(days: u64) -> Result<Self, String> {
        match u32::try_from(days) {
            Ok(days @ 1..=Self::MAX_DAYS) => Ok(LedgerRetention::Days(days)),
            _ => Err(format!("--days must be 1 to {} (or use --forever), got {days}", Self::MAX_DAYS)),
        }
    }

    /// Whether every record is kept.
    pub fn is_forever(&self) -> bool {
        matches!(self, LedgerRetention::Forever)
    }

    /// The time before which records may be deleted, as of `now`; `None` when kept forever.
    pub fn cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        match self {
            LedgerRetention::Forever => None,
            LedgerRetention::Days(days) => Some(now.minus(std::time::Duration::from_secs(u64::from(*days) * 86_400))),
        }
    }
}

impl fmt::Display for LedgerRetention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerRetention::Forever => f.write_str("forever"),
            LedgerRetention::Days(days) => write!(f, "{days} days"),
        }
    }
}

impl Workspace {
    /// The limit that applies to `bucket`: the workspace's own, else the bucket's default.
    pub fn rate_limit(&self, bucket: Bucket) -> Limit {
        self.rate_limits.get(&bucket).copied().unwrap_or(bucket.default_limit())
    }

    /// The key that signs new links: the newest one not retired.
    pub fn signing_key(&self) -> Option<&LinkKey> {
        self.link_keys.iter().filter(|k| k.is_active()).max_by_key(|k| k.created_at)
    }

    /// The secret of the active key `id`, to verify a token that names it.
    pub fn verifying_key(&self, id: &str) -> Option<[u8; 32]> {
        self.link_keys.iter().find(|k| k.id == id && k.is_active()).map(|k| k.secret)
    }
}

/// A workspace's look on the person's pages. Every value goes into HTML or CSS, so each is
/// checked strictly here ([`Branding::validate`]) and escaped again where it is written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branding {
    /// The name shown to people; default: the workspace's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// An `https://` URL of a logo image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// `#rrggbb`, the colour of buttons and headings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accent_colour: Option<String>,
}

impl Branding {
    /// Whether nothing is set.
    pub fn is_default(&self) -> bool {
        *self == Branding::default()
    }

    /// Refuses any value that could be anything but what it claims: a display name of at most
    /// 100 characters without control characters; a logo URL of at most 500 bytes, `https://`,
    /// of URL characters only (no quotes, angle brackets, backslashes or spaces); a colour of
    /// exactly `#` and six hex digits.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(name) = &self.display_name {
            if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
                return Err(format!("display name {name:?} must be 1 to 100 characters without control characters"));
            }
        }
        if let Some(url) = &self.logo_url {
            let host = url.strip_prefix("https://").unwrap_or_default();
            let url_char = |c: char| c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&()*+,;=%".contains(c);
            if url.len() > 500 || host.is_empty() || host.starts_with('/') || !url.chars().all(url_char) {
                return Err(format!(
                    "logo URL {url:?} must be an https:// URL of at most 500 bytes, without quotes, spaces, \\ or < >"
                ));
            }
        }
        if let Some(colour) = &self.accent_colour {
            let hex = colour.strip_prefix('#').unwrap_or_default();
            if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("accent colour {colour:?} must be # followed by six hex digits, e.g. #1a73e8"));
            }
        }
        Ok(())
    }
}

/// What an API key may do; each endpoint requires one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    /// Both set endpoints (V1 and V2).
    #[serde(rename = "subscription.status.set")]
    SubscriptionStatusSet,
    /// `GET /subscription/status/get`.
    #[serde(rename = "subscription.status.get")]
    SubscriptionStatusGet,
    /// `GET /subscription/user/status`.
    #[serde(rename = "subscription.groups.get")]
    SubscriptionGroupsGet,
    /// `POST /users/track`.
    #[serde(rename = "users.track")]
    UsersTrack,
    /// `POST /users/delete`.
    #[serde(rename = "users.delete")]
    UsersDelete,
    /// `POST /consent/links`.
    #[serde(rename = "consent.links.create")]
    ConsentLinksCreate,
    /// `GET /consent/history` and `GET /consent/proof`: the ledger of one subject.
    #[serde(rename = "consent.history.get")]
    ConsentHistoryGet,
    /// `POST /email/status`: the global email state.
    #[serde(rename = "email.status")]
    EmailStatus,
    /// `GET /email/unsubscribes`.
    #[serde(rename = "email.unsubscribe")]
    EmailUnsubscribe,
}

impl Permission {
    /// Every permission, in the order the command line lists them.
    pub const ALL: [Permission; 9] = [
        Permission::SubscriptionStatusSet,
        Permission::SubscriptionStatusGet,
        Permission::SubscriptionGroupsGet,
        Permission::UsersTrack,
        Permission::UsersDelete,
        Permission::ConsentLinksCreate,
        Permission::ConsentHistoryGet,
        Permission::EmailStatus,
        Permission::EmailUnsubscribe,
    ];

    /// Braze's name of the permission.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::SubscriptionStatusSet => "subscription.status.set",
            Permission::SubscriptionStatusGet => "subscription.status.get",
            Permission::SubscriptionGroupsGet => "subscription.groups.get",
            Permission::UsersTrack => "users.track",
            Permission::UsersDelete => "users.delete",
            Permission::ConsentLinksCreate => "consent.links.create",
            Permission::ConsentHistoryGet => "consent.history.get",
            Permission::EmailStatus => "email.status",
            Permission::EmailUnsubscribe => "email.unsubscribe",
        }
    }

    /// Parses Braze's name of the permission.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == raw)
    }

    /// The rate-limit bucket an endpoint requiring this permission draws from. Every
    /// permission guards exactly one kind of endpoint, so the permission an endpoint declares
    /// also names its bucket and a new endpoint cannot forget to be limited.
    pub const fn bucket(self) -> Bucket {
        match self {
            Permission::SubscriptionStatusSet => Bucket::Set,
            // The ledger's reads are reads like the status reads, and as cheap per request (a
            // page is an index range): they share the GET budget rather than add a bucket that
            // every workspace's limits and the command line would have to carry.
            Permission::SubscriptionStatusGet | Permission::SubscriptionGroupsGet | Permission::ConsentHistoryGet => {
                Bucket::Get
            }
            Permission::UsersTrack => Bucket::Track,
            Permission::UsersDelete => Bucket::Delete,
            Permission::ConsentLinksCreate => Bucket::Links,
            Permission::EmailStatus | Permission::EmailUnsubscribe => Bucket::Email,
        }
    }
}

/// The SHA-256 of a key's secret: all the store ever holds of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyHash(#[serde(with = "hex32")] pub [u8; 32]);

impl KeyHash {
    /// Hashes a presented secret. A fast hash is right here: the secret is 122 random bits,
    /// not a password, so it cannot be guessed by brute force, and every request hashes it.
    pub fn of(secret: &str) -> Self {
        KeyHash(Sha256::digest(secret.as_bytes()).into())
    }
}

/// A REST API key. The secret is shown once at creation and never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Public id, safe to log and to print.
    pub id: ApiKeyId,
    /// The workspace it acts on.
    pub workspace_id: WorkspaceId,
    /// A label for people.
    pub name: String,
    /// Hash of the secret.
    pub hash: KeyHash,
    /// What it may do.
    pub permissions: Vec<Permission>,
    /// Networks it may be used from; empty means anywhere.
    pub allowed_ips: Vec<IpNet>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<Timestamp>,
}

impl ApiKey {
    /// Creates a key and returns it with its secret, which the caller shows once.
    /// The secret has the shape of Braze's keys (a UUID), so that client libraries which
    /// check the shape accept it.
    pub fn generate(
        workspace_id: WorkspaceId,
        name: String,
        permissions: Vec<Permission>,
        allowed_ips: Vec<IpNet>,
        created_at: Timestamp,
    ) -> (ApiKey, String) {
        let secret = uuid::Uuid::new_v4().hyphenated().to_string();
        let mut permissions = permissions;
        permissions.sort();
        permissions.dedup();
        let key = ApiKey {
            id: ApiKeyId::generate(),
            workspace_id,
            name,
            hash: KeyHash::of(&secret),
            permissions,
            allowed_ips,
            created_at,
            revoked_at: None,
        };
        (key, secret)
    }

    /// Whether the key carries the permission.
    pub fn allows(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// Whether a caller at `ip` may use the key. IPv4 callers that arrive on an IPv6 socket
    /// as `::ffff:a.b.c.d` are matched as the IPv4 address they are.
    pub fn admits(&self, ip: IpAddr) -> bool {
        if self.allowed_ips.is_empty() {
            return true;
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.allowed_ips.iter().any(|net| net.contains(&ip))
    }
}

/// Whether a subscription group still takes changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupStatus {
    /// Takes changes.
    Active,
    /// Kept for its history; refuses changes.
    Archived,
}

/// A subscription group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Its id, as clients send it in `subscription_group_id`.
    pub id: GroupId,
    /// The workspace it belongs to.
    pub workspace_id: WorkspaceId,
    /// Unique in its workspace.
    pub name: String,
    /// The channel it sends on.
    pub channel: Channel,
    /// Active or archived.
    pub status: GroupStatus,
    /// When it was created.
    pub created_at: Timestamp,
    /// Whether the preference page offers it to everyone (else only to people who have a state
    /// in it). Absent in groups stored before pages existed: not public.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
    /// What the preference page says of it, under its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Checks a group's description: shown to people, so short and printable.
pub fn validate_description(description: &str) -> Result<(), String> {
    if description.chars().count() > 300 || description.chars().any(|c| c.is_control() && c != '\n') {
        return Err(format!("description {description:?} must be at most 300 characters without control characters"));
    }
    Ok(())
}

/// What a new workspace or group must not collide with, checked against everything stored.
///
/// The catalog checks it against what it holds in memory, and the PostgreSQL store checks it
/// again inside the transaction that inserts the item: several processes create workspaces and
/// groups in one database (nodes bootstrapping at once, admin commands), and only a check in
/// that transaction sees what the others committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// No workspace has this name.
    Workspace {
        /// The new workspace's name.
        name: String,
    },
    /// The workspace has no group of this name (archived ones included: history refers to
    /// them by name) and fewer than `max_active` active groups.
    Group {
        /// The workspace the group goes into.
        workspace: WorkspaceId,
        /// Its name, for messages.
        workspace_name: String,
        /// The new group's name.
        name: String,
        /// The most active groups a workspace may have.
        max_active: usize,
    },
}

impl Admission {
    /// Whether the item may join `workspaces` and `groups`; the refusal says why.
    pub fn check<'a>(
        &self,
        mut workspaces: impl Iterator<Item = &'a Workspace>,
        groups: impl Iterator<Item = &'a Group>,
    ) -> Result<(), String> {
        match self {
            Admission::Workspace { name } => match workspaces.any(|w| &w.name == name) {
                true => Err(format!("a workspace named {name:?} already exists")),
                false => Ok(()),
            },
            Admission::Group { workspace, workspace_name, name, max_active } => {
                let mut active = 0;
                for group in groups.filter(|g| g.workspace_id == *workspace) {
                    if &group.name == name {
                        return Err(format!("workspace {workspace_name:?} already has a group named {name:?}"));
                    }
                    active += usize::from(group.status == GroupStatus::Active);
                }
                if active >= *max_active {
                    return Err(format!(
                        "workspace {workspace_name:?} already has {active} active groups, the most it may have; \
                         archive one first"
                    ));
                }
                Ok(())
            }
        }
    }
}

/// A change of one workspace's rate limit, applied to the workspace as stored.
///
/// The PostgreSQL store applies it inside the transaction that reads the stored workspace, so
/// that two processes changing two buckets of one workspace at once both keep their change;
/// writing back a whole workspace read earlier would undo the other's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitChange {
    /// The bucket whose limit changes.
    pub bucket: Bucket,
    /// Requests per window.
    pub requests: u64,
    /// The window, or `None` to keep the window that applies now.
    pub window_seconds: Option<u64>,
}

impl LimitChange {
    /// Sets the limit on `workspace`; the error names the refused value.
    pub fn apply(&self, workspace: &mut Workspace) -> Result<(), String> {
        let window_seconds =
            self.window_seconds.unwrap_or(u64::from(workspace.rate_limit(self.bucket).window_seconds()));
        let limit = Limit::new(self.requests, window_seconds)?;
        workspace.rate_limits.insert(self.bucket, limit);
        Ok(())
    }
}

/// A change of one workspace, applied to the workspace as stored (see [`LimitChange`] for why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceChange {
    /// Set a bucket's rate limit.
    Limit(LimitChange),
    /// Add a link key, which then signs new links.
    AddLinkKey(LinkKey),
    /// Retire the link key with this id at this time (a key already retired stays as it was).
    RetireLinkKey {
        /// The key's id.
        id: String,
        /// When.
        at: Timestamp,
    },
    /// Replace the branding.
    Branding(Branding),
    /// How long its change records are kept.
    LedgerRetention(LedgerRetention),
}

impl WorkspaceChange {
    /// Applies the change to `workspace`; the error names the refused value.
    pub fn apply(&self, workspace: &mut Workspace) -> Result<(), String> {
        match self {
            WorkspaceChange::Limit(change) => change.apply(workspace),
            WorkspaceChange::AddLinkKey(key) => {
                if workspace.link_keys.iter().all(|k| k.id != key.id) {
                    workspace.link_keys.push(key.clone());
                }
                Ok(())
            }
            WorkspaceChange::RetireLinkKey { id, at } => {
                let key = workspace
                    .link_keys
                    .iter_mut()
                    .find(|k| &k.id == id)
                    .ok_or_else(|| format!("workspace {:?} has no link key {id:?}", workspace.name))?;
                key.retired_at.get_or_insert(*at);
                Ok(())
            }
            WorkspaceChange::LedgerRetention(retention) => {
                workspace.ledger_retention = *retention;
                Ok(())
            }
            WorkspaceChange::Branding(branding) => {
                branding.validate()?;
                workspace.branding = branding.clone();
                Ok(())
            }
        }
    }
}

/// Checks a workspace, key or group name given on the command line: names are for people and
/// scripts, so they are short, printable and without surrounding white space.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 {
        return Err(format!("{what} name must be 1 to 200 bytes long, got {}", name.len()));
    }
    if name.trim() != name || name.chars().any(char::is_control) {
        return Err(format!("{what} name {name:?} has surrounding white space or control characters"));
    }
    Ok(())
}

/// A 32-byte value as 64 hex digits in the catalog's JSON.
pub(crate) mod hex32 {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(64);
        for b in bytes {
            out.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        if text.len() != 64 {
            return Err(D::Error::custom("a key hash is 64 hex digits"));
        }
        let mut out = [0u8; 32];
        for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(chunk).map_err(D::Error::custom)?;
            out[i] = u8::from_str_radix(pair, 16).map_err(D::Error::custom)?;
        }
        Ok(out)
    }
}
