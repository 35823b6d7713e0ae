//! The one error type handlers return, and the one place it becomes a response.
//!
//! Split by source: the client's fault is a 4xx that says what was wrong; ours or a
//! dependency's is a 5xx with an opaque message, and the cause goes to the log.

use std::collections::BTreeMap;

use http::{header, HeaderValue, StatusCode};

use crate::http_util::{json_response, Response};

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
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    #[error("database unavailable")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A single-field validation error.
    pub fn field(name: &str, reason: impl Into<String>) -> Self {
        let mut errors = FieldErrors::new();
        errors.insert(name.to_owned(), reason.into());
        Error::Invalid(errors)
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::BadRequest(_) | Error::BadJson(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response the client sees. Causes of 5xx stay in the log.
    pub fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            Error::Invalid(details) => {
                serde_json::json!({ "error": "invalid request", "details": details })
            }
            Error::Unavailable(cause) => {
                tracing::warn!(error = %cause, "dependency unavailable");
                serde_json::json!({ "error": "service unavailable: database unreachable, retry later" })
            }
            Error::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                serde_json::json!({ "error": "internal error" })
            }
            other => serde_json::json!({ "error": other.to_string() }),
        };
        let mut resp = json_response(status, &body);
        match self {
            Error::MethodNotAllowed(allow) => {
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Error::Unavailable(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
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
    fn from(e: tokio_postgres::Error) -> Self {
        // A closed connection or an I/O failure is the database being away (503);
        // anything PostgreSQL itself answered is a bug of ours (500).
        if e.is_closed() || e.code().is_none() {
            Error::Unavailable(e.to_string())
        } else {
            Error::Internal(format!("{e:?}"))
        }
    }
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
        assert_eq!(
            Error::Unavailable("x".into()).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn method_not_allowed_carries_the_allow_header() {
        let resp = Error::MethodNotAllowed("GET, POST").into_response();
        assert_eq!(resp.headers()[header::ALLOW], "GET, POST");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    }
}
