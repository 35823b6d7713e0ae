//! Redirect events off the hot path: a bounded in-memory queue and one writer task
//! that writes them in batches (one `unnest` INSERT per batch).
//!
//! The guarantee: a redirect never waits on the database for its event. An event is
//! written within about EVENT_FLUSH_INTERVAL_MS while PostgreSQL is up; on graceful
//! shutdown the queue is drained and written before exit. If the queue is full, or
//! PostgreSQL refuses a batch three times in a row, those events are dropped and
//! counted in `events_dropped_total`. A crash (SIGKILL, OOM) loses what is queued:
//! at most EVENT_QUEUE_CAPACITY events, normally one flush interval's worth.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::cache::{Cache, List};
use crate::db::events::Batch;
use crate::db::{self, Db};
use crate::metrics as m;

/// Referrer and user agent are kept to this many bytes.
pub const HEADER_KEEP: usize = 512;

/// One redirect, as recorded.
#[derive(Debug)]
pub struct Redirect {
    pub url_id: i64,
    pub user_id: i64,
    pub at: chrono::NaiveDateTime,
    pub short_code: String,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
}

impl Redirect {
    pub fn new(
        url_id: i64,
        user_id: i64,
        code: &str,
        referrer: Option<&str>,
        user_agent: Option<&str>,
    ) -> Self {
        Redirect {
            url_id,
            user_id,
            at: Utc::now().naive_utc(),
            short_code: code.to_owned(),
            referrer: referrer.map(truncate),
            user_agent: user_agent.map(truncate),
        }
    }

    /// The event's `details` object.
    pub fn details(&self) -> Value {
        let mut d = Map::with_capacity(3);
        d.insert("short_code".into(), Value::String(self.short_code.clone()));
        if let Some(r) = &self.referrer {
            d.insert("referrer".into(), Value::String(r.clone()));
        }
        if let Some(ua) = &self.user_agent {
            d.insert("user_agent".into(), Value::String(ua.clone()));
        }
        Value::Object(d)
    }
}

/// Cuts to at most HEADER_KEEP bytes on a character boundary.
fn truncate(s: &str) -> String {
    if s.len() <= HEADER_KEEP {
        return s.to_owned();
    }
    let mut end = HEADER_KEEP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The producer side, held by the app state.
#[derive(Clone)]
pub struct EventQueue {
    tx: mpsc::Sender<Redirect>,
    shutdown: Arc<Notify>,
}

impl EventQueue {
    /// Starts the writer task.
    pub fn start(
        db: Db,
        cache: Cache,
        capacity: usize,
        batch_max: usize,
        interval: Duration,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        let shutdown = Arc::new(Notify::new());
        let writer = tokio::spawn(write_loop(
            db,
            cache,
            rx,
            Arc::clone(&shutdown),
            batch_max,
            interval,
        ));
        (EventQueue { tx, shutdown }, writer)
    }

    /// Queues an event without waiting; when the queue is full it is dropped and counted.
    pub fn push(&self, event: Redirect) {
        if self.tx.try_send(event).is_err() {
            m::events_dropped(1);
        }
    }

    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Asks the writer to drain what is queued and stop; await its JoinHandle after.
    pub fn close(&self) {
        self.shutdown.notify_one();
    }
}

async fn write_loop(
    db: Db,
    cache: Cache,
    mut rx: mpsc::Receiver<Redirect>,
    shutdown: Arc<Notify>,
    batch_max: usize,
    interval: Duration,
) {
    let mut pending: Vec<Redirect> = Vec::with_capacity(batch_max);
    let mut batch = Batch::with_capacity(batch_max);
    let mut closing = false;
    loop {
        // Wait for the first event of a batch (or the shutdown signal) ...
        if pending.is_empty() {
            tokio::select! {
                n = rx.recv_many(&mut pending, batch_max) => if n == 0 { break },
                () = shutdown.notified(), if !closing => { closing = true; rx.close(); continue }
            }
        }
        // ... then let the batch fill for up to one interval, unless we are draining.
        if !closing {
            let deadline = tokio::time::sleep(interval);
            tokio::pin!(deadline);
            while pending.len() < batch_max {
                let room = batch_max - pending.len();
                tokio::select! {
                    n = rx.recv_many(&mut pending, room) => if n == 0 { break },
                    () = &mut deadline => break,
                    () = shutdown.notified() => { closing = true; rx.close(); break }
                }
            }
        }
        batch.clear();
        for e in pending.drain(..) {
            let details = e.details();
            batch.push(e.url_id, e.user_id, "redirect", e.at, details);
        }
        if write(&db, &batch).await {
            // Cached /events pages may now be missing these rows.
            cache.invalidate(&[], &[], &[List::Events]).await;
        }
        m::event_queue_depth(rx.len());
    }
    tracing::info!("event queue drained");
}

/// Writes one batch, retrying a few times; drops (and counts) it after that.
/// Returns whether it was written.
async fn write(db: &Db, batch: &Batch) -> bool {
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
        let res = match db.get().await {
            Ok(client) => db::events::insert_batch(&client, batch).await,
            Err(e) => Err(e),
        };
        match res {
            Ok(n) => {
                m::events_written("redirect", n);
                return true;
            }
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(error = %e, attempt, events = batch.len(), "writing redirect events failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "writing redirect events failed; dropping the batch");
                m::events_dropped(batch.len() as u64);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_headers_are_cut_on_a_character_boundary() {
        let s = "é".repeat(400); // 800 bytes
        let t = truncate(&s);
        assert!(t.len() <= HEADER_KEEP);
        assert!(t.chars().all(|c| c == 'é'));
    }

    #[test]
    fn details_carry_only_what_was_sent() {
        let e = Redirect::new(1, 2, "abc123", None, Some("curl/8"));
        assert_eq!(
            e.details(),
            serde_json::json!({"short_code": "abc123", "user_agent": "curl/8"})
        );
    }
}
