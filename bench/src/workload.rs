//! The request mixes. The write mix ([`Workload`]): every request is
//! `POST /v2/subscription/status/set` with one entry of 50 distinct random external ids. Half of
//! them change states (fresh random users, a random group, a random state); the other half
//! replay, byte for byte, a recent change request the server already acknowledged, which changes
//! nothing. The read mix ([`ReadWorkload`]): every request is `GET /subscription/status/get` for
//! a random group and 50 distinct random seeded profiles, named by external id or by email.

use std::sync::{Arc, Mutex};

/// How many acknowledged change requests are kept for replay.
const RECENT: usize = 4096;

/// A small, fast pseudo-random generator (SplitMix64); quality is ample for picking users.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// `count` distinct numbers in `0..n` (`count` ≤ `n`).
    pub fn distinct(&mut self, count: usize, n: u64) -> Vec<u64> {
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let pick = self.below(n);
            if !out.contains(&pick) {
                out.push(pick);
            }
        }
        out
    }
}

/// A seed that differs between runs and between callers.
pub fn seed(salt: u64) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (now.as_nanos() as u64) ^ salt.wrapping_mul(0xA24B_AED4_963E_E407)
}

/// What a request does to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Changes 50 users' state in a group.
    Change,
    /// Replays an acknowledged change: changes nothing.
    NoOp,
    /// Reads 50 users' state in a group.
    Read,
}

/// A source of requests for the load generator: the write mix or the read mix.
pub trait Requests: Send + Sync + 'static {
    /// The status a successful request answers (201 for writes, 200 for reads); anything else
    /// counts as an error.
    const SUCCESS: u16;

    /// The next request, head and body, and what it does.
    fn next(&self, rng: &mut Rng) -> (Kind, Arc<[u8]>);

    /// Called with every request answered [`Self::SUCCESS`], so that the mix can replay it.
    fn acknowledged(&self, _kind: Kind, _request: Arc<[u8]>) {}
}

/// The request mix: how to build a request, and the recent acknowledged changes to replay.
pub struct Workload {
    /// The request head up to (excluding) the `Content-Length` value.
    head: String,
    groups: Vec<String>,
    profiles: u64,
    users_per_request: usize,
    recent: Mutex<Recent>,
}

struct Recent {
    items: Vec<Arc<[u8]>>,
    next: usize,
}

impl Workload {
    /// A workload against `groups` (ids), over users `user-0` … `user-{profiles-1}`.
    pub fn new(key: &str, groups: Vec<String>, profiles: u64, users_per_request: usize) -> Arc<Workload> {
        let head = format!(
            "POST /v2/subscription/status/set HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: "
        );
        Arc::new(Workload {
            head,
            groups,
            profiles,
            users_per_request: users_per_request.min(profiles as usize),
            recent: Mutex::new(Recent { items: Vec::with_capacity(RECENT), next: 0 }),
        })
    }

    /// A fresh change request, head and body.
    fn change(&self, rng: &mut Rng) -> Arc<[u8]> {
        let group = &self.groups[rng.below(self.groups.len() as u64) as usize];
        let state = if rng.below(2) == 0 { "subscribed" } else { "unsubscribed" };
        let mut body = String::with_capacity(128 + self.users_per_request * 16);
        body.push_str(r#"{"subscription_groups":[{"subscription_group_id":""#);
        body.push_str(group);
        body.push_str(r#"","subscription_state":""#);
        body.push_str(state);
        body.push_str(r#"","external_ids":["#);
        for (i, user) in rng.distinct(self.users_per_request, self.profiles).into_iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str("\"user-");
            body.push_str(&user.to_string());
            body.push('"');
        }
        body.push_str("]}]}");
        let mut request = String::with_capacity(self.head.len() + 16 + body.len());
        request.push_str(&self.head);
        request.push_str(&body.len().to_string());
        request.push_str("\r\n\r\n");
        request.push_str(&body);
        Arc::from(request.into_bytes())
    }
}

impl Requests for Workload {
    const SUCCESS: u16 = 201;

    /// A replay of a recent acknowledged change half of the time (once there is one), a fresh
    /// change otherwise.
    fn next(&self, rng: &mut Rng) -> (Kind, Arc<[u8]>) {
        if rng.below(2) == 0 {
            let recent = self.recent.lock().expect("recent lock");
            if !recent.items.is_empty() {
                let pick = rng.below(recent.items.len() as u64) as usize;
                return (Kind::NoOp, Arc::clone(&recent.items[pick]));
            }
        }
        (Kind::Change, self.change(rng))
    }

    /// Remembers an acknowledged change request for replay (replays and reads are not
    /// remembered: a replay is already in the list).
    fn acknowledged(&self, kind: Kind, request: Arc<[u8]>) {
        if kind != Kind::Change {
            return;
        }
        let mut recent = self.recent.lock().expect("recent lock");
        if recent.items.len() < RECENT {
            recent.items.push(request);
        } else {
            let at = recent.next;
            recent.items[at] = request;
            recent.next = (at + 1) % RECENT;
        }
    }
}

/// How a read names the profiles it asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBy {
    /// `external_id=user-{n}`: point reads of the profiles.
    ExternalId,
    /// `email=user{n}@example.com`: a lookup in the email index, then the profiles.
    Email,
}

impl ReadBy {
    /// The query parameter, as the report names the sub-phase.
    pub fn param(self) -> &'static str {
        match self {
            ReadBy::ExternalId => "external_id",
            ReadBy::Email => "email",
        }
    }
}

/// The read mix: `GET /subscription/status/get` for a random group and `per_request` distinct
/// random seeded profiles, every one of which exists (so that every identifier costs the
/// server a real lookup, not a miss).
pub struct ReadWorkload {
    groups: Vec<String>,
    profiles: u64,
    per_request: usize,
    by: ReadBy,
    /// The request head after the request line: the same for every request.
    headers: String,
}

impl ReadWorkload {
    /// A read mix against `groups` (ids), over the seeded profiles `0` … `profiles-1`.
    pub fn new(key: &str, groups: Vec<String>, profiles: u64, per_request: usize, by: ReadBy) -> Arc<ReadWorkload> {
        Arc::new(ReadWorkload {
            groups,
            profiles,
            per_request: per_request.min(profiles as usize),
            by,
            headers: format!(" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n"),
        })
    }

    /// A fresh read request.
    pub fn request(&self, rng: &mut Rng) -> Arc<[u8]> {
        let group = &self.groups[rng.below(self.groups.len() as u64) as usize];
        let mut request = String::with_capacity(128 + self.per_request * 40 + self.headers.len());
        request.push_str("GET /subscription/status/get?subscription_group_id=");
        request.push_str(group);
        for user in rng.distinct(self.per_request, self.profiles) {
            match self.by {
                ReadBy::ExternalId => {
                    request.push_str("&external_id=");
                    request.push_str(&crate::seed::external_id(user));
                }
                ReadBy::Email => {
                    // Percent-encoded as an HTTP client encodes a query value; the server
                    // decodes it.
                    request.push_str("&email=");
                    request.push_str(&crate::seed::email(user).replace('@', "%40"));
                }
            }
        }
        request.push_str(&self.headers);
        Arc::from(request.into_bytes())
    }
}

impl Requests for ReadWorkload {
    const SUCCESS: u16 = 200;

    fn next(&self, rng: &mut Rng) -> (Kind, Arc<[u8]>) {
        (Kind::Read, self.request(rng))
    }
}
