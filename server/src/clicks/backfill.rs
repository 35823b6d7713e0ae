//! Moves the `redirect` rows that older versions wrote into `events` out of it: into
//! the rollups always, and into raw `clicks` (keeping their ids) when they fall in
//! the retention window. Batched (each batch one transaction: its rows leave
//! `events` and enter the rollups together), resumable (a stopped run leaves whole
//! batches done and the rest untouched), safe while serving (one replica at a time
//! under an advisory lock; rows are taken with SKIP LOCKED, and new redirects no
//! longer go to `events` at all).

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, TimeDelta, Utc};
use serde_json::Value;

use super::agent::{cut, referrer_host, Classifier};
use super::rollup::{Daily, Hourly, LinkClick};
use super::HEADER_KEEP;
use crate::db::Db;
use crate::error::Result;

/// "clickbkf" in ASCII.
const LOCK_KEY: i64 = 0x636c_6963_6b62_6b66;

/// Moves up to `batch` rows; returns how many it moved (0: none left, or another
/// replica is at it).
pub async fn run_batch(
    db: &Db,
    classifier: &Classifier,
    retention_days: u32,
    batch: i64,
) -> Result<u64> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    if !crate::db::try_xact_lock(&tx, LOCK_KEY).await? {
        return Ok(0);
    }
    let rows = tx
        .query(
            "SELECT id, url_id, user_id, \"timestamp\", details FROM events \
             WHERE event_type = 'redirect' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            &[&batch],
        )
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let today = Utc::now().date_naive();
    let keep_from = today - TimeDelta::days(i64::from(retention_days.max(1)) - 1);
    let mut hourly = Hourly::default();
    let mut daily = Daily::default();
    let mut days: Vec<NaiveDate> = Vec::new();
    let mut ids: Vec<i64> = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.get(0);
        ids.push(id);
        let (Some(url_id), Some(user_id)) =
            (row.get::<_, Option<i64>>(1), row.get::<_, Option<i64>>(2))
        else {
            // A redirect event without its link (hand-written): nothing to count.
            continue;
        };
        let at: NaiveDateTime = row.get(3);
        let details: Value = row.get(4);
        let text = |k: &str| {
            details
                .get(k)
                .and_then(Value::as_str)
                .map(|s| cut(s, HEADER_KEEP).replace('\0', ""))
        };
        let (referrer, user_agent) = (text("referrer"), text("user_agent"));
        let code: Arc<str> = Arc::from(text("short_code").unwrap_or_default());
        let agent = classifier.classify(user_agent.as_deref());
        let c = LinkClick {
            id: Some(id),
            at: at.and_utc(),
            url_id,
            user_id,
            code: &code,
            agent: &agent,
            referrer: referrer.as_deref(),
            user_agent: user_agent.as_deref(),
        };
        let keep_raw = retention_days > 0 && at.date() >= keep_from && at.date() <= today;
        if keep_raw && !days.contains(&at.date()) {
            days.push(at.date());
        }
        hourly.add_link(&c, keep_raw);
        daily.add(&c, Arc::from(referrer_host(referrer.as_deref())));
    }
    for day in days {
        super::maintenance::ensure_partition(&tx, day).await?;
    }
    hourly.write(&tx).await?;
    daily.write(&tx).await?;
    let moved = tx
        .execute("DELETE FROM events WHERE id = ANY($1)", &[&ids])
        .await?;
    tx.commit().await?;
    Ok(moved)
}

/// Moves every old redirect row, batch after batch, then stops.
pub async fn run(db: Db, retention_days: u32, batch: i64) {
    let classifier = Classifier::new(10_000);
    let mut total = 0u64;
    loop {
        match run_batch(&db, &classifier, retention_days, batch).await {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => {
                tracing::warn!(error = %e, moved = total, "moving redirect events paused; retrying in a minute");
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            }
        }
    }
    if total > 0 {
        tracing::info!(moved = total, "redirect events moved out of the event log");
    }
}
