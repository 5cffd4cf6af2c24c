//! The load generator: a closed loop (as fast as the server answers) and an open loop (a fixed
//! schedule, latency measured from the intended send time so that a slow server cannot hide
//! its stalls by slowing the generator down), over keep-alive connections, sending the requests
//! of a mix ([`Requests`]: the write mix or the read mix) and counting what comes back. With
//! several servers (nodes sharing one database), connection `i` goes to server `i mod n`, so
//! each gets the same share of the connections (round robin per connection).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::client::Connection;
use crate::workload::{seed, Kind, Requests, Rng};

/// What one run of the generator measured.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// From the first request to the end of the run.
    pub elapsed: Duration,
    /// Change requests answered 201.
    pub changes: u64,
    /// No-op requests answered 201.
    pub noops: u64,
    /// Read requests answered 200.
    pub reads: u64,
    /// Failures by kind (`HTTP 500`, `io: …`), including any status but the mix's success.
    pub errors: BTreeMap<String, u64>,
    /// Latency of every success, in microseconds, sorted.
    pub latencies: Vec<u32>,
    /// Successes completed in each second of the run.
    pub per_second: Vec<u64>,
    /// Open loop only: requests scheduled.
    pub scheduled: u64,
    /// Open loop only: the most requests in flight at once.
    pub max_in_flight: usize,
    /// Open loop only: the longest a due request waited to be picked up by a connection
    /// (includes `max_schedule_lag`).
    pub max_send_delay: Duration,
    /// Open loop only: the longest the scheduler queued a request after it was due (its timer
    /// woke late: timer granularity, or no free CPU).
    pub max_schedule_lag: Duration,
}

impl LoadResult {
    /// Requests answered with the mix's success status (201 for writes, 200 for reads).
    pub fn ok(&self) -> u64 {
        self.changes + self.noops + self.reads
    }

    /// Requests that failed.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Successes per second.
    pub fn rate(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q` (nearest rank), or zero without samples.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        Duration::from_micros(u64::from(self.latencies[rank - 1]))
    }

    /// The largest latency.
    pub fn max(&self) -> Duration {
        Duration::from_micros(u64::from(self.latencies.last().copied().unwrap_or(0)))
    }

    /// The lowest and highest rate over consecutive whole windows of `seconds`.
    pub fn window_rates(&self, seconds: usize) -> Option<(f64, f64)> {
        let whole = (self.elapsed.as_secs() as usize).min(self.per_second.len());
        let windows: Vec<f64> = self.per_second[..whole]
            .chunks_exact(seconds.max(1))
            .map(|w| w.iter().sum::<u64>() as f64 / seconds.max(1) as f64)
            .collect();
        let min = windows.iter().copied().reduce(f64::min)?;
        let max = windows.iter().copied().reduce(f64::max)?;
        Some((min, max))
    }

    /// The result of a run of `elapsed` made of concurrent `parts`: their counts added up,
    /// their latencies pooled and sorted, their per-second successes summed second by second.
    pub fn merged(elapsed: Duration, parts: Vec<LoadResult>) -> LoadResult {
        let mut total = LoadResult { elapsed, ..LoadResult::default() };
        for part in parts {
            total.changes += part.changes;
            total.noops += part.noops;
            total.reads += part.reads;
            total.latencies.extend(part.latencies);
            for (kind, count) in part.errors {
                *total.errors.entry(kind).or_default() += count;
            }
            if total.per_second.len() < part.per_second.len() {
                total.per_second.resize(part.per_second.len(), 0);
            }
            for (sum, count) in total.per_second.iter_mut().zip(part.per_second) {
                *sum += count;
            }
        }
        total.latencies.sort_unstable();
        total
    }

    fn merge(&mut self, tally: Tally) {
        self.changes += tally.changes;
        self.noops += tally.noops;
        self.reads += tally.reads;
        for (kind, count) in tally.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        self.latencies.extend(tally.latencies);
    }
}

/// One connection's counts.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    changes: u64,
    noops: u64,
    reads: u64,
    errors: BTreeMap<String, u64>,
}

/// Shared per-second completion counters.
struct Timeline {
    start: Instant,
    seconds: Vec<AtomicU64>,
}

impl Timeline {
    fn new(start: Instant, duration: Duration) -> Timeline {
        Timeline { start, seconds: (0..duration.as_secs() + 2).map(|_| AtomicU64::new(0)).collect() }
    }

    fn record(&self, at: Instant) {
        let second = at.saturating_duration_since(self.start).as_secs() as usize;
        if let Some(slot) = self.seconds.get(second) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn into_counts(self) -> Vec<u64> {
        self.seconds.into_iter().map(AtomicU64::into_inner).collect()
    }
}

/// A connection that reconnects after failures, counting them.
struct Client {
    addr: SocketAddr,
    conn: Option<Connection>,
}

impl Client {
    /// Sends one request; on success returns the status, on failure the error's description
    /// (and drops the connection, to be reopened by the next call).
    async fn send(&mut self, request: &[u8]) -> Result<u16, String> {
        if self.conn.is_none() {
            match Connection::connect(self.addr).await {
                Ok(conn) => self.conn = Some(conn),
                Err(err) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return Err(format!("connect: {}", err.kind()));
                }
            }
        }
        let conn = self.conn.as_mut().expect("connected above");
        match conn.send(request).await {
            Ok(response) => {
                if conn.is_closed() {
                    self.conn = None;
                }
                Ok(response.status)
            }
            Err(err) => {
                self.conn = None;
                Err(format!("io: {err}"))
            }
        }
    }
}

async fn connect_all(addrs: &[SocketAddr], count: usize) -> anyhow::Result<Vec<Client>> {
    anyhow::ensure!(!addrs.is_empty(), "no server address to connect to");
    let mut clients = Vec::with_capacity(count);
    for i in 0..count {
        let addr = addrs[i % addrs.len()];
        let conn = Connection::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
        clients.push(Client { addr, conn: Some(conn) });
    }
    Ok(clients)
}

/// Sends one request and counts its outcome; returns when it completed.
async fn exchange<W: Requests>(
    client: &mut Client,
    workload: &W,
    rng: &mut Rng,
    tally: &mut Tally,
    since: Option<Instant>,
) -> Instant {
    let (kind, request) = workload.next(rng);
    let sent = Instant::now();
    let outcome = client.send(&request).await;
    let done = Instant::now();
    match outcome {
        Ok(status) if status == W::SUCCESS => {
            let latency = done.saturating_duration_since(since.unwrap_or(sent));
            tally.latencies.push(latency.as_micros().min(u128::from(u32::MAX)) as u32);
            match kind {
                Kind::Change => tally.changes += 1,
                Kind::NoOp => tally.noops += 1,
                Kind::Read => tally.reads += 1,
            }
            workload.acknowledged(kind, request);
        }
        Ok(status) => *tally.errors.entry(format!("HTTP {status}")).or_default() += 1,
        Err(err) => *tally.errors.entry(err).or_default() += 1,
    }
    done
}

/// Closed loop: `connections` connections (spread over `addrs`) each send their next request as
/// soon as the previous one is answered, for `duration`. Requests still in flight at the end are
/// not counted.
pub async fn closed_loop<W: Requests>(
    addrs: &[SocketAddr],
    workload: Arc<W>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let clients = connect_all(addrs, connections).await?;
    let start = Instant::now();
    let deadline = start + duration;
    let timeline = Arc::new(Timeline::new(start, duration));
    let mut tasks = Vec::with_capacity(connections);
    for (i, mut client) in clients.into_iter().enumerate() {
        let workload = Arc::clone(&workload);
        let timeline = Arc::clone(&timeline);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed(i as u64));
            let mut tally = Tally { latencies: Vec::with_capacity(1 << 14), ..Tally::default() };
            while Instant::now() < deadline {
                let mut one = Tally::default();
                let done = exchange(&mut client, &*workload, &mut rng, &mut one, None).await;
                if done > deadline {
                    break;
                }
                if one.errors.is_empty() {
                    timeline.record(done);
                }
                merge_tally(&mut tally, one);
            }
            tally
        }));
    }
    let mut result = LoadResult::default();
    for task in tasks {
        result.merge(task.await.context("a load task panicked")?);
    }
    result.elapsed = duration;
    result.latencies.sort_unstable();
    result.per_second = Arc::try_unwrap(timeline).map_err(|_| anyhow::anyhow!("timeline still shared"))?.into_counts();
    Ok(result)
}

fn merge_tally(into: &mut Tally, one: Tally) {
    into.latencies.extend(one.latencies);
    into.changes += one.changes;
    into.noops += one.noops;
    into.reads += one.reads;
    for (kind, count) in one.errors {
        *into.errors.entry(kind).or_default() += count;
    }
}

/// The queue of due requests of the open loop, shared by its connections: each idle
/// connection takes the oldest due request.
struct Dispatch {
    queue: Mutex<std::collections::VecDeque<Instant>>,
    ready: tokio::sync::Notify,
    finished: std::sync::atomic::AtomicBool,
}

impl Dispatch {
    /// Queues a due request and wakes one idle connection.
    fn push(&self, due: Instant) {
        self.queue.lock().expect("dispatch lock").push_back(due);
        self.ready.notify_one();
    }

    /// No more requests will be queued.
    fn finish(&self) {
        self.finished.store(true, Ordering::Release);
        self.ready.notify_waiters();
    }

    /// The oldest due request, or `None` once the schedule is over and the queue empty.
    async fn next(&self) -> Option<Instant> {
        loop {
            // Registered before looking, so that a push in between still wakes this waiter.
            let ready = self.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if let Some(due) = self.queue.lock().expect("dispatch lock").pop_front() {
                return Some(due);
            }
            if self.finished.load(Ordering::Acquire) {
                return None;
            }
            ready.await;
        }
    }
}

/// Open loop: a request is due every `1/rate` s for `duration`; each is handed to an idle
/// connection of a pool of `pool` (spread over `addrs`), and its latency runs from when it was
/// due, so queueing behind a slow server (or a busy pool) counts.
pub async fn open_loop<W: Requests>(
    addrs: &[SocketAddr],
    workload: Arc<W>,
    rate: f64,
    duration: Duration,
    pool: usize,
) -> anyhow::Result<LoadResult> {
    let clients = connect_all(addrs, pool).await?;
    let dispatch = Arc::new(Dispatch {
        queue: Mutex::new(std::collections::VecDeque::new()),
        ready: tokio::sync::Notify::new(),
        finished: std::sync::atomic::AtomicBool::new(false),
    });
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let start = Instant::now() + Duration::from_millis(20);
    let timeline = Arc::new(Timeline::new(start, duration + Duration::from_secs(30)));
    let mut tasks = Vec::with_capacity(pool);
    for (i, mut client) in clients.into_iter().enumerate() {
        let (workload, timeline, dispatch) = (Arc::clone(&workload), Arc::clone(&timeline), Arc::clone(&dispatch));
        let (in_flight, max_in_flight) = (Arc::clone(&in_flight), Arc::clone(&max_in_flight));
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed(1000 + i as u64));
            let mut tally = Tally::default();
            let mut max_delay = Duration::ZERO;
            let mut last_done = start;
            while let Some(due) = dispatch.next().await {
                max_delay = max_delay.max(Instant::now().saturating_duration_since(due));
                let now_in_flight = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                max_in_flight.fetch_max(now_in_flight, Ordering::Relaxed);
                let mut one = Tally::default();
                let done = exchange(&mut client, &*workload, &mut rng, &mut one, Some(due)).await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
                if one.errors.is_empty() {
                    timeline.record(done);
                }
                last_done = last_done.max(done);
                merge_tally(&mut tally, one);
            }
            (tally, max_delay, last_done)
        }));
    }

    // The schedule runs on its own thread, so that a burst of responses on the runtime's
    // worker cannot delay it.
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let scheduler = {
        let dispatch = Arc::clone(&dispatch);
        std::thread::Builder::new().name("bench-scheduler".into()).spawn(move || {
            let mut max_lag = Duration::ZERO;
            for i in 0..total {
                let due = start + Duration::from_nanos((i as f64 * 1e9 / rate) as u64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                max_lag = max_lag.max(Instant::now().saturating_duration_since(due));
                dispatch.push(due);
            }
            dispatch.finish();
            max_lag
        })?
    };
    let max_lag = tokio::task::spawn_blocking(move || scheduler.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the scheduler thread panicked"))?;

    let mut result = LoadResult { scheduled: total, max_schedule_lag: max_lag, ..LoadResult::default() };
    let mut last_done = start;
    for task in tasks {
        let (tally, max_delay, done) = task.await.context("a load task panicked")?;
        result.merge(tally);
        result.max_send_delay = result.max_send_delay.max(max_delay);
        last_done = last_done.max(done);
    }
    result.elapsed = last_done.saturating_duration_since(start).max(duration);
    result.max_in_flight = max_in_flight.load(Ordering::Relaxed);
    result.latencies.sort_unstable();
    result.per_second = Arc::try_unwrap(timeline).map_err(|_| anyhow::anyhow!("timeline still shared"))?.into_counts();
    Ok(result)
}
