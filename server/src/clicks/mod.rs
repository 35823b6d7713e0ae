//! Clicks (redirects) off the hot path. A redirect pushes a `Click` into a bounded
//! queue and never waits; one writer task drains the queue on a timer (a push wakes
//! nobody), classifies each click (`agent`), folds it into in-memory rollups
//! (`rollup`) and writes them every CLICKS_FLUSH_INTERVAL_MS (the hourly rollups
//! and raw rows) and CLICKS_BREAKDOWN_FLUSH_INTERVAL_MS (the daily breakdowns), each
//! flush one idempotent transaction. `maintenance` keeps the raw table's day
//! partitions; `backfill` moves the redirect rows of older versions out of `events`.
//!
//! The guarantee: a redirect never waits on the database for its click. While
//! PostgreSQL is up, a click is in the counts within one flush interval; on graceful
//! shutdown the queue is drained and written before exit. If the queue is full, those
//! clicks are dropped and counted in `clicks_dropped_total`. A flush of counts that fails three times is
//! kept and tried again at the next interval under the same batch id (a failure may
//! hide a COMMIT that went through: the id makes the retry a no-op then), up to a
//! million clicks held; only past that, or at shutdown, is it dropped. A crash
//! (SIGKILL, OOM) loses what is queued and not yet flushed.

pub mod agent;
pub mod backfill;
pub mod maintenance;
pub mod rollup;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::HeaderValue;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::db::Db;
use crate::metrics as m;
use agent::{cut, referrer_host, Classifier};
use rollup::{Daily, Hourly, LinkClick};

/// Referrer and user agent are stored (raw clicks) to this many bytes.
pub const HEADER_KEEP: usize = 512;

/// Most clicks kept in failed flushes for another try (about a minute at 20,000
/// clicks/s; a flush of counts is small, its raw rows are up to 1 KiB a click).
const UNSETTLED_MAX_CLICKS: u64 = 1_000_000;

/// How often the writer drains the queue into its rollups.
const DRAIN_EVERY: Duration = Duration::from_millis(50);

/// One redirect (or a hit on a code that redirects nowhere), as the request saw it.
/// The headers are the request's own values (reference-counted, not copied).
#[derive(Debug)]
pub struct Click {
    pub at: DateTime<Utc>,
    pub kind: ClickKind,
    pub referrer: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
}

#[derive(Debug)]
pub enum ClickKind {
    Link {
        url_id: i64,
        user_id: i64,
        code: Arc<str>,
    },
    /// A plausible code that no link has.
    Unknown,
    /// A code whose link is deactivated.
    Inactive,
}

/// What the writer is told at start.
#[derive(Debug, Clone)]
pub struct Options {
    pub capacity: usize,
    pub flush_interval: Duration,
    pub breakdown_interval: Duration,
    /// 0: no raw clicks, rollups only.
    pub retention_days: u32,
    pub agent_cache: usize,
}

/// The producer side, held by the app state.
#[derive(Clone)]
pub struct ClickQueue {
    tx: mpsc::Sender<Click>,
    shutdown: Arc<Notify>,
}

impl ClickQueue {
    /// Starts the writer task.
    pub fn start(db: Db, opts: Options) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(opts.capacity.max(1));
        let shutdown = Arc::new(Notify::new());
        let writer = tokio::spawn(
            Writer {
                db,
                conn: None,
                classifier: Classifier::new(opts.agent_cache),
                hourly: Hourly::default(),
                daily: Daily::default(),
                unsettled: std::collections::VecDeque::new(),
                opts,
            }
            .run(rx, Arc::clone(&shutdown)),
        );
        (ClickQueue { tx, shutdown }, writer)
    }

    /// Queues a click without waiting; when the queue is full it is dropped and counted.
    pub fn push(&self, click: Click) {
        if self.tx.try_send(click).is_err() {
            m::clicks_dropped(1);
        }
    }

    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Asks the writer to drain what is queued, write it and stop; await its handle.
    pub fn close(&self) {
        self.shutdown.notify_one();
    }
}

struct Writer {
    db: Db,
    /// One pooled connection kept between flushes (a different one per flush made
    /// every pool connection grow its buffers; PERF.md#what-was-tried).
    conn: Option<deadpool_postgres::Object>,
    classifier: Classifier,
    hourly: Hourly,
    daily: Daily,
    /// Count flushes that failed, oldest first, kept for another try.
    unsettled: std::collections::VecDeque<(i64, Hourly)>,
    opts: Options,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Click>, shutdown: Arc<Notify>) {
        let mut tick = tokio::time::interval(DRAIN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_hourly = Instant::now() + self.opts.flush_interval;
        let mut next_daily = Instant::now() + self.opts.breakdown_interval;
        let mut closing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.notified() => {
                    closing = true;
                    rx.close();
                }
            }
            while let Ok(click) = rx.try_recv() {
                self.absorb(click);
            }
            m::click_queue_depth(rx.len());
            let now = Instant::now();
            if closing || now >= next_hourly {
                self.flush_hourly().await;
                next_hourly = Instant::now() + self.opts.flush_interval;
            }
            if closing || now >= next_daily {
                self.flush_daily().await;
                next_daily = Instant::now() + self.opts.breakdown_interval;
            }
            if closing && rx.is_empty() {
                // A last try for what failed before; what still fails is dropped.
                while let Some((batch_id, part)) = self.unsettled.pop_front() {
                    if self.apply(batch_id, Some(&part), None).await {
                        m::clicks_recorded(&part);
                    } else {
                        m::clicks_dropped(part.clicks());
                    }
                }
                break;
            }
        }
        tracing::info!("click queue drained");
    }

    fn absorb(&mut self, click: Click) {
        match click.kind {
            ClickKind::Unknown => self.hourly.add_orphan(click.at, false),
            ClickKind::Inactive => self.hourly.add_orphan(click.at, true),
            ClickKind::Link {
                url_id,
                user_id,
                code,
            } => {
                let referrer = click.referrer.as_ref().map(header_text);
                let user_agent = click.user_agent.as_ref().map(header_text);
                let agent = self.classifier.classify(user_agent.as_deref());
                let c = LinkClick {
                    id: None,
                    at: click.at,
                    url_id,
                    user_id,
                    code: &code,
                    agent: &agent,
                    referrer: referrer.as_deref(),
                    user_agent: user_agent.as_deref(),
                };
                self.hourly.add_link(&c, self.opts.retention_days > 0);
                self.daily
                    .add(&c, Arc::from(referrer_host(referrer.as_deref())));
            }
        }
    }

    async fn flush_hourly(&mut self) {
        // Flushes that failed earlier go first, under their own batch ids.
        while let Some((batch_id, part)) = self.unsettled.pop_front() {
            if self.apply(batch_id, Some(&part), None).await {
                m::clicks_recorded(&part);
            } else {
                self.unsettled.push_front((batch_id, part));
                break;
            }
        }
        if self.hourly.is_empty() {
            return;
        }
        let part = std::mem::take(&mut self.hourly);
        let batch_id: i64 = rand::random();
        let start = std::time::Instant::now();
        if self.apply(batch_id, Some(&part), None).await {
            m::clicks_recorded(&part);
        } else {
            // The outcome may be unknown (a COMMIT whose answer was lost): keep the
            // flush and retry it later under the same batch id, which makes that safe;
            // drop (and count) only what no longer fits.
            self.unsettled.push_back((batch_id, part));
            let mut held: u64 = self.unsettled.iter().map(|(_, p)| p.clicks()).sum();
            while held > UNSETTLED_MAX_CLICKS {
                let Some((_, oldest)) = self.unsettled.pop_front() else {
                    break;
                };
                held -= oldest.clicks();
                tracing::error!(
                    clicks = oldest.clicks(),
                    "click flush dropped after retries"
                );
                m::clicks_dropped(oldest.clicks());
            }
        }
        m::click_flush(start.elapsed());
    }

    async fn flush_daily(&mut self) {
        if self.daily.is_empty() {
            return;
        }
        let part = std::mem::take(&mut self.daily);
        let start = std::time::Instant::now();
        if !self.apply(rand::random(), None, Some(&part)).await {
            tracing::error!(
                clicks = part.clicks(),
                "click breakdowns dropped after retries"
            );
        }
        m::click_flush(start.elapsed());
    }

    /// One flush, retried (with the same batch id) up to three times.
    async fn apply(
        &mut self,
        batch_id: i64,
        hourly: Option<&Hourly>,
        daily: Option<&Daily>,
    ) -> bool {
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            let client = match self.conn.take() {
                Some(c) => Ok(c),
                None => self.db.get().await,
            };
            let res = match client {
                Ok(mut client) => {
                    let res = rollup::apply(&mut client, batch_id, hourly, daily).await;
                    if res.is_ok() {
                        self.conn = Some(client);
                    }
                    res
                }
                Err(e) => Err(e),
            };
            match res {
                Ok(_) => return true,
                Err(e) if attempt < ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "writing clicks failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "writing clicks failed; dropping the flush");
                }
            }
        }
        false
    }
}

/// A header's text: lossy UTF-8 (obs-text bytes are not refused), without NUL
/// (which PostgreSQL's text refuses), at most HEADER_KEEP bytes.
fn header_text(v: &HeaderValue) -> String {
    let s = String::from_utf8_lossy(v.as_bytes());
    let s = cut(&s, HEADER_KEEP);
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_is_lossy_short_and_without_nul() {
        let v = HeaderValue::from_bytes(b"Mozilla \xff\xfe caf\xe9")
            .expect("obs-text is a valid value");
        assert!(header_text(&v).starts_with("Mozilla "));
        let long = HeaderValue::from_str(&"é".repeat(400)).expect("value");
        let t = header_text(&long);
        assert!(t.len() <= HEADER_KEEP && t.chars().all(|c| c == 'é'));
    }
}
