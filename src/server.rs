//! The server process: opens the store, loads the catalog, binds its listeners, serves until a
//! shutdown signal, then drains in-flight requests and the writer before returning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::admin::socket as admin_socket;
use crate::catalog::{Catalog, CatalogError};
use crate::config::Settings;
use crate::domain::tenant::ApiKey;
use crate::domain::time::Clock;
use crate::http::auth_failures::FailedAuthentications;
use crate::http::{router, AppState};
use crate::limiter::RateLimiter;
use crate::store::{report, DatabaseLocation, Policy, Store, StoreError};

/// Why a server stopped by itself: its store had a storage fault (a failed fsync, a poisoned
/// engine) and takes no more writes. `consentry serve` exits with [`STORAGE_FAULT_EXIT_CODE`],
/// so that a supervisor restarts it and the restart replays the journal.
#[derive(Debug, thiserror::Error)]
#[error("storage fault: the store takes no more writes; exiting so that a restart replays its journal")]
pub struct StorageFault;

/// The exit code of `consentry serve` after a [`StorageFault`]: `EX_IOERR` of sysexits.h.
pub const STORAGE_FAULT_EXIT_CODE: i32 = 74;

/// How long requests in flight are given to finish after a storage fault, before the process
/// exits: the bound is a second from the fault to the exit.
const FAULT_DRAIN: Duration = Duration::from_millis(700);

/// A server that is bound and ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    admin: Option<tokio::net::UnixListener>,
    bootstrap: Option<(ApiKey, String)>,
    /// How often the orphaned-state sweep runs.
    sweep_interval: Duration,
    /// How often the catalog is read again, for a store other processes change.
    catalog_refresh: Option<Duration>,
    /// Connection limits and shutdown grace.
    serving: crate::serving::ServingOptions,
    /// The Prometheus listener and recorder, with `--metrics-listen`.
    metrics: Option<(TcpListener, crate::telemetry::Exporter)>,
    /// Whether webhooks may go to private addresses.
    allow_private_webhooks: bool,
}

impl Application {
    /// Opens the store, creates the `default` workspace and its key on an empty store, and binds
    /// the HTTP listener and (embedded store) the admin socket.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        crate::domain::identifiers::warm_up();
        // Bound before anything is created: a first start that cannot listen must not leave a
        // bootstrap key behind that it never printed.
        let listener = TcpListener::bind(&settings.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
        let metrics = match &settings.serving.metrics_listen {
            Some(address) => Some((
                TcpListener::bind(address)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {address} (--metrics-listen): {e}"))?,
                crate::telemetry::Exporter::install(),
            )),
            None => None,
        };
        if let DatabaseLocation::Embedded(dir) = &settings.database {
            crate::serving::host::private_data_dir(dir)
                .map_err(|e| anyhow::anyhow!("cannot make the data directory {} private: {e}", dir.display()))?;
        }
        // Redis is checked before the store is opened, so that credentials it refuses stop the
        // start-up before anything (a store, a bootstrap key) is created.
        let redis = match &settings.rate_limit_redis {
            Some(url) => {
                Some(RateLimiter::in_redis(url).await.map_err(|e| anyhow::anyhow!("--rate-limit-redis: {e}"))?)
            }
            None => None,
        };
        let policy = Policy { clock: settings.clock.clone(), retention: settings.orphan_retention };
        let store = Store::open(&settings.database, &settings.store, &policy).await?;
        let catalog = Arc::new(
            Catalog::load(store.clone(), settings.clock.clone())
                .await?
                .with_max_groups(settings.max_groups_per_workspace),
        );
        let bootstrap = catalog.bootstrap().await?;
        let admin = match &settings.database {
            DatabaseLocation::Embedded(dir) => Some(
                admin_socket::bind(dir)
                    .map_err(|e| anyhow::anyhow!("cannot create the admin socket in {}: {e}", dir.display()))?,
            ),
            DatabaseLocation::Postgres(_) => None,
        };
        // One process serves an embedded store, so its counters can live in its memory; nodes
        // that share a PostgreSQL database share their counters in it, or in Redis if given.
        let limiter = Arc::new(match redis {
            Some(redis) => redis,
            None => match &store {
                Store::Postgres(shared) => RateLimiter::in_postgres(shared.clone()),
                Store::Embedded(_) => RateLimiter::in_memory(),
            },
        });
        let public_url = match &settings.public_url {
            Some(url) => url.clone(),
            None => {
                let bound = listener.local_addr()?;
                crate::domain::links::PublicUrl::parse(&format!("http://{bound}")).map_err(anyhow::Error::msg)?
            }
        };
        let pages = Arc::new(crate::pages::PagesState {
            public_url,
            limiter: crate::pages::limit::PublicLimiter::new(settings.public_rate_limit, Duration::from_secs(60)),
        });
        Ok(Application {
            listener,
            state: AppState {
                catalog,
                store,
                limiter,
                orphan_retention: settings.orphan_retention,
                clock: settings.clock.clone(),
                failed_auth: Arc::new(FailedAuthentications::new(
                    settings.serving.failed_auth_limit,
                    settings.serving.failed_auth_window,
                    settings.clock.clone(),
                )),
                pages,
            },
            admin,
            bootstrap,
            sweep_interval: settings.orphan_sweep_interval,
            catalog_refresh: settings.catalog_refresh_interval,
            serving: settings.serving.clone(),
            metrics,
            allow_private_webhooks: settings.allow_private_webhooks,
        })
    }

    /// The bound address (the real port when port 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The bound address of the metrics listener, with `--metrics-listen`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(listener, _)| listener.local_addr().expect("a bound listener has an address"))
    }

    /// The key created on an empty store, with its secret, to be shown once.
    pub fn bootstrap_key(&self) -> Option<&(ApiKey, String)> {
        self.bootstrap.as_ref()
    }

    /// The catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.state.catalog)
    }

    /// The clock the server reads.
    pub fn clock(&self) -> Clock {
        self.state.clock.clone()
    }

    /// The store.
    pub fn store(&self) -> Store {
        self.state.store.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting, finishes in-flight requests,
    /// drains the writer and returns. After a storage fault it stops the same way at once, gives
    /// requests in flight [`FAULT_DRAIN`], and returns [`StorageFault`].
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            admin,
            sweep_interval,
            catalog_refresh,
            serving,
            metrics,
            allow_private_webhooks,
            ..
        } = self;
        let relay =
            crate::stream::relay::Relay::new(Arc::clone(&state.catalog), state.clock.clone(), allow_private_webhooks);
        let relay = tokio::spawn(relay.run());
        let admin_task =
            admin.map(|l| tokio::spawn(admin_socket::serve(l, Arc::clone(&state.catalog), state.store.clone())));
        let store = state.store.clone();
        let sweep =
            tokio::spawn(sweep_orphans(store.clone(), Arc::clone(&state.catalog), state.clock.clone(), sweep_interval));
        // A shared database is changed by other processes too (admin commands, other nodes):
        // the catalog they change is read again (every second by default, see `serve`). The
        // embedded store has one process, whose admin socket changes the catalog in place.
        let refresh = catalog_refresh.map(|every| tokio::spawn(refresh_catalog(Arc::clone(&state.catalog), every)));
        // The metrics listener outlives the API's drain, so that a scrape can watch it.
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_task = metrics.map(|(metrics_listener, exporter)| {
            if let Ok(address) = metrics_listener.local_addr() {
                tracing::info!(%address, "serving Prometheus metrics at /metrics");
            }
            let collected = store.clone();
            let collect: Arc<dyn Fn() + Send + Sync> = Arc::new(move || collected.record_gauges());
            let options = crate::serving::ServingOptions {
                max_connections: METRICS_MAX_CONNECTIONS,
                shutdown_grace: Duration::from_secs(1),
                listener: "metrics",
                ..serving.clone()
            };
            let router = crate::telemetry::router(exporter, collect);
            tokio::spawn(crate::serving::serve(metrics_listener, router, options, async move {
                let _ = metrics_stopped.await;
            }))
        });
        let faulted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (fault_store, fault_flag) = (store.clone(), Arc::clone(&faulted));
        let stop = async move {
            tokio::select! {
                () = shutdown => {}
                () = fault_store.storage_fault() => fault_flag.store(true, std::sync::atomic::Ordering::Relaxed),
            }
        };
        let drained = async {
            store.storage_fault().await;
            tokio::time::sleep(FAULT_DRAIN).await;
        };
        tokio::select! {
            () = crate::serving::serve(listener, router(state), serving, stop) => {}
            () = drained => {}
        }
        let faulted = faulted.load(std::sync::atomic::Ordering::Relaxed);
        drop(metrics_stop);
        if let Some(task) = metrics_task {
            if faulted {
                task.abort();
            }
            let _ = task.await;
        }
        if let Some(task) = admin_task {
            task.abort();
            // Dropping the task removes the socket file; wait for it while the store is still
            // locked, so that it cannot remove the socket of a server started after this one.
            let _ = task.await;
        }
        sweep.abort();
        relay.abort();
        let _ = relay.await;
        if let Some(refresh) = refresh {
            refresh.abort();
        }
        store.close().await;
        if faulted {
            return Err(StorageFault.into());
        }
        Ok(())
    }
}

/// Most scrapers served at once on the metrics listener: one Prometheus, or a few.
const METRICS_MAX_CONNECTIONS: usize = 16;

/// Reads the catalog from the store every `interval`, for as long as the server runs.
async fn refresh_catalog(catalog: Arc<Catalog>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    // While the database is down this fails every tick: say so when it starts and when it
    // ends, not every second.
    let mut failing = false;
    loop {
        ticks.tick().await;
        match catalog.reload().await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("the catalog is read again");
            }
            Ok(()) => {}
            Err(CatalogError::Store(StoreError::ShuttingDown)) => return,
            Err(err) if failing => tracing::debug!(error = %report(&err), "reading the catalog again failed"),
            Err(err) => {
                failing = true;
                tracing::error!(error = %report(&err), "reading the catalog again failed; it will be tried every tick");
            }
        }
    }
}

/// Deletes expired orphaned states (by the store's clock and retention) every `interval`, for
/// as long as the server runs.
///
/// Every node may run it at once: the store re-checks each state's age at the moment it
/// deletes it, so two sweeps delete nothing twice and never delete a state refreshed meanwhile.
async fn sweep_orphans(store: Store, catalog: Arc<Catalog>, clock: Clock, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.expire_orphans().await {
            Ok(deleted) => {
                metrics::counter!(crate::telemetry::ORPHAN_SWEEPS, "result" => "ok").increment(1);
                metrics::counter!(crate::telemetry::ORPHAN_STATES_EXPIRED).increment(deleted as u64);
                if deleted > 0 {
                    tracing::info!(deleted, "expired orphaned identifier states deleted");
                }
            }
            Err(StoreError::ShuttingDown) => return,
            Err(err) => {
                metrics::counter!(crate::telemetry::ORPHAN_SWEEPS, "result" => "error").increment(1);
                tracing::error!(error = %report(&err), "the orphaned-state sweep failed; it will run again");
            }
        }
        // Ledger retention rides the same loop: both are slow deletes of what has aged out.
        if let Err(StoreError::ShuttingDown) = expire_ledgers(&store, &catalog, clock.now()).await {
            return;
        }
    }
}

/// Ledger retention, as of `now`: in every workspace that keeps its change records a number
/// of days, deletes the older ones but the latest of each chain (see
/// [`Store::expire_ledger`]). A workspace that fails is logged and tried again on the next
/// run; returns how many records went, or the store's shutdown.
pub async fn expire_ledgers(
    store: &Store,
    catalog: &Catalog,
    now: crate::domain::time::Timestamp,
) -> Result<usize, StoreError> {
    let mut total = 0;
    for workspace in catalog.workspaces() {
        let Some(cutoff) = workspace.ledger_retention.cutoff(now) else { continue };
        match store.expire_ledger(workspace.id, cutoff).await {
            Ok(0) => {}
            Ok(deleted) => {
                total += deleted;
                tracing::info!(deleted, workspace = %workspace.id, "expired change records deleted (ledger retention)");
            }
            Err(StoreError::ShuttingDown) => return Err(StoreError::ShuttingDown),
            Err(err) => {
                tracing::error!(error = %report(&err), workspace = %workspace.id, "ledger retention failed; it will run again")
            }
        }
    }
    Ok(total)
}

/// Installs the ctrl-c and SIGTERM handlers now and returns a future that completes on either.
///
/// The handlers must exist before the server announces itself: a signal that arrives earlier
/// would otherwise meet the default action and kill the process without a graceful shutdown.
/// Must be called inside the Tokio runtime.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!("shutting down: finishing in-flight requests and draining the writer");
    })
}
