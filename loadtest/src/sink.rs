//! The webhook sink: records every POSTed notification (Alertmanager's
//! webhook JSON, or the Discord webhook body Alertmanager's `discord_configs`
//! sends) as one JSON line, and answers 204 as Discord does.
//!
//! Each line is `{"received_at_ms": <unix ms>, "path": "/critical", "body": <the
//! JSON posted>}` (`"body_text"` instead of `"body"` when it was not JSON). The
//! path tells receivers apart: point each receiver at its own path
//! (`http://127.0.0.1:PORT/warning`, `.../critical`). Lines are written and
//! flushed one at a time, so a reader sees whole lines.
//!
//! Routes: `POST /<anything>` records; `GET /count` answers `{"count": N}`;
//! `GET /health` answers `ok`; anything else is 405.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::http::{self, Body};

/// The open JSONL file and how many records it got.
pub struct Sink {
    file: Mutex<tokio::fs::File>,
    count: AtomicU64,
}

impl Sink {
    /// Opens (creates or appends to) the JSONL file at `path`.
    ///
    /// # Errors
    /// When the file cannot be opened for appending.
    pub async fn open(path: &Path) -> std::io::Result<Arc<Sink>> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        Ok(Arc::new(Sink {
            file: Mutex::new(file),
            count: AtomicU64::new(0),
        }))
    }

    /// Records received since start.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    async fn record(&self, path: &str, body: &[u8]) -> std::io::Result<()> {
        let line = record_line(now_ms(), path, body);
        // One writer at a time, so lines never interleave.
        let mut file = self.file.lock().await;
        file.write_all(line.as_bytes()).await?;
        file.flush().await?;
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The JSONL line (with its newline) for one notification.
pub fn record_line(received_at_ms: u128, path: &str, body: &[u8]) -> String {
    let mut record = json!({ "received_at_ms": received_at_ms, "path": path });
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => record["body"] = value,
        Err(_) => record["body_text"] = Value::String(String::from_utf8_lossy(body).into_owned()),
    }
    format!("{record}\n")
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// Answers one request.
pub async fn handle(sink: Arc<Sink>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/health") => http::text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/count") => {
            http::text(StatusCode::OK, format!("{{\"count\":{}}}\n", sink.count()))
        }
        (&Method::POST, _) => {
            let body = match http::read_body(req).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            match sink.record(&path, &body).await {
                Ok(()) => http::empty(StatusCode::NO_CONTENT),
                Err(e) => http::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("recording: {e}\n"),
                ),
            }
        }
        _ => http::text(StatusCode::METHOD_NOT_ALLOWED, "POST a notification\n"),
    }
}

/// Serves the sink on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sink: Arc<Sink>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    http::serve(listener, move |req| handle(sink.clone(), req), shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_kept_as_json() {
        let line = record_line(5, "/critical", br#"{"status":"firing","alerts":[]}"#);
        assert!(line.ends_with('\n'));
        let v: Value = serde_json::from_str(line.trim_end()).unwrap_or_default();
        assert_eq!(v["path"], "/critical");
        assert_eq!(v["received_at_ms"], 5);
        assert_eq!(v["body"]["status"], "firing");
    }

    #[test]
    fn other_bodies_are_kept_as_text() {
        let line = record_line(5, "/", b"not json");
        let v: Value = serde_json::from_str(line.trim_end()).unwrap_or_default();
        assert_eq!(v["body_text"], "not json");
        assert!(v.get("body").is_none());
    }
}
