//! The only shared state: configuration, the pool, the cache, the link lookup, the
//! click queue and readiness. Handlers get `&State`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cache::Cache;
use crate::clicks::ClickQueue;
use crate::config::Config;
use crate::db::Db;
use crate::links::Links;

pub struct AppState {
    pub cfg: Config,
    pub db: Db,
    pub cache: Cache,
    pub clicks: ClickQueue,
    pub ready: Readiness,
    /// The access log's direct writer, when the binary set one (see `access_log`).
    pub access: std::sync::OnceLock<crate::access_log::AccessLog>,
    /// Short code → redirect answer: near cache, single-flight, Valkey, PostgreSQL.
    pub links: Links,
}

pub type State = Arc<AppState>;

/// What `/ready` reports, kept current by a background check.
#[derive(Default)]
pub struct Readiness {
    started: AtomicBool,
    shutting_down: AtomicBool,
    valkey_ok: AtomicBool,
    /// When PostgreSQL was first seen down in the current outage.
    db_down_since: Mutex<Option<Instant>>,
    /// Other replicas that reached PostgreSQL at their last check (through Valkey).
    peers_with_db: std::sync::atomic::AtomicUsize,
}

/// A snapshot for the `/ready` body.
pub struct ReadyReport {
    pub ready: bool,
    pub reason: Option<&'static str>,
    pub postgres: &'static str,
    pub valkey: &'static str,
    pub peers_with_postgres: usize,
}

impl Readiness {
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn record_db(&self, ok: bool) {
        let mut since = self.db_down_since.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            *since = None;
        } else if since.is_none() {
            *since = Some(Instant::now());
        }
        // Started once the first check is done, whatever it found.
        self.started.store(true, Ordering::SeqCst);
    }

    pub fn record_valkey(&self, ok: bool) {
        self.valkey_ok.store(ok, Ordering::Relaxed);
    }

    pub fn record_peers_with_db(&self, n: usize) {
        self.peers_with_db.store(n, Ordering::Relaxed);
    }

    /// Whether this replica can serve as well as its peers (docs/adr/0002-readiness.md).
    /// Valkey never makes the pod unready (the cache is optional). PostgreSQL being
    /// away makes it unready only when it has been away for `grace` *and* another
    /// replica still reaches it: then the fault is this replica's, and traffic is
    /// better served elsewhere. When no replica reaches PostgreSQL, every replica stays
    /// ready, serving what it can (stale-if-error redirects, cached reads, 503 with
    /// Retry-After for the rest, all visible in its own metrics) instead of leaving
    /// the Service all at once.
    pub fn report(&self, grace: Duration, cache_enabled: bool) -> ReadyReport {
        let down_for = self
            .db_down_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed());
        let postgres = if down_for.is_some() {
            "down"
        } else if self.started.load(Ordering::SeqCst) {
            "ok"
        } else {
            "unknown"
        };
        let valkey = match (cache_enabled, self.valkey_ok.load(Ordering::Relaxed)) {
            (false, _) => "disabled",
            (true, true) => "ok",
            (true, false) => "down",
        };
        let reason = if self.shutting_down.load(Ordering::SeqCst) {
            Some("shutting down")
        } else if !self.started.load(Ordering::SeqCst) {
            Some("starting: the first dependency check has not finished")
        } else if down_for.is_some_and(|d| d >= grace)
            && self.peers_with_db.load(Ordering::Relaxed) > 0
        {
            Some("PostgreSQL unreachable from this replica for longer than READY_DB_GRACE_SECONDS while other replicas reach it")
        } else {
            None
        };
        ReadyReport {
            ready: reason.is_none(),
            reason,
            postgres,
            valkey,
            peers_with_postgres: self.peers_with_db.load(Ordering::Relaxed),
        }
    }
}
