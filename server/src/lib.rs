//! A URL-shortener API on hyper, PostgreSQL and Valkey.
//!
//! # Layout
//! - `config`: every environment variable, its default and its parse.
//! - `server`: the accept loop, connection limits, graceful drain.
//! - `router`: the routing table (one `match`), per-request metrics and access log.
//! - `handlers`: one module per resource; parse, call, respond.
//! - `domain`: entities and every input check.
//! - `db`: the pool, SQL statements, one module per table, migrations, seeding.
//! - `cache`: Valkey read-through cache, fail-open.
//! - `near`: the in-process near cache of redirect lookups, and single-flight.
//! - `events`: the redirect-event queue and its batch writer.
//! - `metrics`: metric names, the Prometheus recorder.
//! - `state`: the shared state and readiness.
//! - `error`, `http_util`: the error type and response helpers.
//!
//! [`App`] is the whole service: `build` binds (so the port is known), `run` serves
//! until the given shutdown future resolves. Tests start it on port 0.

pub mod access_log;
pub mod cache;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod handlers;
pub mod http_util;
pub mod metrics;
pub mod near;
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
        let cache = cache::Cache::start(&cfg)?;
        let (events, writer) = events::EventQueue::start(
            db.clone(),
            cache.clone(),
            usize::try_from(cfg.event_queue_capacity).unwrap_or(usize::MAX),
            usize::try_from(cfg.event_batch_max).unwrap_or(usize::MAX),
            Duration::from_millis(cfg.event_flush_interval_ms),
        );
        let state = Arc::new(AppState {
            cfg,
            db,
            cache,
            events,
            ready: Readiness::default(),
            flights: Default::default(),
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

    /// Serves until `shutdown` resolves, then in order: `/ready` turns 503, the
    /// listener closes, in-flight requests drain (bounded), the event queue is flushed,
    /// the pool closes.
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
        let drain = Duration::from_secs(state.cfg.shutdown_timeout_seconds);
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
                    drain,
                )
                .await;
            })
        });
        let st = Arc::clone(&state);
        let api = server::serve(
            listener,
            Arc::clone(&state),
            Serves::Api,
            async move {
                shutdown.await;
                tracing::info!("shutdown requested: not ready, closing the listener, draining");
                st.ready.begin_shutdown();
            },
            drain,
        );
        api.await;
        checker.abort();
        state.events.close();
        if tokio::time::timeout(drain, writer).await.is_err() {
            tracing::error!("event queue did not drain before the deadline");
        }
        let _ = stop_tx.send(true);
        if let Some(task) = metrics_server {
            let _ = task.await;
        }
        state.db.close();
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Keeps readiness current: PostgreSQL and Valkey, every HEALTH_CHECK_INTERVAL_MS.
async fn check_dependencies(st: State) {
    let interval = Duration::from_millis(st.cfg.health_check_interval_ms);
    loop {
        let db_ok = matches!(
            tokio::time::timeout(Duration::from_secs(2), st.db.ping()).await,
            Ok(Ok(()))
        );
        st.ready.record_db(db_ok);
        if st.cache.is_enabled() {
            st.ready.record_valkey(st.cache.ping().await);
        }
        tokio::time::sleep(interval).await;
    }
}
