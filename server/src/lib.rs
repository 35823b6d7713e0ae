//! A URL-shortener API on hyper, PostgreSQL and Valkey.
//!
//! # Layout
//! - `config`: every environment variable, its default and its parse.
//! - `server`: the accept loop, connection limits, graceful drain.
//! - `router`: the routing table (one `match`), per-request metrics and access log.
//! - `handlers`: one module per resource; parse, call, respond.
//! - `domain`: entities and domain values (`Email`, `TargetUrl`, ...), every input check.
//! - `db`: the pool, SQL statements, one module per table, migrations, seeding.
//! - `cache`: Valkey read-through cache, fail-open; key scheme, Sentinel, invalidation.
//! - `near`: the in-process near cache of redirect lookups, and single-flight.
//! - `links`: the link lookup (near cache → single-flight → Valkey → PostgreSQL).
//! - `clicks`: the click queue, its writer (rollups, raw clicks), partitions, backfill.
//! - `metrics`: metric names and label enums, the Prometheus recorder.
//! - `state`: the shared state and readiness.
//! - `error`: the error type and its one mapping to a response.
//! - `response`, `request`: building responses; reading bodies and query strings.
//!
//! [`App`] is the whole service: `build` binds (so the port is known), `run` serves
//! until the given shutdown future resolves. Tests start it on port 0.

pub mod access_log;
pub mod cache;
pub mod clicks;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod handlers;
pub mod links;
pub mod metrics;
pub mod near;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::server::Serves;
use crate::state::{AppState, Readiness, State};

/// The service, bound and ready to run.
pub struct App {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    state: State,
    writer: JoinHandle<()>,
}

impl App {
    /// Binds the listener(s), builds the pool and starts the cache connection and the
    /// event writer. PostgreSQL need not be up yet: `/ready` says when it is.
    ///
    /// # Errors
    /// When a port cannot be bound or a setting does not parse.
    pub async fn build(cfg: Config) -> anyhow::Result<App> {
        metrics::init();
        let listener = TcpListener::bind(SocketAddr::new(cfg.host, cfg.port))
            .await
            .with_context(|| format!("binding {}:{} (PORT)", cfg.host, cfg.port))?;
        let metrics_listener = match cfg.metrics_port {
            Some(port) => Some(
                TcpListener::bind(SocketAddr::new(cfg.host, port))
                    .await
                    .with_context(|| format!("binding {}:{port} (METRICS_PORT)", cfg.host))?,
            ),
            None => None,
        };
        let db = db::Db::new(&cfg)?;
        // The near cache needs Valkey: its entries are dropped by invalidations
        // that travel through it.
        let near = (cfg.cache_enabled && cfg.near_cache_capacity > 0).then(|| {
            Arc::new(near::NearCache::new(
                cfg.near_cache_capacity,
                Duration::from_millis(cfg.near_cache_ttl_ms),
            ))
        });
        let cache = cache::Cache::start(&cfg, near.clone())?;
        let links = links::Links::new(
            near,
            cache.clone(),
            db.clone(),
            Duration::from_secs(cfg.stale_if_error_seconds),
            Duration::from_millis(cfg.database_pool_timeout_ms + cfg.database_statement_timeout_ms),
        );
        let (clicks, writer) = clicks::ClickQueue::start(
            db.clone(),
            clicks::Options {
                capacity: usize::try_from(cfg.click_queue_capacity).unwrap_or(usize::MAX),
                flush_interval: Duration::from_millis(cfg.clicks_flush_interval_ms),
                breakdown_interval: Duration::from_millis(cfg.clicks_breakdown_flush_interval_ms),
                retention_days: cfg.clicks_retention_days,
                agent_cache: 10_000,
            },
        );
        tokio::spawn(clicks::maintenance::keep(
            db.clone(),
            cfg.clicks_retention_days,
        ));
        tokio::spawn(clicks::backfill::run(
            db.clone(),
            cfg.clicks_retention_days,
            10_000,
        ));
        let state = Arc::new(AppState {
            cfg,
            db,
            cache,
            clicks,
            ready: Readiness::default(),
            links,
            access: Default::default(),
        });
        Ok(App {
            listener,
            metrics_listener,
            state,
            writer,
        })
    }

    /// Writes access-log lines straight to this writer (the binary's stdout writer)
    /// instead of through `tracing`.
    pub fn with_access_log(self, log: access_log::AccessLog) -> Self {
        let _ = self.state.access.set(log);
        self
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(self.state.cfg.host, self.state.cfg.port))
    }

    /// The address `/metrics` listens on, when it has its own port.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> State {
        Arc::clone(&self.state)
    }

    /// Serves until `shutdown` resolves, then, within one budget of
    /// SHUTDOWN_TIMEOUT_SECONDS from that moment: `/ready` turns 503, the listener
    /// closes, in-flight requests drain, the event queue is written, the metrics
    /// listener and the pool close. Connections get the budget less a reserve for
    /// the event flush; the flush gets whatever is left.
    ///
    /// # Errors
    /// Only for failures after serving stopped (none today); serving errors are logged.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let App {
            listener,
            metrics_listener,
            state,
            writer,
        } = self;
        let checker = tokio::spawn(check_dependencies(Arc::clone(&state)));
        let budget = Duration::from_secs(state.cfg.shutdown_timeout_seconds);
        let drain = budget.saturating_sub(flush_reserve(budget));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let metrics_server = metrics_listener.map(|l| {
            let mut rx = stop_rx.clone();
            let st = Arc::clone(&state);
            tokio::spawn(async move {
                server::serve(
                    l,
                    st,
                    Serves::MetricsOnly,
                    async move {
                        let _ = rx.wait_for(|v| *v).await;
                    },
                    Duration::ZERO,
                )
                .await;
            })
        });
        let st = Arc::clone(&state);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let api = server::serve(
            listener,
            Arc::clone(&state),
            Serves::Api,
            async move {
                shutdown.await;
                let _ = started_tx.send(tokio::time::Instant::now());
                tracing::info!(
                    budget_s = budget.as_secs(),
                    "shutdown requested: not ready, closing the listener, draining"
                );
                st.ready.begin_shutdown();
            },
            drain,
        );
        api.await;
        let deadline = started_rx
            .await
            .unwrap_or_else(|_| tokio::time::Instant::now())
            + budget;
        checker.abort();
        state.clicks.close();
        if tokio::time::timeout_at(deadline, writer).await.is_err() {
            tracing::error!("click queue not written within the shutdown budget; exiting");
        }
        let _ = stop_tx.send(true);
        if let Some(task) = metrics_server {
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!("metrics listener still busy at the deadline");
            }
        }
        state.db.close();
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// What the event flush keeps of the shutdown budget: a quarter, at most 5 s.
fn flush_reserve(budget: Duration) -> Duration {
    (budget / 4).min(Duration::from_secs(5))
}

/// Keeps readiness current: PostgreSQL and Valkey, every HEALTH_CHECK_INTERVAL_MS.
/// Also tells the other replicas (through Valkey) whether this one reaches
/// PostgreSQL, and learns how many of them do: readiness compares this replica with
/// its peers rather than judging a dependency they all share.
async fn check_dependencies(st: State) {
    let interval = Duration::from_millis(st.cfg.health_check_interval_ms);
    let me: u64 = rand::random();
    // A peer's report counts while it is this fresh.
    let fresh = (interval * 3).max(Duration::from_secs(3));
    loop {
        let db_ok = matches!(
            tokio::time::timeout(Duration::from_secs(2), st.db.ping()).await,
            Ok(Ok(()))
        );
        st.ready.record_db(db_ok);
        if st.cache.is_enabled() {
            st.ready.record_valkey(st.cache.ping().await);
            st.ready
                .record_peers_with_db(st.cache.exchange_db_health(me, db_ok, fresh).await);
        }
        tokio::time::sleep(interval).await;
    }
}
