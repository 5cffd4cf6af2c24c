//! Destinations: where a workspace's events go, how they are signed, and the state of their
//! delivery. Their rules (which URLs and addresses are allowed, the retry schedule) are pure
//! functions here; the stores keep a destination as the JSON of [`Destination`].

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sign::Secret;
use crate::domain::ids::WorkspaceId;
use crate::domain::time::Timestamp;

/// Events per message at most (`--max-batch`), Braze Currents' own batch size.
pub const MAX_BATCH: usize = 100;
/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// A destination failing this long is disabled.
pub const FAILING_LIMIT: Duration = Duration::from_secs(5 * 24 * 3600);
/// Svix's retry schedule: the wait before each retry after a failed attempt.
pub const SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// The wire format of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Standard Webhooks 1.0, signed.
    Standard,
    /// Braze Currents' custom HTTP connector.
    Currents,
    /// NATS JetStream: one publish per event. Made by `serve --stream` for each workspace,
    /// never by `webhooks create`.
    Nats,
}

impl Format {
    /// Parses `standard` or `currents`.
    pub fn parse(raw: &str) -> Result<Format, String> {
        match raw {
            "standard" => Ok(Format::Standard),
            "currents" => Ok(Format::Currents),
            "nats" => {
                Err("the format nats is not created by webhooks create: run serve --stream nats://host:port".into())
            }
            other => Err(format!("the format is standard or currents, not {other:?}")),
        }
    }

    /// The name `webhooks list` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Standard => "standard",
            Format::Currents => "currents",
            Format::Nats => "nats",
        }
    }
}

/// The kinds of event a destination may take (`--events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A subscription group's state changed.
    StateChange,
    /// The global email state changed.
    GlobalStateChange,
    /// A profile was deleted (`POST /users/delete`): Braze's `users.UserDeleteRequest`.
    UserDelete,
}

impl EventKind {
    /// Every kind: what a destination created without `--events` takes.
    pub const ALL: [EventKind; 3] = [EventKind::StateChange, EventKind::GlobalStateChange, EventKind::UserDelete];

    /// Parses `state_change`, `global_state_change` or `user_delete`.
    pub fn parse(raw: &str) -> Result<EventKind, String> {
        match raw {
            "state_change" => Ok(EventKind::StateChange),
            "global_state_change" => Ok(EventKind::GlobalStateChange),
            "user_delete" => Ok(EventKind::UserDelete),
            other => Err(format!("an event kind is state_change, global_state_change or user_delete, not {other:?}")),
        }
    }
}

/// A signing secret in force, with the time it stops signing (a rotated-out secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptSecret {
    /// `whsec_…`.
    pub secret: String,
    /// When it stops signing; `None` for the current secret.
    pub until: Option<Timestamp>,
}

/// One destination and its delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// Its id.
    pub id: Uuid,
    /// The workspace whose events it takes.
    pub workspace_id: WorkspaceId,
    /// Where messages are POSTed.
    pub url: String,
    /// The wire format.
    pub format: Format,
    /// Secrets, the current one first (`standard` only).
    pub secrets: Vec<KeptSecret>,
    /// `Authorization: Bearer` token (`currents`).
    pub bearer_token: Option<String>,
    /// The event kinds it takes.
    pub events: Vec<EventKind>,
    /// Events per message at most.
    pub max_batch: usize,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A destination's delivery state, written by the relay only (the admin commands write the
/// [`Destination`]), so that neither overwrites the other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// Embedded store: the next outbox position this destination reads.
    pub cursor: u64,
    /// Why it was disabled (a 410, or failing for five days), if it was.
    pub disabled: Option<String>,
    /// The last failure, for `webhooks list`.
    pub last_error: Option<String>,
    /// When the current run of failures began.
    pub failing_since: Option<Timestamp>,
}

/// A message: its events fixed when it was formed, so that every attempt sends the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `webhook-id`: the event id of a single event, else the first and last ids joined.
    pub id: String,
    /// The records it carries, in order.
    pub changes: Vec<crate::domain::ids::ChangeId>,
    /// The body, exactly as sent.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_at: Timestamp,
    /// Messages to send once this one is done with: a `currents` batch refused with a 400 is
    /// split into one message per event, kept here in order, so that each is retried (or
    /// dropped) alone while the destination still holds one message at a time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<Message>,
}

impl Message {
    /// The message of `changes` with `body`, due at `now`.
    pub fn new(changes: Vec<crate::domain::ids::ChangeId>, body: String, now: Timestamp) -> Message {
        let id = match (changes.first(), changes.last()) {
            (Some(first), Some(last)) if first != last => format!("{}_{}", first.0, last.0),
            (Some(first), _) => first.0.to_string(),
            _ => String::new(),
        };
        Message { id, changes, body, attempts: 0, next_at: now, then: Vec::new() }
    }

    /// The message split into one message per event, in order, each due at `now` with the
    /// event's own bytes and its id as message id (stable: the same split gives the same
    /// messages); `None` when it carries one event or fewer, or its body does not parse.
    pub fn split(&self, now: Timestamp) -> Option<Vec<Message>> {
        #[derive(Deserialize)]
        struct Id {
            id: Uuid,
        }
        let events = self.events()?;
        if events.len() < 2 {
            return None;
        }
        events
            .iter()
            .map(|raw| {
                let id: Id = serde_json::from_str(raw.get()).ok()?;
                let single = format!("{{\"events\":[{}]}}", raw.get());
                Some(Message::new(vec![crate::domain::ids::ChangeId(id.id)], single, now))
            })
            .collect()
    }

    /// Each event of the body, its bytes as they are in it; `None` if the body does not parse.
    pub fn events(&self) -> Option<Vec<&serde_json::value::RawValue>> {
        #[derive(Deserialize)]
        struct Body<'a> {
            #[serde(borrow)]
            events: Vec<&'a serde_json::value::RawValue>,
        }
        serde_json::from_str::<Body<'_>>(&self.body).ok().map(|b| b.events)
    }

    /// The next message once this one is done with: the first of [`Message::then`], due at
    /// `now`, carrying the rest.
    pub fn next(&mut self, now: Timestamp) -> Option<Message> {
        if self.then.is_empty() {
            return None;
        }
        let mut next = self.then.remove(0);
        next.then = std::mem::take(&mut self.then);
        next.next_at = now;
        Some(next)
    }
}

impl Destination {
    /// The secrets that sign at `now`: the current one, and a rotated-out one for 24 hours.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<Secret> {
        self.secrets
            .iter()
            .filter(|k| k.until.is_none_or(|until| now < until))
            .filter_map(|k| Secret::parse(&k.secret).ok())
            .collect()
    }

    /// Makes a new current secret; the old one keeps signing for [`ROTATION_OVERLAP`].
    pub fn rotate(&mut self, now: Timestamp) -> Secret {
        let fresh = Secret::generate();
        self.secrets.retain(|k| k.until.is_none_or(|until| now < until));
        for kept in &mut self.secrets {
            if kept.until.is_none() {
                kept.until = Some(now.plus(ROTATION_OVERLAP));
            }
        }
        self.secrets.insert(0, KeptSecret { secret: fresh.to_text(), until: None });
        fresh
    }
}

/// Checks a destination URL: `https` or `http`, a host, no user name or password in it.
/// Which addresses the host may resolve to is checked when sending ([`allowed_address`]).
pub fn check_url(raw: &str) -> Result<(), String> {
    let uri: axum::http::Uri = raw.parse().map_err(|_| format!("url: not a URL: {raw:?}"))?;
    match uri.scheme_str() {
        Some("https") | Some("http") => {}
        _ => return Err(format!("url: the scheme is https or http: {raw:?}")),
    }
    let authority = uri.authority().ok_or_else(|| format!("url: no host: {raw:?}"))?;
    if authority.as_str().contains('@') {
        return Err("url: a URL may not carry a user name or password; use --bearer-token or --secret".into());
    }
    if authority.host().is_empty() {
        return Err(format!("url: no host: {raw:?}"));
    }
    Ok(())
}

/// The host of a URL that [`check_url`] accepted, without IPv6 brackets, and its port.
pub fn host_and_port(raw: &str) -> Option<(String, u16)> {
    let uri: axum::http::Uri = raw.parse().ok()?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_string();
    Some((host, uri.port_u16().unwrap_or(if https { 443 } else { 80 })))
}

/// Why events may not go to `host`, which resolved to `addrs`: every address must be one
/// they may go to (a name with one private address among public ones is refused too, since
/// the sender could be steered to it). `None` when they may.
pub fn refused_addresses(host: &str, addrs: &[IpAddr], allow_private: bool) -> Option<String> {
    if addrs.is_empty() {
        return Some(format!("url: the host {host:?} resolves to no address"));
    }
    let refused: Vec<String> =
        addrs.iter().filter(|ip| !allowed_address(**ip, allow_private)).map(IpAddr::to_string).collect();
    (!refused.is_empty()).then(|| {
        format!(
            "url: the host {host:?} resolves to {}, a loopback, private, link-local, CGNAT, multicast, \
             unspecified or cloud-metadata address; events are not sent there unless the server runs \
             with --allow-private-webhooks (or `webhooks create --allow-private`)",
            refused.join(", ")
        )
    })
}

/// Resolves the host of `url` (checked by [`check_url`]) and refuses it if any of its
/// addresses is one events may not go to ([`refused_addresses`]).
pub async fn check_host(url: &str, allow_private: bool) -> Result<(), String> {
    let (host, port) = host_and_port(url).ok_or_else(|| format!("url: no host: {url:?}"))?;
    if allow_private {
        return Ok(());
    }
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("url: cannot resolve the host {host:?}: {e}"))?
        .map(|a| a.ip())
        .collect();
    refused_addresses(&host, &addrs, allow_private).map_or(Ok(()), Err)
}

/// Whether events may be sent to `ip`: never to loopback, private, link-local, CGNAT,
/// unique-local, unspecified, multicast or cloud-metadata addresses unless `allow_private`.
pub fn allowed_address(ip: IpAddr, allow_private: bool) -> bool {
    allow_private || is_public(ip)
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local() // 169.254/16, cloud metadata among them
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
                || a == 0
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first == 0x64 && v6.segments()[1] == 0xff9b) // NAT64 into any IPv4
                || first == 0x2001 && v6.segments()[1] == 0xdb8) // documentation
        }
    }
}

/// The wait before retrying a message that failed `attempts` times, jittered by `jitter` in
/// [0, 1) (up to 20% more, so that destinations failing together do not retry together);
/// `None` once the schedule is spent.
pub fn retry_delay(attempts: u32, jitter: f64) -> Option<Duration> {
    let base = *SCHEDULE.get(attempts.checked_sub(1)? as usize)?;
    Some(base.mul_f64(1.0 + 0.2 * jitter.clamp(0.0, 1.0)))
}

/// What an answer means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Delivered,
    /// Tried again later; `after` overrides the schedule (a 429's `retry-after`).
    Retry {
        /// Why, for `webhooks list`.
        why: String,
        /// The receiver's own wait, if it named one.
        after: Option<Duration>,
    },
    /// The destination is gone (410): disabled.
    Gone,
    /// Failed for good (other 4xx, 3xx): dropped, the destination goes on with the next.
    Failed(String),
}

/// The verdict of an HTTP status (`retry_after` is the `retry-after` header in seconds).
pub fn verdict(status: u16, retry_after: Option<u64>) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        410 => Verdict::Gone,
        429 => Verdict::Retry { why: "429 Too Many Requests".into(), after: retry_after.map(Duration::from_secs) },
        500..=599 => Verdict::Retry { why: format!("HTTP {status}"), after: None },
        300..=399 => Verdict::Failed(format!("HTTP {status}: redirects are not followed")),
        _ => Verdict::Failed(format!("HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_http_or_https_with_a_host_and_no_credentials() {
        assert!(check_url("https://hooks.example.com/in").is_ok());
        assert!(check_url("http://127.0.0.1:8080/").is_ok());
        assert!(check_url("ftp://example.com/").unwrap_err().contains("scheme"));
        assert!(check_url("https://user:pw@example.com/").unwrap_err().contains("password"));
        assert!(check_url("not a url").is_err());
        assert!(check_url("/relative").is_err());
    }

    #[test]
    fn private_and_metadata_addresses_are_refused_unless_allowed() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
            "ff02::1",
            "::",
            "fc00::1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(!allowed_address(ip, false), "{refused} is refused");
            assert!(allowed_address(ip, true), "{refused} is allowed with --allow-private-webhooks");
        }
        for public in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(allowed_address(public.parse().unwrap(), false), "{public} is public");
        }
    }

    #[test]
    fn retries_follow_svixs_schedule_with_up_to_a_fifth_of_jitter() {
        assert_eq!(retry_delay(1, 0.0), Some(Duration::from_secs(5)));
        assert_eq!(retry_delay(2, 0.0), Some(Duration::from_secs(300)));
        assert_eq!(retry_delay(7, 0.0), Some(Duration::from_secs(36_000)));
        assert_eq!(retry_delay(8, 0.0), None);
        assert_eq!(retry_delay(0, 0.0), None);
        assert_eq!(retry_delay(1, 0.5), Some(Duration::from_secs_f64(5.5)));
    }

    #[test]
    fn answers_decide_delivered_retry_gone_or_failed() {
        assert_eq!(verdict(204, None), Verdict::Delivered);
        assert_eq!(verdict(410, None), Verdict::Gone);
        assert_eq!(
            verdict(429, Some(7)),
            Verdict::Retry { why: "429 Too Many Requests".into(), after: Some(Duration::from_secs(7)) }
        );
        assert!(matches!(verdict(503, None), Verdict::Retry { after: None, .. }));
        assert!(matches!(verdict(302, None), Verdict::Failed(_)));
        assert!(matches!(verdict(400, None), Verdict::Failed(_)));
    }

    #[test]
    fn a_rotation_keeps_the_old_secret_signing_for_a_day() {
        let now = Timestamp(1_000_000_000_000);
        let first = Secret::generate();
        let mut d = Destination {
            id: Uuid::nil(),
            workspace_id: WorkspaceId(Uuid::nil()),
            url: "https://example.com".into(),
            format: Format::Standard,
            secrets: vec![KeptSecret { secret: first.to_text(), until: None }],
            bearer_token: None,
            events: vec![EventKind::StateChange],
            max_batch: 1,
            created_at: now,
        };
        let second = d.rotate(now);
        assert_eq!(d.signing_secrets(now), vec![second.clone(), first]);
        assert_eq!(d.signing_secrets(now.plus(ROTATION_OVERLAP)), vec![second]);
    }
}
