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
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::cache::{Cache, List};
use crate::db::events::{Batch, RawJson};
use crate::db::{self, Db};
use crate::domain::EventKind;
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

    /// The event's `details` object, serialised: `short_code`, then `referrer` and
    /// `user_agent` when the request had them.
    pub fn details(&self) -> RawJson {
        let extra = self.referrer.as_ref().map_or(0, |r| r.len() + 16)
            + self.user_agent.as_ref().map_or(0, |u| u.len() + 16);
        let mut out = Vec::with_capacity(24 + self.short_code.len() + extra);
        out.extend_from_slice(br#"{"short_code":"#);
        json_str(&mut out, &self.short_code);
        if let Some(r) = &self.referrer {
            out.extend_from_slice(br#","referrer":"#);
            json_str(&mut out, r);
        }
        if let Some(ua) = &self.user_agent {
            out.extend_from_slice(br#","user_agent":"#);
            json_str(&mut out, ua);
        }
        out.push(b'}');
        // Only UTF-8 went in: the keys above and serde_json's escaped strings.
        RawJson(String::from_utf8(out).unwrap_or_else(|_| String::from("{}")))
    }
}

/// Appends `s` as a JSON string literal (quoted, escaped by serde_json).
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail, and a &str always serialises.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Cuts to at most HEADER_KEEP bytes on a character boundary, without NUL (which
/// `jsonb` refuses: one such header would fail its whole batch).
fn truncate(s: &str) -> String {
    let mut end = s.len().min(HEADER_KEEP);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let kept = &s[..end];
    if kept.contains('\0') {
        kept.replace('\0', "")
    } else {
        kept.to_owned()
    }
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
    let mut conn = None;
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
            batch.push(
                e.url_id,
                e.user_id,
                EventKind::Redirect.as_str(),
                e.at,
                details,
            );
        }
        if write(&db, &mut conn, &batch).await {
            // Cached /events pages may now be missing these rows.
            cache.invalidate(&[], &[], &[List::Events]).await;
        }
        m::event_queue_depth(rx.len());
    }
    tracing::info!("event queue drained");
}

/// Writes one batch, retrying a few times; drops (and counts) it after that.
/// Returns whether it was written.
///
/// The writer keeps one pooled connection between batches (`conn`) and lets it go
/// after a failure. Taking a different one per batch made every connection of the
/// pool grow its buffers to a batch's size (about 14 MiB of RSS across 60) and
/// spread the inserts over every PostgreSQL backend (PERF.md#what-was-tried).
async fn write(db: &Db, conn: &mut Option<deadpool_postgres::Object>, batch: &Batch) -> bool {
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
        let client = match conn.take() {
            Some(c) => Ok(c),
            None => db.get().await,
        };
        let res = match client {
            Ok(client) => {
                let res = db::events::insert_batch(&client, batch).await;
                if res.is_ok() {
                    *conn = Some(client);
                }
                res
            }
            Err(e) => Err(e),
        };
        match res {
            Ok(n) => {
                m::events_written(EventKind::Redirect, n);
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
    fn nul_never_reaches_the_details() {
        let e = Redirect::new(1, 2, "abc123", Some("a\0b"), Some("\0"));
        assert!(!e.details().0.contains("\\u0000"), "{:?}", e.details());
        assert_eq!(e.referrer.as_deref(), Some("ab"));
    }

    #[test]
    fn long_headers_are_cut_on_a_character_boundary() {
        let s = "é".repeat(400); // 800 bytes
        let t = truncate(&s);
        assert!(t.len() <= HEADER_KEEP);
        assert!(t.chars().all(|c| c == 'é'));
    }

    fn parsed(e: &Redirect) -> serde_json::Value {
        serde_json::from_str(&e.details().0).expect("details are JSON")
    }

    #[test]
    fn details_carry_only_what_was_sent() {
        let e = Redirect::new(1, 2, "abc123", None, Some("curl/8"));
        assert_eq!(
            parsed(&e),
            serde_json::json!({"short_code": "abc123", "user_agent": "curl/8"})
        );
    }

    #[test]
    fn details_escape_what_clients_send() {
        let nasty = "a\"b\\c\n\u{1}é\u{2028}}{";
        let e = Redirect::new(1, 2, "abc123", Some(nasty), Some(nasty));
        assert_eq!(
            parsed(&e),
            serde_json::json!({"short_code": "abc123", "referrer": nasty, "user_agent": nasty})
        );
    }
}
