//! Building responses: the body and response types, the JSON envelope, and constant
//! header values as statics, built once. Depends on nothing else in the crate, so
//! `error` can build its responses here without an import cycle.

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, StatusCode};
use http_body_util::Full;

pub type Body = Full<Bytes>;
pub type Response = http::Response<Body>;
pub type Request = http::Request<hyper::body::Incoming>;

pub static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
pub static CACHE_HIT: HeaderValue = HeaderValue::from_static("HIT");
pub static CACHE_MISS: HeaderValue = HeaderValue::from_static("MISS");
pub static NO_SHARED_CACHE: HeaderValue = HeaderValue::from_static("private, max-age=0");
// Header names as values: a `&str` name is parsed again on every insert.
pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What a response says when encoding its own body failed (a bug, never input).
static ENCODING_FAILED: &[u8] = br#"{"error":"internal error"}"#;

/// A JSON response from already-encoded bytes.
pub fn json_bytes(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut resp = http::Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
    resp
}

/// A JSON response from a serialisable value.
pub fn json_response<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => json_bytes(status, bytes),
        // Our own types always serialise; this arm exists so a bug is a 500, not a panic.
        Err(e) => {
            tracing::error!(error = %e, "encoding a response body failed");
            json_bytes(
                StatusCode::INTERNAL_SERVER_ERROR,
                Bytes::from_static(ENCODING_FAILED),
            )
        }
    }
}

/// A cached-or-not JSON response: `X-Cache: HIT|MISS`.
pub fn cached_json(body: Bytes, hit: bool) -> Response {
    let mut resp = json_bytes(StatusCode::OK, body);
    resp.headers_mut().insert(X_CACHE.clone(), x_cache(hit));
    resp
}

pub fn x_cache(hit: bool) -> HeaderValue {
    if hit {
        CACHE_HIT.clone()
    } else {
        CACHE_MISS.clone()
    }
}

pub fn no_content() -> Response {
    let mut resp = http::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}
