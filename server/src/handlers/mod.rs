//! Request handlers: each parses input into domain types, calls db / cache / events,
//! and shapes the response. No SQL and no Valkey commands here.

pub mod events;
pub mod health;
pub mod redirect;
pub mod urls;
pub mod users;

use bytes::Bytes;

use crate::cache::{self, Lookup};
use crate::error::{Error, Result};
use crate::http_util::{cached_json, Response};
use crate::state::AppState;

/// Encodes a value for a response body (and the cache).
pub(crate) fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("encoding JSON: {e}")))
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
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let lookup = st.cache.get_json(kind, id).await;
    if let Lookup::Hit(body) = lookup {
        return Ok(cached_json(body, true));
    }
    let entity = load().await?.ok_or(Error::NotFound(kind))?;
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
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>>>,
{
    let lookup = st.cache.get_list(list, &field).await;
    if let Lookup::Hit(body) = lookup {
        return Ok(cached_json(body, true));
    }
    let body = encode(&load().await?)?;
    if matches!(lookup, Lookup::Miss) {
        st.cache.put_list(list, field, body.clone());
    }
    Ok(cached_json(body, false))
}

/// After `finish()` succeeded every required field is present; this turns the
/// impossible case into a 500 instead of a panic.
pub(crate) fn present<T>(v: Option<T>) -> Result<T> {
    v.ok_or_else(|| Error::Internal("a validated field was missing".into()))
}
