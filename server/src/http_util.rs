//! Response helpers and request-body reading: the JSON envelope, body limits, the
//! query string. Constant header values are statics, built once.

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::error::{Error, Result};

pub type Body = Full<Bytes>;
pub type Response = http::Response<Body>;
pub type Request = http::Request<Incoming>;

pub static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
pub static CACHE_HIT: HeaderValue = HeaderValue::from_static("HIT");
pub static CACHE_MISS: HeaderValue = HeaderValue::from_static("MISS");
pub static NO_SHARED_CACHE: HeaderValue = HeaderValue::from_static("private, max-age=0");
// Header names as values: a `&str` name is parsed again on every insert.
pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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
        Err(e) => Error::Internal(format!("encoding response: {e}")).into_response(),
    }
}

/// A cached-or-not JSON response: `X-Cache: HIT|MISS`.
pub fn cached_json(body: Bytes, hit: bool) -> Response {
    let mut resp = json_bytes(StatusCode::OK, body);
    resp.headers_mut().insert(
        X_CACHE.clone(),
        if hit {
            CACHE_HIT.clone()
        } else {
            CACHE_MISS.clone()
        },
    );
    resp
}

pub fn no_content() -> Response {
    let mut resp = http::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub async fn read_body(req: Request, limit: usize) -> Result<(http::request::Parts, Bytes)> {
    let (parts, body) = req.into_parts();
    if let Some(len) = parts.headers.get(header::CONTENT_LENGTH) {
        let len = len.to_str().ok().and_then(|v| v.parse::<u64>().ok());
        if len.is_some_and(|n| n > limit as u64) {
            return Err(Error::TooLarge(limit));
        }
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::TooLarge(limit)),
        Err(e) => Err(Error::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
    }
}

/// Reads a JSON object body: 400 when it is not JSON, 422 when it is JSON but not an object.
pub async fn read_json_object(
    req: Request,
    limit: usize,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let (_, bytes) = read_body(req, limit).await?;
    parse_json_object(&bytes)
}

pub fn parse_json_object(bytes: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::BadJson(
            "the request body is empty; send a JSON object".into(),
        ));
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::field("body", "must be a JSON object")),
        Err(e) => Err(Error::BadJson(e.to_string())),
    }
}

/// The query string's pairs, percent-decoded.
pub fn query_pairs(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_object_parsing_distinguishes_malformed_from_wrong_shape() {
        assert!(matches!(
            parse_json_object(b"{\"a\":"),
            Err(Error::BadJson(_))
        ));
        assert!(matches!(
            parse_json_object(b"not json"),
            Err(Error::BadJson(_))
        ));
        assert!(matches!(parse_json_object(b""), Err(Error::BadJson(_))));
        assert!(matches!(
            parse_json_object(b"[1,2]"),
            Err(Error::Invalid(_))
        ));
        assert!(parse_json_object(b"{\"a\":1}").is_ok());
    }
}
