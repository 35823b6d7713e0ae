//! Queries on `events`: single rows inside a mutation's transaction, and the
//! filtered list (with the raw clicks as `redirect` events).

use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::statements::{self as sql, EventSource};
use crate::domain::{Event, EventKind, EventType, Page};
use crate::error::Result;

// Columns are fixed by the statement text (see `statements`); a test prepares them all.
fn event(row: &Row) -> Event {
    Event {
        id: row.get(0),
        url_id: row.get(1),
        user_id: row.get(2),
        event_type: row.get(3),
        timestamp: row.get(4),
        details: row.get(5),
    }
}

/// Writes one event inside the caller's transaction.
pub async fn record(
    tx: &deadpool_postgres::Transaction<'_>,
    url_id: Option<i64>,
    user_id: Option<i64>,
    kind: EventKind,
    details: Value,
) -> Result<Event> {
    let stmt = tx.prepare_cached(sql::EVENT_INSERT).await?;
    let row = tx
        .query_one(&stmt, &[&url_id, &user_id, &kind.as_str(), &details])
        .await?;
    // Counted before the commit: a transaction that then fails over-counts by one,
    // which the metric's use (rates) tolerates.
    crate::metrics::events_written(kind, 1);
    Ok(event(&row))
}

/// Writes one event on its own (POST /events).
pub async fn insert(
    client: &deadpool_postgres::Client,
    url_id: i64,
    user_id: i64,
    event_type: &EventType,
    details: &Value,
) -> Result<Event> {
    let stmt = client.prepare_cached(sql::EVENT_INSERT).await?;
    let row = client
        .query_one(
            &stmt,
            &[&Some(url_id), &Some(user_id), &event_type.as_str(), details],
        )
        .await?;
    // Client-chosen types would make the label unbounded: they count as "api".
    crate::metrics::events_written(EventKind::Api, 1);
    Ok(event(&row))
}

pub async fn list(
    client: &deadpool_postgres::Client,
    url_id: Option<i64>,
    user_id: Option<i64>,
    event_type: Option<&str>,
    page: Page,
) -> Result<Vec<Event>> {
    let (limit, offset) = (page.limit(), page.offset());
    let which = usize::from(url_id.is_some()) | usize::from(user_id.is_some()) << 1;
    let source = match event_type {
        None => EventSource::All,
        Some("redirect") => EventSource::Redirects,
        Some(_) => EventSource::Typed,
    };
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(5);
    if let Some(v) = &url_id {
        params.push(v);
    }
    if let Some(v) = &user_id {
        params.push(v);
    }
    if let (EventSource::Typed, Some(v)) = (source, &event_type) {
        params.push(v);
    }
    params.push(&limit);
    params.push(&offset);
    let stmt = client
        .prepare_cached(sql::event_list(source, which))
        .await?;
    Ok(client
        .query(&stmt, &params)
        .await?
        .iter()
        .map(event)
        .collect())
}
