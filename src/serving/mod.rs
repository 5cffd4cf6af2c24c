//! Serving HTTP connections: what axum's `serve` leaves open. It gives hyper no timer and no
//! limit, so a client without a key could hold the server with connections that dribble their
//! headers, sit idle, or never finish; and a shutdown waited for ever on them.
//!
//! Here every connection has a deadline while it is not running a request: `header_read_timeout`
//! from the first byte of a request head, `idle_timeout` while nothing comes (a keep-alive
//! connection between requests, or a client that does not read its answer). A connection past
//! its deadline is closed. The deadlines are kept here rather than by hyper's own header timer,
//! because hyper starts that timer as soon as it waits for a next request, so it would close
//! every idle keep-alive connection after the (short) header timeout.
//!
//! At most `max_connections` are served at once: beyond that, new connections wait in the
//! listen backlog until one closes, so the process never runs out of file descriptors (the
//! limit is raised or checked at start-up, see [`host`]). On shutdown the listener closes,
//! idle connections close, requests in flight are finished, and whatever is still open after
//! `shutdown_grace` is closed.

pub mod host;
mod io;
pub mod logging;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

/// Largest request head (request line and headers) read: beyond it, the request is answered
/// 431. hyper's default is about 400 KiB per connection, which many slow connections turn into
/// a lot of memory; no Braze client sends more than a few KiB.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Most headers in a request (hyper's default): beyond it, 431.
pub const MAX_HEADERS: usize = 100;

/// The limits of connection handling.
#[derive(Debug, Clone)]
pub struct ServingOptions {
    /// How long a client may take to send a request head, from its first byte.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request running and nothing sent or read.
    pub idle_timeout: Duration,
    /// Most connections served at once; more wait until one closes.
    pub max_connections: usize,
    /// How long a shutdown waits for requests in flight before closing every connection.
    pub shutdown_grace: Duration,
    /// Most failed authentications from one client address per `failed_auth_window`; more
    /// are answered 429 until the window ends.
    pub failed_auth_limit: u32,
    /// The window of `failed_auth_limit`.
    pub failed_auth_window: Duration,
    /// Where to serve Prometheus metrics (`/metrics`); `None` serves none.
    pub metrics_listen: Option<String>,
    /// The `listener` label of this listener's connection metrics.
    pub listener: &'static str,
}

impl Default for ServingOptions {
    fn default() -> Self {
        ServingOptions {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(10),
            failed_auth_limit: 30,
            failed_auth_window: Duration::from_secs(60),
            metrics_listen: None,
            listener: "api",
        }
    }
}

/// The flags of `serve` that set [`ServingOptions`] and the log format.
#[derive(Debug, clap::Args)]
pub struct ServingArgs {
    /// How long a client may take to send a request's headers (`10s`, `500ms`, `1m`).
    #[arg(long, env = "CONSENTRY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// How long a connection may stay idle (no request running, nothing sent) before it is
    /// closed.
    #[arg(long, env = "CONSENTRY_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Most client connections at once; more wait until one closes. The process's file limit
    /// is raised to fit them, or a warning says it cannot be.
    #[arg(long, env = "CONSENTRY_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// How long a shutdown waits for requests in flight before closing every connection.
    #[arg(long, env = "CONSENTRY_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Most failed authentications (wrong API keys) from one client address per minute;
    /// more are answered 429 until the minute ends.
    #[arg(long, env = "CONSENTRY_FAILED_AUTH_PER_MINUTE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub failed_auth_per_minute: u32,
    /// `host:port` to serve Prometheus metrics on, at `/metrics` (no key: bind it to an
    /// address only Prometheus reaches). Off by default.
    #[arg(long, env = "CONSENTRY_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// `text` (for people) or `json` (one object per line, for log collectors).
    #[arg(long, env = "CONSENTRY_LOG_FORMAT", value_enum, default_value_t = logging::LogFormat::Text)]
    pub log_format: logging::LogFormat,
}

impl ServingArgs {
    /// The options these flags set.
    pub fn options(&self) -> ServingOptions {
        ServingOptions {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections as usize,
            shutdown_grace: self.shutdown_grace,
            failed_auth_limit: self.failed_auth_per_minute,
            failed_auth_window: Duration::from_secs(60),
            metrics_listen: self.metrics_listen.clone(),
            listener: "api",
        }
    }
}

/// Reads `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 10s or 500ms"))?;
    let duration = match unit {
        "" | "s" => Duration::from_secs(number),
        "ms" => Duration::from_millis(number),
        "m" => Duration::from_secs(number * 60),
        other => return Err(format!("unknown unit {other:?} in {text:?}: use ms, s or m")),
    };
    if duration.is_zero() {
        return Err("a duration of zero would close every connection at once".into());
    }
    Ok(duration)
}

/// What a shutdown asks of the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// Finish the request in flight, then close.
    Draining,
    /// Close now.
    Closing,
}

/// Serves `router` on `listener` until `shutdown` completes, then drains as described in the
/// module documentation.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServingOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let options = Arc::new(options);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let (stop, stopped) = watch::channel(Stop::Running);
    tokio::pin!(shutdown);
    let mut full_since: Option<Instant> = None;
    loop {
        // Take a slot before accepting: beyond the cap, connections wait in the kernel's
        // backlog rather than costing a file descriptor and memory here.
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                full_since = None;
                slot
            }
            Err(_) => {
                if full_since.is_none() {
                    full_since = Some(Instant::now());
                    tracing::warn!(
                        max_connections = options.max_connections,
                        "every connection slot is taken; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    _ = &mut shutdown => break,
                    slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a little rather than spin, and keep serving.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (router, options, stopped) = (router.clone(), Arc::clone(&options), stopped.clone());
        tokio::spawn(async move {
            let open = metrics::gauge!(crate::telemetry::HTTP_CONNECTIONS_OPEN, "listener" => options.listener);
            open.increment(1.0);
            connection(stream, peer, router, &options, stopped).await;
            open.decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(Stop::Draining);
    let everyone = u32::try_from(options.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(options.shutdown_grace, slots.acquire_many(everyone)).await.is_err() {
        let open = options.max_connections - slots.available_permits();
        tracing::warn!(open, grace = ?options.shutdown_grace, "closing the connections still open after the shutdown grace");
        let _ = stop.send(Stop::Closing);
        // Each connection closes as soon as its task sees the message.
        let _ = tokio::time::timeout(Duration::from_secs(1), slots.acquire_many(everyone)).await;
    }
}

/// Where a connection is, for its deadline.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request, or for the client to read an answer, since the last byte.
    Idle { since: Instant },
    /// A request head has started arriving.
    Head { since: Instant },
    /// Requests are running (no deadline: the body read and the store have their own).
    Busy { requests: usize },
}

/// A connection's phase, shared by its socket, its requests and its watchdog.
#[derive(Debug)]
pub(crate) struct Activity {
    phase: Mutex<Phase>,
    /// Wakes the watchdog when the deadline moves earlier or appears.
    changed: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        Activity { phase: Mutex::new(Phase::Idle { since: Instant::now() }), changed: tokio::sync::Notify::new() }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Phase) -> T) -> T {
        f(&mut self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Bytes arrived: on an idle connection, a request head begins.
    pub(crate) fn read(&self) {
        let started = self.with(|phase| match phase {
            Phase::Idle { .. } => {
                *phase = Phase::Head { since: Instant::now() };
                true
            }
            _ => false,
        });
        if started {
            self.changed.notify_one();
        }
    }

    /// Bytes were sent: the client is reading, so an idle connection is not idle.
    pub(crate) fn wrote(&self) {
        self.with(|phase| {
            if let Phase::Idle { since } = phase {
                *since = Instant::now();
            }
        });
    }

    fn begin_request(&self) {
        self.with(|phase| {
            *phase = match *phase {
                Phase::Busy { requests } => Phase::Busy { requests: requests + 1 },
                _ => Phase::Busy { requests: 1 },
            }
        });
    }

    fn end_request(&self) {
        self.with(|phase| {
            *phase = match *phase {
                Phase::Busy { requests } if requests > 1 => Phase::Busy { requests: requests - 1 },
                _ => Phase::Idle { since: Instant::now() },
            }
        });
        self.changed.notify_one();
    }

    /// When the connection is to be closed if nothing changes; `None` while a request runs.
    fn deadline(&self, options: &ServingOptions) -> Option<Instant> {
        self.with(|phase| match *phase {
            Phase::Idle { since } => Some(since + options.idle_timeout),
            Phase::Head { since } => Some(since + options.header_read_timeout),
            Phase::Busy { .. } => None,
        })
    }
}

/// Ends a request's [`Phase::Busy`] however its future ends (answered or dropped).
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// Serves one connection until it closes, passes its deadline or a shutdown closes it.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    options: &ServingOptions,
    mut stopped: watch::Receiver<Stop>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = hyper_util::rt::TokioIo::new(io::Watched::new(stream, Arc::clone(&activity)));
    let requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        requests.begin_request();
        let guard = RequestGuard(Arc::clone(&requests));
        let mut router = router.clone();
        async move {
            let response = tower_service::Service::call(&mut router, request).await;
            drop(guard);
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let conn = http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        // The deadlines are ours (see the module documentation).
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    if *stopped.borrow() != Stop::Running {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        // While a request runs there is no deadline; its end wakes the watchdog, as does the
        // start of a head on an idle connection (an earlier deadline).
        let wake = activity.deadline(options).unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            () = activity.changed.notified() => {}
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(wake) => {
                if activity.deadline(options).is_some_and(|deadline| deadline <= Instant::now()) {
                    tracing::debug!("closing a connection past its header-read or idle deadline");
                    let phase = if activity.with(|phase| matches!(phase, Phase::Head { .. })) { "header" } else { "idle" };
                    metrics::counter!(crate::telemetry::HTTP_CONNECTIONS_TIMED_OUT, "listener" => options.listener, "phase" => phase).increment(1);
                    return;
                }
            }
            changed = stopped.changed() => {
                match changed.map(|()| *stopped.borrow()) {
                    Ok(Stop::Running) => {}
                    Ok(Stop::Draining) => conn.as_mut().graceful_shutdown(),
                    Ok(Stop::Closing) | Err(_) => return,
                }
            }
        }
    }
}
