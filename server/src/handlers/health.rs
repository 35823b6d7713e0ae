//! `/health` (liveness, touches nothing), `/ready` (readiness) and `/metrics`.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use crate::response::{json_bytes, json_response, Body, Response};
use crate::state::AppState;

static HEALTH_BODY: &[u8] = br#"{"status":"ok"}"#;

pub fn live() -> Response {
    json_bytes(StatusCode::OK, Bytes::from_static(HEALTH_BODY))
}

pub fn ready(st: &AppState) -> Response {
    let r = st.ready.report(
        Duration::from_secs(st.cfg.ready_db_grace_seconds),
        st.cache.is_enabled(),
    );
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "status": if r.ready { "ok" } else { "error" },
        "postgres": r.postgres,
        "valkey": r.valkey,
        "peers_with_postgres": r.peers_with_postgres,
    });
    if let Some(reason) = r.reason {
        body["reason"] = json!(reason);
    }
    json_response(status, &body)
}

pub fn metrics(st: &AppState) -> Response {
    crate::metrics::click_queue_depth(st.clicks.depth());
    let text = crate::metrics::render(st.db.pool_status());
    let mut resp = http::Response::new(Body::new(Bytes::from(text)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
