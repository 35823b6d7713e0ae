//! The one error type handlers return, and the one place it becomes a response.
//!
//! Split by source: the client's fault is a 4xx that says what was wrong; ours or a
//! dependency's is a 5xx with an opaque message. The router logs a 5xx's cause with
//! the request id and route (see `router::handle`), so it matches the access line.

use std::collections::BTreeMap;

use http::{header, HeaderValue, StatusCode};
use tokio_postgres::error::SqlState;

use crate::response::{json_response, Response};

/// Field name -> what is wrong with it.
pub type FieldErrors = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request")]
    Invalid(FieldErrors),
    #[error("{0}")]
    BadRequest(String),
    #[error("malformed JSON: {0}")]
    BadJson(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// PostgreSQL unreachable, the pool exhausted: the cause is logged, not sent.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Serialization failure, deadlock, a cancelled or timed-out statement: the same
    /// request may well succeed if sent again.
    #[error("retryable database error: {0}")]
    Retryable(String),
    /// A bug: the cause chain goes to the log, never to the client.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a client is told to wait before retrying a 503.
const RETRY_AFTER_SECONDS: HeaderValue = HeaderValue::from_static("1");

impl Error {
    /// A single-field validation error.
    pub fn field(name: &str, reason: impl Into<String>) -> Self {
        let mut errors = FieldErrors::new();
        errors.insert(name.to_owned(), reason.into());
        Error::Invalid(errors)
    }

    /// A bug, described.
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Error::Internal(anyhow::anyhow!("{msg}"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::BadRequest(_) | Error::BadJson(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Unavailable(_) | Error::Retryable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A copy for each waiter of a shared failure (single-flight): the kind and the
    /// message survive; an internal cause is kept as its text.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Invalid(d) => Error::Invalid(d.clone()),
            Error::BadRequest(s) => Error::BadRequest(s.clone()),
            Error::BadJson(s) => Error::BadJson(s.clone()),
            Error::NotFound(w) => Error::NotFound(w),
            Error::Conflict(w) => Error::Conflict(w),
            Error::TooLarge(n) => Error::TooLarge(*n),
            Error::BodyTimeout(n) => Error::BodyTimeout(*n),
            Error::MethodNotAllowed(a) => Error::MethodNotAllowed(a),
            Error::Unavailable(s) => Error::Unavailable(s.clone()),
            Error::Retryable(s) => Error::Retryable(s.clone()),
            Error::Internal(e) => Error::Internal(anyhow::anyhow!("{e:#}")),
        }
    }

    /// Whether running the same operation again may succeed (see `db::retry_once`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Retryable(_))
    }

    /// The response the client sees. Causes of 5xx stay in the log.
    pub fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            Error::Invalid(details) => {
                serde_json::json!({ "error": "invalid request", "details": details })
            }
            Error::Unavailable(_) => {
                serde_json::json!({ "error": "service unavailable: database unreachable, retry later" })
            }
            Error::Retryable(_) => {
                serde_json::json!({ "error": "service busy: the database could not complete the request in time, retry later" })
            }
            Error::Internal(_) => serde_json::json!({ "error": "internal error" }),
            other => serde_json::json!({ "error": other.to_string() }),
        };
        let mut resp = json_response(status, &body);
        match self {
            Error::MethodNotAllowed(allow) => {
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Error::Unavailable(_) | Error::Retryable(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, RETRY_AFTER_SECONDS);
            }
            Error::BodyTimeout(_) => {
                // RFC 9110 §15.5.9: the server closes the connection after a 408.
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Error::Unavailable(e.to_string())
    }
}

impl From<tokio_postgres::Error> for Error {
    /// By SQLSTATE: what the client can retry is a 503 with `Retry-After`, what its
    /// input caused is a 4xx, a database going away is a 503, and only the rest (a
    /// statement of ours PostgreSQL rejected) is a 500.
    fn from(e: tokio_postgres::Error) -> Self {
        // A pooled connection that PostgreSQL closed (a restart, a failover): the
        // pool drops it, and the same read on a fresh connection may well work, so
        // `db::retry_once` retries it. Still a 503 with Retry-After to the client.
        if e.is_closed() {
            return Error::Retryable(e.to_string());
        }
        let Some(code) = e.code() else {
            // No SQLSTATE: an I/O failure, a timeout.
            return Error::Unavailable(e.to_string());
        };
        let class = &code.code()[..2];
        match code {
            c if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::QUERY_CANCELED
                || *c == SqlState::LOCK_NOT_AVAILABLE =>
            {
                Error::Retryable(db_message(&e))
            }
            c if *c == SqlState::TOO_MANY_CONNECTIONS
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::READ_ONLY_SQL_TRANSACTION =>
            {
                Error::Unavailable(db_message(&e))
            }
            // Class 08: connection exception.
            _ if class == "08" => Error::Unavailable(db_message(&e)),
            // Class 22: data exception (a value the column or function refused).
            _ if class == "22" => Error::field(
                "request",
                format!("a value was refused by the database: {}", db_message(&e)),
            ),
            // Class 23: integrity constraint; the callers map the ones they expect.
            _ if class == "23" => Error::Conflict("the request conflicts with existing data"),
            _ => Error::Internal(anyhow::Error::new(e)),
        }
    }
}

/// PostgreSQL's own message, without the SQLSTATE noise of `Display`.
fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_maps_to_its_status() {
        assert_eq!(
            Error::field("x", "y").status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            Error::BadJson("eof".into()).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(Error::NotFound("user").status(), StatusCode::NOT_FOUND);
        assert_eq!(
            Error::Conflict("email already exists").status(),
            StatusCode::CONFLICT
        );
        assert_eq!(Error::TooLarge(1).status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(Error::BodyTimeout(1).status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(
            Error::Unavailable("x".into()).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            Error::Retryable("x".into()).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            Error::internal("bug").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn method_not_allowed_carries_the_allow_header() {
        let resp = Error::MethodNotAllowed("GET, POST").into_response();
        assert_eq!(resp.headers()[header::ALLOW], "GET, POST");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn every_503_says_when_to_retry() {
        for e in [Error::Unavailable("x".into()), Error::Retryable("y".into())] {
            assert_eq!(e.into_response().headers()[header::RETRY_AFTER], "1");
        }
    }
}
