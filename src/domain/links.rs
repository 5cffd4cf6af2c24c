//! Signed links: the token in an unsubscribe or preference URL, and the CSRF token of the
//! preference form. Pure: encoding, signing and checking, no I/O; the keys come from the
//! workspace (see [`LinkKey`]), the time from the caller.
//!
//! A token is `PAYLOAD.MAC`, both base64url without padding. `PAYLOAD` is a small JSON object
//! naming the workspace, the key, the subject and optionally a group and an expiry; `MAC` is
//! HMAC-SHA256 with the key over `link\n` followed by the PAYLOAD text exactly as sent, so
//! nothing is canonicalized and a sender can mint tokens in any language (docs/links.md).
//! The key id inside the payload lets keys rotate: every key not retired verifies.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::change::Contact;
use super::identifiers::{Email, ExternalId, Phone};
use super::ids::{GroupId, WorkspaceId};
use super::tenant::hex32;
use super::time::Timestamp;

/// Longest token read: a payload of the longest identifiers fits well within it, and anything
/// longer is refused before any decoding or hashing.
pub const MAX_TOKEN_LEN: usize = 1024;

/// How long one CSRF window lasts; a form's token is accepted in its window and the next, so a
/// page left open up to two hours can still be saved.
pub const CSRF_WINDOW_SECS: i64 = 3600;

/// A workspace's key for signing links. The secret must be kept (a MAC needs it), so unlike API
/// keys it is stored as is; it only ever signs links of its own workspace.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkKey {
    /// Public id, written inside every token it signs (16 hex digits).
    pub id: String,
    /// 256 random bits.
    #[serde(with = "hex32")]
    pub secret: [u8; 32],
    /// When it was created; the newest key not retired signs new links.
    pub created_at: Timestamp,
    /// When it was retired; a retired key verifies nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<Timestamp>,
}

impl std::fmt::Debug for LinkKey {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkKey")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

impl LinkKey {
    /// A fresh key from the operating system's random source.
    pub fn generate(at: Timestamp) -> LinkKey {
        let mut bytes = [0u8; 40];
        getrandom::fill(&mut bytes).expect("the operating system's random source works");
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&bytes[..32]);
        let id = bytes[32..].iter().map(|b| format!("{b:02x}")).collect();
        LinkKey { id, secret, created_at: at, retired_at: None }
    }

    /// Whether it still verifies tokens.
    pub fn is_active(&self) -> bool {
        self.retired_at.is_none()
    }
}

/// Whose consent a link changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkSubject {
    /// A profile, by external id.
    ExternalId(ExternalId),
    /// An email address (its profiles, else its orphaned state).
    Email(Email),
    /// A phone number (its profiles, else its orphaned state).
    Phone(Phone),
}

impl LinkSubject {
    /// Whether a link for this subject may name a group on `channel`: an email addresses
    /// email groups, a phone SMS and WhatsApp groups, an external id any group.
    pub fn addresses(&self, channel: super::subscription::Channel) -> bool {
        match self {
            LinkSubject::ExternalId(_) => true,
            LinkSubject::Email(_) => channel == super::subscription::Channel::Email,
            LinkSubject::Phone(_) => channel.uses_phones(),
        }
    }

    /// The channels a link without a group acts on: an email's and an external id's is
    /// email (the links go in emails); a phone's are SMS and WhatsApp.
    pub fn channels(&self) -> &'static [super::subscription::Channel] {
        use super::subscription::Channel;
        match self {
            LinkSubject::ExternalId(_) | LinkSubject::Email(_) => &[Channel::Email],
            LinkSubject::Phone(_) => &[Channel::Sms, Channel::Whatsapp],
        }
    }

    /// The email or phone, for a subject that is one.
    pub fn contact(&self) -> Option<Contact> {
        match self {
            LinkSubject::ExternalId(_) => None,
            LinkSubject::Email(e) => Some(Contact::Email(e.clone())),
            LinkSubject::Phone(p) => Some(Contact::Phone(p.clone())),
        }
    }
}

/// What a token says, once its MAC is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaims {
    /// The workspace whose key signed it; the link acts on nothing else.
    pub workspace_id: WorkspaceId,
    /// The id of that key.
    pub key_id: String,
    /// Whose consent it changes.
    pub subject: LinkSubject,
    /// The one group it unsubscribes from; `None`: every group of the subject's channel.
    pub group_id: Option<GroupId>,
    /// Unix seconds after which it is no longer valid.
    pub expires_at: Option<i64>,
}

/// The payload as JSON: short names, because it travels in every email.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    v: u8,
    w: WorkspaceId,
    k: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    g: Option<GroupId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
}

/// Signs `claims` with `key` (whose id must be `claims.key_id`).
pub fn sign(claims: &LinkClaims, key: &[u8; 32]) -> String {
    let (x, e, p) = match &claims.subject {
        LinkSubject::ExternalId(id) => (Some(id.as_str().to_string()), None, None),
        LinkSubject::Email(email) => (None, Some(email.as_str().to_string()), None),
        LinkSubject::Phone(phone) => (None, None, Some(phone.as_str().to_string())),
    };
    let payload = Payload {
        v: 1,
        w: claims.workspace_id,
        k: claims.key_id.clone(),
        x,
        e,
        p,
        g: claims.group_id,
        exp: claims.expires_at,
    };
    let json = serde_json::to_vec(&payload).expect("a payload always serializes");
    let payload = URL_SAFE_NO_PAD.encode(json);
    let mac = hmac_sha256(key, &[b"link\n", payload.as_bytes()]);
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
}

/// Checks a token: well formed, signed by a key that `key` finds for its workspace and key id
/// (active keys only), not expired at `now`. Every failure is `None`, so that nobody can learn
/// from the answer which part of a forged token was wrong.
pub fn verify(
    token: &str,
    now: Timestamp,
    key: impl FnOnce(WorkspaceId, &str) -> Option<[u8; 32]>,
) -> Option<LinkClaims> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (payload_text, mac_text) = token.split_once('.')?;
    let mac = URL_SAFE_NO_PAD.decode(mac_text).ok()?;
    let payload: Payload = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload_text).ok()?).ok()?;
    if payload.v != 1 {
        return None;
    }
    let secret = key(payload.w, &payload.k)?;
    let expected = hmac_sha256(&secret, &[b"link\n", payload_text.as_bytes()]);
    if !constant_time_eq(&expected, &mac) {
        return None;
    }
    if payload.exp.is_some_and(|exp| now.as_secs() >= exp) {
        return None;
    }
    let subject = match (payload.x, payload.e, payload.p) {
        (Some(x), None, None) => LinkSubject::ExternalId(ExternalId::parse(&x).ok()?),
        (None, Some(e), None) => LinkSubject::Email(Email::parse(&e).ok()?),
        (None, None, Some(p)) => LinkSubject::Phone(Phone::parse(&p).ok()?),
        _ => return None,
    };
    Some(LinkClaims {
        workspace_id: payload.w,
        key_id: payload.k,
        subject,
        group_id: payload.g,
        expires_at: payload.exp,
    })
}

/// The CSRF token of a form served for `token` in the window of `now`: bound to the link and to
/// the time, so no server-side session is needed and a token copied from one link's form is
/// worthless for another.
pub fn csrf_token(key: &[u8; 32], token: &str, now: Timestamp) -> String {
    csrf_for_window(key, token, now.as_secs().div_euclid(CSRF_WINDOW_SECS))
}

/// Whether `presented` is the CSRF token of `token` in the window of `now` or the one before.
pub fn csrf_valid(key: &[u8; 32], token: &str, presented: &str, now: Timestamp) -> bool {
    let window = now.as_secs().div_euclid(CSRF_WINDOW_SECS);
    [window, window - 1]
        .into_iter()
        .any(|w| constant_time_eq(csrf_for_window(key, token, w).as_bytes(), presented.as_bytes()))
}

fn csrf_for_window(key: &[u8; 32], token: &str, window: i64) -> String {
    URL_SAFE_NO_PAD.encode(hmac_sha256(key, &[b"csrf\n", token.as_bytes(), b"\n", window.to_string().as_bytes()]))
}

/// HMAC-SHA256 (RFC 2104) of the concatenation of `parts`, on the SHA-256 already in the tree.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Compares without stopping at the first difference, so timing tells nothing of a MAC.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads an RFC 3339 date-time (`2026-12-31T23:59:59Z`, an offset such as `+02:00`, optional
/// fraction, which is dropped) as Unix seconds.
pub fn parse_rfc3339(raw: &str) -> Option<i64> {
    let b = raw.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = raw.get(range)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (y, mo, d, h, mi, s) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &raw[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && &rest[3..4] == ":" => {
            let hours: i64 = rest[1..3].parse().ok()?;
            let minutes: i64 = rest[4..6].parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return None,
    };
    let month_days = [31, if is_leap(y) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s.min(59) - offset)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Howard Hinnant's civil-to-days algorithm, the inverse of the one in [`super::time`].
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The base URL the person's pages are served under (`serve --public-url`), without a
/// trailing slash: `https://consent.example.com` or `https://example.com/consent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// Accepts an `http://` or `https://` URL with a host, an optional path, and no query,
    /// fragment, user information or characters that would need escaping in a URL or HTML.
    pub fn parse(raw: &str) -> Result<PublicUrl, String> {
        let trimmed = raw.trim_end_matches('/');
        let rest = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://"));
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "-._~:/[]%".contains(c);
        match rest {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') && rest.chars().all(ok_char) => {
                Ok(PublicUrl(trimmed.to_string()))
            }
            _ => Err(format!(
                "public URL {raw:?} must be http:// or https:// with a host and an optional path, \
                 without query, fragment or user information"
            )),
        }
    }

    /// The URL as given, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The unsubscribe URL of `token` (tokens are base64url and `.`, nothing to escape).
    pub fn unsubscribe_url(&self, token: &str) -> String {
        format!("{}/unsubscribe/{token}", self.0)
    }

    /// The preference-page URL of `token`.
    pub fn preference_url(&self, token: &str) -> String {
        format!("{}/preferences/{token}", self.0)
    }
}

/// What a sender puts in one email for one link: the two URLs and the RFC 8058 headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedLink {
    /// Shown in the email; a GET shows a confirmation page, a POST unsubscribes.
    pub unsubscribe_url: String,
    /// The preference page.
    pub preference_url: String,
    /// The value of the `List-Unsubscribe` header: `<unsubscribe_url>`.
    pub list_unsubscribe: String,
    /// The value of the `List-Unsubscribe-Post` header.
    pub list_unsubscribe_post: &'static str,
}

impl SignedLink {
    /// The link of `token` under `base`.
    pub fn new(base: &PublicUrl, token: &str) -> SignedLink {
        let unsubscribe_url = base.unsubscribe_url(token);
        SignedLink {
            list_unsubscribe: format!("<{unsubscribe_url}>"),
            unsubscribe_url,
            preference_url: base.preference_url(token),
            list_unsubscribe_post: "List-Unsubscribe=One-Click",
        }
    }
}

/// Links in one `POST /consent/links` request.
pub const MAX_LINKS: usize = 50;

/// One link a request asks for, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRequest {
    /// Whose consent it changes.
    pub subject: LinkSubject,
    /// The one group it unsubscribes from.
    pub group_id: Option<GroupId>,
    /// Unix seconds after which it no longer works.
    pub expires_at: Option<i64>,
}

/// Reads `{"links": [{"external_id"|"email"|"phone": …, "subscription_group_id"?, "expires_at"?}]}`
/// (1 to 50 links) against the caller's groups; every problem is reported with its place and
/// value. An expiry must lie after `now`.
pub fn parse_links_request(
    body: &serde_json::Value,
    groups: &dyn super::validation::GroupDirectory,
    now: Timestamp,
) -> Result<Vec<LinkRequest>, super::validation::Problems> {
    use super::validation::{describe, group_field, quote, Problems};
    use serde_json::Value;

    let mut problems = Problems::default();
    let items = match body.get("links") {
        _ if !body.is_object() => {
            problems.push("request body", format!("expected a JSON object, got {}", describe(body)));
            return Err(problems);
        }
        None | Some(Value::Null) => {
            problems.push("links", "is required");
            return Err(problems);
        }
        Some(Value::Array(items)) if (1..=MAX_LINKS).contains(&items.len()) => items,
        Some(Value::Array(items)) => {
            problems.push("links", format!("must hold 1 to {MAX_LINKS} links, got {}", items.len()));
            return Err(problems);
        }
        Some(other) => {
            problems.push("links", format!("expected an array of objects, got {}", describe(other)));
            return Err(problems);
        }
    };
    let mut links = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("links[{i}]");
        let Some(obj) = item.as_object() else {
            problems.push(&path, format!("expected an object, got {}", describe(item)));
            continue;
        };
        let before = problems.count();
        let given: Vec<&str> = ["external_id", "email", "phone"]
            .into_iter()
            .filter(|f| obj.get(*f).is_some_and(|v| !v.is_null()))
            .collect();
        let subject = match given.as_slice() {
            [field] => {
                let field_path = format!("{path}.{field}");
                match obj.get(*field) {
                    Some(Value::String(raw)) => {
                        let parsed = match *field {
                            "external_id" => ExternalId::parse(raw).map(LinkSubject::ExternalId),
                            "email" => Email::parse(raw).map(LinkSubject::Email),
                            _ => Phone::parse(raw).map(LinkSubject::Phone),
                        };
                        parsed.map_err(|e| problems.push(&field_path, e)).ok()
                    }
                    Some(other) => {
                        problems.push(&field_path, format!("expected a string, got {}", describe(other)));
                        None
                    }
                    None => None,
                }
            }
            _ => {
                problems.push(&path, format!("needs exactly one of external_id, email, phone, got {}", given.len()));
                None
            }
        };
        let group = match obj.get("subscription_group_id") {
            None | Some(Value::Null) => None,
            value => group_field(value, &format!("{path}.subscription_group_id"), groups, &mut problems),
        };
        if let (Some(subject), Some((id, channel))) = (&subject, group) {
            if !subject.addresses(channel) {
                problems.push(
                    &format!("{path}.subscription_group_id"),
                    format!(
                        "subscription group {id} is on the {} channel, which this identifier does not address",
                        channel.as_str()
                    ),
                );
            }
        }
        let expires_at = match obj.get("expires_at") {
            None | Some(Value::Null) => None,
            Some(Value::String(raw)) => match parse_rfc3339(raw) {
                Some(at) if at > now.as_secs() => Some(at),
                Some(_) => {
                    problems.push(&format!("{path}.expires_at"), format!("{} is not in the future", quote(raw)));
                    None
                }
                None => {
                    problems.push(
                        &format!("{path}.expires_at"),
                        format!("{} is not an RFC 3339 time such as 2026-12-31T23:59:59Z", quote(raw)),
                    );
                    None
                }
            },
            Some(other) => {
                problems.push(&format!("{path}.expires_at"), format!("expected a string, got {}", describe(other)));
                None
            }
        };
        if problems.count() == before {
            if let Some(subject) = subject {
                links.push(LinkRequest { subject, group_id: group.map(|(id, _)| id), expires_at });
            }
        }
    }
    if problems.is_empty() {
        Ok(links)
    } else {
        Err(problems)
    }
}
