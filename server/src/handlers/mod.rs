//! Request handlers: each parses input into domain types, calls db / cache / events,
//! and shapes the response. No SQL and no Valkey commands here.

pub mod analytics;
pub mod events;
pub mod health;
pub mod redirect;
pub mod urls;
pub mod users;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use crate::cache::{self, Lookup};
use crate::error::{Error, Result};
use crate::request::read_json_object;
use crate::response::{cached_json, Request, Response};
use crate::state::AppState;

/// Encodes a value for a response body (and the cache).
pub(crate) fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::internal(format!("encoding JSON: {e}")))
}

/// The request's JSON object body, within BODY_LIMIT_BYTES and BODY_READ_TIMEOUT_SECONDS.
pub(crate) async fn read_json(
    req: Request,
    st: &AppState,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    read_json_object(req, st.cfg.body_limit_bytes, body_deadline(st)).await
}

pub(crate) fn body_deadline(st: &AppState) -> Duration {
    Duration::from_secs(st.cfg.body_read_timeout_seconds)
}

/// An id from a path segment: not a positive integer that fits an i64 → 404.
pub(crate) fn path_id(seg: &str, what: &'static str) -> Result<i64> {
    match seg.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::NotFound(what)),
    }
}

/// Runs a write and its cache invalidation to the end in a task of its own. hyper
/// drops a request's future when its client disconnects; a write that has sent its
/// COMMIT must still invalidate what it changed, or Valkey and the other replicas'
/// near caches would serve the old value for up to the TTL.
pub(crate) async fn to_completion<T, F>(write: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    match tokio::spawn(write).await {
        Ok(result) => result,
        Err(e) => Err(Error::internal(format!("write task failed: {e}"))),
    }
}

/// Read-through for one entity by id: a hit is served as cached; a miss loads from
/// PostgreSQL and fills the cache (not after a cache error: Valkey is likely away).
pub(crate) async fn cached_entity<T, F, Fut>(
    st: &AppState,
    kind: &'static str,
    id: i64,
    load: F,
) -> Result<Response>
where
    T: serde::Serialize,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let lookup = st.cache.get_json(kind, id).await;
    if let Lookup::Hit(body) = lookup {
        return Ok(cached_json(body, true));
    }
    let entity = crate::db::retry_once(load)
        .await?
        .ok_or(Error::NotFound(kind))?;
    let body = encode(&entity)?;
    if matches!(lookup, Lookup::Miss) {
        st.cache.put_json(kind, id, body.clone());
    }
    Ok(cached_json(body, false))
}

/// Read-through for one list page, keyed by its canonical query.
pub(crate) async fn cached_list<T, F, Fut>(
    st: &AppState,
    list: cache::List,
    field: String,
    load: F,
) -> Result<Response>
where
    T: serde::Serialize,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Vec<T>>>,
{
    let lookup = st.cache.get_list(list, &field).await;
    if let Lookup::Hit(body) = lookup {
        return Ok(cached_json(body, true));
    }
    let body = encode(&crate::db::retry_once(load).await?)?;
    if matches!(lookup, Lookup::Miss) {
        st.cache.put_list(list, field, body.clone());
    }
    Ok(cached_json(body, false))
}

/// After `finish()` succeeded every required field is present; this turns the
/// impossible case into a 500 instead of a panic.
pub(crate) fn present<T>(v: Option<T>) -> Result<T> {
    v.ok_or_else(|| Error::internal("a validated field was missing"))
}
