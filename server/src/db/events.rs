//! Queries on `events`: single rows inside a mutation's transaction, batches from the
//! redirect-event writer, and the filtered list.

use bytes::{BufMut, BytesMut};
use chrono::NaiveDateTime;
use serde_json::Value;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::Row;

use super::statements as sql;
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

/// A JSON document already serialised (by code that escapes every string it writes),
/// sent as `json`/`jsonb` as is: the redirect-event writer builds its `details` this
/// way instead of through a `serde_json::Value` map (PERF.md#what-was-tried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson(pub String);

impl ToSql for RawJson {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.put_u8(1); // jsonb's binary format: a version byte, then the text
        }
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }

    to_sql_checked!();
}

/// A batch of events as column arrays, ready for one `unnest` INSERT.
#[derive(Debug, Default)]
pub struct Batch {
    pub url_ids: Vec<Option<i64>>,
    pub user_ids: Vec<Option<i64>>,
    pub event_types: Vec<&'static str>,
    pub timestamps: Vec<NaiveDateTime>,
    pub details: Vec<RawJson>,
}

impl Batch {
    pub fn with_capacity(n: usize) -> Self {
        Batch {
            url_ids: Vec::with_capacity(n),
            user_ids: Vec::with_capacity(n),
            event_types: Vec::with_capacity(n),
            timestamps: Vec::with_capacity(n),
            details: Vec::with_capacity(n),
        }
    }

    pub fn push(
        &mut self,
        url_id: i64,
        user_id: i64,
        event_type: &'static str,
        at: NaiveDateTime,
        details: RawJson,
    ) {
        self.url_ids.push(Some(url_id));
        self.user_ids.push(Some(user_id));
        self.event_types.push(event_type);
        self.timestamps.push(at);
        self.details.push(details);
    }

    pub fn len(&self) -> usize {
        self.url_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.url_ids.is_empty()
    }

    pub fn clear(&mut self) {
        self.url_ids.clear();
        self.user_ids.clear();
        self.event_types.clear();
        self.timestamps.clear();
        self.details.clear();
    }
}

/// Writes a whole batch in one statement.
pub async fn insert_batch(client: &deadpool_postgres::Client, batch: &Batch) -> Result<u64> {
    let stmt = client.prepare_cached(sql::EVENTS_INSERT_BATCH).await?;
    Ok(client
        .execute(
            &stmt,
            &[
                &batch.url_ids,
                &batch.user_ids,
                &batch.event_types,
                &batch.timestamps,
                &batch.details,
            ],
        )
        .await?)
}

pub async fn list(
    client: &deadpool_postgres::Client,
    url_id: Option<i64>,
    user_id: Option<i64>,
    event_type: Option<&str>,
    page: Page,
) -> Result<Vec<Event>> {
    let (limit, offset) = (page.limit(), page.offset());
    let which = usize::from(url_id.is_some())
        | usize::from(user_id.is_some()) << 1
        | usize::from(event_type.is_some()) << 2;
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(5);
    if let Some(v) = &url_id {
        params.push(v);
    }
    if let Some(v) = &user_id {
        params.push(v);
    }
    if let Some(v) = &event_type {
        params.push(v);
    }
    params.push(&limit);
    params.push(&offset);
    let stmt = client.prepare_cached(sql::EVENT_LISTS[which]).await?;
    Ok(client
        .query(&stmt, &params)
        .await?
        .iter()
        .map(event)
        .collect())
}
