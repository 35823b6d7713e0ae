//! Reading requests: the body (with its size limit and read deadline), JSON objects,
//! the query string.

use std::time::Duration;

use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Limited};

use crate::error::{Error, Result};
use crate::response::Request;

/// Reads the whole body, refusing more than `limit` bytes with 413, and a body that
/// takes longer than `deadline` to arrive with 408 (a slow client must not hold a
/// connection permit, and a pooled connection after it, forever).
pub async fn read_body(
    req: Request,
    limit: usize,
    deadline: Duration,
) -> Result<(http::request::Parts, Bytes)> {
    let (parts, body) = req.into_parts();
    if let Some(len) = parts.headers.get(header::CONTENT_LENGTH) {
        let len = len.to_str().ok().and_then(|v| v.parse::<u64>().ok());
        if len.is_some_and(|n| n > limit as u64) {
            return Err(Error::TooLarge(limit));
        }
    }
    match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Err(_) => Err(Error::BodyTimeout(deadline.as_secs())),
        Ok(Ok(collected)) => Ok((parts, collected.to_bytes())),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Error::TooLarge(limit)),
        Ok(Err(e)) => Err(Error::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
    }
}

/// Reads a JSON object body: 400 when it is not JSON, 422 when it is JSON but not an object.
pub async fn read_json_object(
    req: Request,
    limit: usize,
    deadline: Duration,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let (_, bytes) = read_body(req, limit, deadline).await?;
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
