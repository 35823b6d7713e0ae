//! Metric names (the monitoring rules and dashboards are written against them, so they
//! are constants here and nowhere else), the Prometheus recorder, and `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use http::{Method, StatusCode};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_DURATION: &str = "http_server_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "http_server_requests_in_flight";
pub const CACHE_OPS: &str = "cache_operations_total";
pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";
pub const DB_POOL_WAIT: &str = "db_pool_wait_seconds";
pub const DB_RETRIES: &str = "db_retries_total";
pub const STALE_SERVED: &str = "stale_served_total";
pub const DB_READS: &str = "db_reads_total";

/// Where a lag-tolerant read went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadTarget {
    Replica,
    /// A replica is configured but did not give a connection in time.
    PrimaryFallback,
    /// No replica configured.
    Primary,
}

pub fn db_read(target: ReadTarget) {
    let label = match target {
        ReadTarget::Replica => "replica",
        ReadTarget::PrimaryFallback => "primary_fallback",
        ReadTarget::Primary => "primary",
    };
    counter!(DB_READS, "target" => label).increment(1);
}
pub const REDIRECTS: &str = "redirects_total";
pub const EVENTS_WRITTEN: &str = "events_written_total";
pub const HTTP_CANCELLED: &str = "http_server_requests_cancelled_total";
pub const CLICKS_RECORDED: &str = "clicks_recorded_total";
pub const CLICKS_DROPPED: &str = "clicks_dropped_total";
pub const CLICK_QUEUE_DEPTH: &str = "click_queue_depth";
pub const CLICK_FLUSH_DURATION: &str = "click_flush_duration_seconds";
pub const CLICK_PARTITIONS: &str = "click_partitions";
pub const CLICK_RETENTION_DAYS: &str = "click_retention_days";
pub const BUILD_INFO: &str = "build_info";

/// Latency buckets. 2 s must be an edge: the HighLatency alert tests p95 > 2 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
];

struct Exporter {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

static EXPORTER: OnceLock<Option<Exporter>> = OnceLock::new();

/// Installs the global recorder once per process (tests start several apps in one
/// process; they share it). Returns false if another recorder was already installed.
pub fn init() -> bool {
    EXPORTER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(DB_POOL_WAIT.into()), LATENCY_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(CLICK_FLUSH_DURATION.into()),
                        LATENCY_BUCKETS,
                    )
                });
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                Err(e) => {
                    tracing::error!(error = %e, "metrics buckets rejected");
                    return None;
                }
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
                return None;
            }
            let process = metrics_process::Collector::default();
            process.describe();
            describe();
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            // Exported from the start, at zero: a counter that appears only on its
            // first increment makes rate() and alerts blind until then.
            counter!(CLICKS_DROPPED).absolute(0);
            counter!(CLICKS_RECORDED, "bot" => "true").absolute(0);
            counter!(CLICKS_RECORDED, "bot" => "false").absolute(0);
            counter!(HTTP_CANCELLED).absolute(0);
            counter!(DB_RETRIES).absolute(0);
            counter!(STALE_SERVED, "layer" => "local").absolute(0);
            counter!(STALE_SERVED, "layer" => "valkey").absolute(0);
            gauge!(CLICK_QUEUE_DEPTH).set(0.0);
            gauge!(HTTP_IN_FLIGHT).set(0.0);
            hot();
            spawn_upkeep(handle.clone());
            Some(Exporter { handle, process })
        })
        .is_some()
}

/// Histogram samples wait in per-metric buffers until an upkeep folds them into the
/// buckets. Without this thread that happened only on a scrape, so a replica nobody
/// scraped grew by 8 bytes per request (~3 MiB per 10 s of cached-redirect load,
/// PERF.md#what-was-tried); the exporter's own `install()` runs the same loop.
fn spawn_upkeep(handle: PrometheusHandle) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(5);
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(EVERY);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread; histograms drain on scrape only");
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Duration of HTTP requests, by method, route template and status."
    );
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being served.");
    describe_counter!(
        HTTP_CANCELLED,
        "Requests whose client disconnected before the response was ready."
    );
    describe_counter!(CACHE_OPS, "Cache lookups by result (hit, miss, error).");
    describe_gauge!(DB_POOL_CONNECTIONS, "PostgreSQL pool connections by state.");
    describe_histogram!(
        DB_POOL_WAIT,
        Unit::Seconds,
        "Time spent waiting for a pooled PostgreSQL connection."
    );
    describe_counter!(REDIRECTS, "Redirect lookups by result.");
    describe_counter!(
        DB_READS,
        "Lag-tolerant reads (lists, events, analytics) by where they went: replica, primary_fallback, primary."
    );
    describe_counter!(
        STALE_SERVED,
        "Redirect answers served past their TTL because PostgreSQL could not be reached, by layer."
    );
    describe_counter!(
        DB_RETRIES,
        "Idempotent operations retried once after a serialization failure, deadlock or cancelled statement."
    );
    describe_counter!(EVENTS_WRITTEN, "Events written to PostgreSQL, by type.");
    describe_counter!(
        CLICKS_RECORDED,
        "Clicks written to the rollups, by whether the client was a bot."
    );
    describe_counter!(
        CLICKS_DROPPED,
        "Clicks dropped because the queue was full or the database refused their flush."
    );
    describe_gauge!(
        CLICK_QUEUE_DEPTH,
        "Clicks waiting in memory to be aggregated."
    );
    describe_histogram!(
        CLICK_FLUSH_DURATION,
        Unit::Seconds,
        "Duration of one click flush (one transaction)."
    );
    describe_gauge!(CLICK_PARTITIONS, "Day partitions of the raw clicks table.");
    describe_gauge!(
        CLICK_RETENTION_DAYS,
        "CLICKS_RETENTION_DAYS: days of raw clicks kept (0: raw clicks off)."
    );
    describe_gauge!(BUILD_INFO, "Build information; always 1.");
}

/// The Prometheus text exposition, with pool gauges and process metrics refreshed.
pub fn render(pool: (usize, usize)) -> String {
    let Some(Some(exp)) = EXPORTER.get() else {
        return String::new();
    };
    let (size, in_use) = pool;
    gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(in_use as f64);
    gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(size.saturating_sub(in_use) as f64);
    exp.process.collect();
    exp.handle.run_upkeep();
    exp.handle.render()
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        // Arbitrary methods would make the label unbounded.
        _ => "_OTHER",
    }
}

fn status_label(s: StatusCode) -> metrics::SharedString {
    match s.as_u16() {
        200 => "200".into(),
        201 => "201".into(),
        204 => "204".into(),
        302 => "302".into(),
        400 => "400".into(),
        404 => "404".into(),
        405 => "405".into(),
        409 => "409".into(),
        413 => "413".into(),
        408 => "408".into(),
        422 => "422".into(),
        499 => "499".into(),
        500 => "500".into(),
        503 => "503".into(),
        other => other.to_string().into(),
    }
}

// PERF: handles are looked up once, not per request (a lookup hashes the name and
// labels); PERF.md#what-was-tried.
thread_local! {
    static DURATIONS: std::cell::RefCell<std::collections::HashMap<(&'static str, &'static str, u16), metrics::Histogram>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// A redirect lookup's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectResult {
    Found,
    NotFound,
    Inactive,
}

/// A cache lookup's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    Error,
}

/// Counters and gauges on every request's path, registered once, indexed by the
/// label enums above (so a new variant is a compile error here, not a silent
/// fallback to another label).
struct Hot {
    in_flight: metrics::Gauge,
    redirects: [metrics::Counter; 3],
    local: [metrics::Counter; 2],
    valkey: [metrics::Counter; 3],
    cancelled: metrics::Counter,
}

static HOT: OnceLock<Hot> = OnceLock::new();

/// Registered after the recorder is installed (`init`), so the handles are live.
fn hot() -> &'static Hot {
    HOT.get_or_init(|| Hot {
        in_flight: gauge!(HTTP_IN_FLIGHT),
        redirects: [
            RedirectResult::Found,
            RedirectResult::NotFound,
            RedirectResult::Inactive,
        ]
        .map(|r| counter!(REDIRECTS, "result" => redirect_label(r))),
        local: [CacheResult::Hit, CacheResult::Miss]
            .map(|r| counter!(CACHE_OPS, "layer" => "local", "result" => cache_label(r))),
        valkey: [CacheResult::Hit, CacheResult::Miss, CacheResult::Error]
            .map(|r| counter!(CACHE_OPS, "layer" => "valkey", "result" => cache_label(r))),
        cancelled: counter!(HTTP_CANCELLED),
    })
}

fn redirect_label(r: RedirectResult) -> &'static str {
    match r {
        RedirectResult::Found => "found",
        RedirectResult::NotFound => "not_found",
        RedirectResult::Inactive => "inactive",
    }
}

fn cache_label(r: CacheResult) -> &'static str {
    match r {
        CacheResult::Hit => "hit",
        CacheResult::Miss => "miss",
        CacheResult::Error => "error",
    }
}

pub fn request(method: &Method, route: &'static str, status: StatusCode, elapsed: Duration) {
    let method = method_label(method);
    let key = (method, route, status.as_u16());
    DURATIONS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let h = cache.entry(key).or_insert_with(|| {
            histogram!(
                HTTP_DURATION,
                "http_request_method" => method,
                "http_route" => route,
                "http_response_status_code" => status_label(status)
            )
        });
        h.record(elapsed.as_secs_f64());
    });
}

pub fn in_flight(delta: f64) {
    hot().in_flight.increment(delta);
}

/// A request whose client went away before the response was ready.
pub fn request_cancelled() {
    hot().cancelled.increment(1);
}

/// A Valkey lookup.
pub fn cache_valkey(result: CacheResult) {
    hot().valkey[result as usize].increment(1);
}

/// A near-cache (in-process) lookup.
pub fn cache_local(hit: bool) {
    hot().local[usize::from(!hit)].increment(1);
}

/// Where a stale answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleLayer {
    Local,
    Valkey,
}

/// A redirect answered stale (PostgreSQL away).
pub fn stale_served(layer: StaleLayer) {
    let label = match layer {
        StaleLayer::Local => "local",
        StaleLayer::Valkey => "valkey",
    };
    counter!(STALE_SERVED, "layer" => label).increment(1);
}

/// An operation retried once after a retryable PostgreSQL error (`db::retry_once`).
pub fn db_retry() {
    counter!(DB_RETRIES).increment(1);
}

pub fn db_pool_wait(elapsed: Duration) {
    histogram!(DB_POOL_WAIT).record(elapsed.as_secs_f64());
}

pub fn redirect(result: RedirectResult) {
    hot().redirects[result as usize].increment(1);
}

pub fn events_written(kind: crate::domain::EventKind, n: u64) {
    counter!(EVENTS_WRITTEN, "event_type" => kind.as_str()).increment(n);
}

pub fn clicks_recorded(part: &crate::clicks::rollup::Hourly) {
    let bots = part.bots();
    counter!(CLICKS_RECORDED, "bot" => "true").increment(bots);
    counter!(CLICKS_RECORDED, "bot" => "false").increment(part.clicks() - bots);
}

pub fn clicks_dropped(n: u64) {
    counter!(CLICKS_DROPPED).increment(n);
}

pub fn click_queue_depth(n: usize) {
    gauge!(CLICK_QUEUE_DEPTH).set(n as f64);
}

pub fn click_flush(elapsed: Duration) {
    histogram!(CLICK_FLUSH_DURATION).record(elapsed.as_secs_f64());
}

pub fn click_retention_days(days: u32) {
    gauge!(CLICK_RETENTION_DAYS).set(f64::from(days));
}

pub fn click_partitions(n: i64) {
    gauge!(CLICK_PARTITIONS).set(n as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_enums_index_their_handles_in_declaration_order() {
        // `as usize` indexes the arrays in `Hot`: the order there must match.
        assert_eq!(RedirectResult::NotFound as usize, 1);
        assert_eq!(redirect_label(RedirectResult::Inactive), "inactive");
        assert_eq!(CacheResult::Error as usize, 2);
        assert_eq!(cache_label(CacheResult::Miss), "miss");
    }
}
