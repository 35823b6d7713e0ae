//! The domain: entities as the API serves them, and every input check. Handlers parse
//! into these types at the edge; nothing below them re-checks, and the database layer
//! takes only parsed values (a `db::urls::create` cannot receive an unchecked string).
//!
//! - `values`: `Username`, `Email`, `TargetUrl`, `Title`, `ShortCode`, `EventType`.
//! - `code`: short-code generation and the cheap plausibility check of the hot path.
//! - `input`: taking typed fields out of a JSON object, collecting every problem.
//! - `query`: list query parameters and pages.
//! - `analytics`: the analytics query (scope, range, zone, buckets).

pub mod analytics;
pub mod code;
pub mod input;
pub mod query;
pub mod values;

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::Value;

pub use code::{generate_code, is_plausible_code, GENERATED_CODE_LEN};
pub use input::Input;
pub use query::{ListQuery, Page};
pub use values::{Email, EventType, ShortCode, TargetUrl, Title, Username};

/// Timestamps travel as UTC `YYYY-MM-DDTHH:MM:SS`, as the old API wrote them.
pub mod timestamp {
    use chrono::NaiveDateTime;
    use serde::Serializer;

    pub const FORMAT: &str = "%Y-%m-%dT%H:%M:%S";
    /// What PostgreSQL's COPY takes.
    pub const FORMAT_SQL: &str = "%Y-%m-%d %H:%M:%S";

    pub fn serialize<S: Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&t.format(FORMAT))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    #[serde(with = "timestamp")]
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct Url {
    pub id: i64,
    pub user_id: i64,
    pub short_code: String,
    pub original_url: String,
    pub title: String,
    pub is_active: bool,
    #[serde(with = "timestamp")]
    pub created_at: NaiveDateTime,
    #[serde(with = "timestamp")]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: i64,
    pub url_id: Option<i64>,
    pub user_id: Option<i64>,
    pub event_type: String,
    #[serde(with = "timestamp")]
    pub timestamp: NaiveDateTime,
    pub details: Value,
}

/// What a redirect needs to know about a short code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub url_id: i64,
    pub user_id: i64,
    pub is_active: bool,
    pub target: String,
}

/// The event types the service itself writes. (`POST /events` takes any
/// `EventType` from the client; those count as `Api` in the metrics.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
    UserCreated,
    UserUpdated,
    UserDeleted,
    BulkImported,
    Redirect,
    /// Written by a client through `POST /events` (metrics label only).
    Api,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Updated => "updated",
            EventKind::Deleted => "deleted",
            EventKind::UserCreated => "user_created",
            EventKind::UserUpdated => "user_updated",
            EventKind::UserDeleted => "user_deleted",
            EventKind::BulkImported => "bulk_imported",
            EventKind::Redirect => "redirect",
            EventKind::Api => "api",
        }
    }
}
