//! The raw `clicks` table's day partitions: created ahead of time, dropped whole
//! when they age out of CLICKS_RETENTION_DAYS (never emptied by DELETE), by exactly
//! one replica at a time (a transaction-scoped advisory lock; the others skip that
//! round). Also prunes the flush ids that guard against double counting.

use std::time::Duration;

use chrono::{NaiveDate, TimeDelta, Utc};

use crate::db::Db;
use crate::error::Result;
use crate::metrics as m;

/// "clickmnt" in ASCII: the maintenance lock.
const LOCK_KEY: i64 = 0x636c_6963_6b6d_6e74;
/// Days of partitions kept ready beyond today.
pub const AHEAD_DAYS: i64 = 3;
/// How often maintenance runs (and at start).
pub const EVERY: Duration = Duration::from_secs(3600);

/// What one round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// False when another replica held the lock.
    pub ran: bool,
    pub created: Vec<NaiveDate>,
    pub dropped: Vec<NaiveDate>,
}

pub fn partition_name(day: NaiveDate) -> String {
    format!("clicks_{}", day.format("%Y%m%d"))
}

fn day_of(partition: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(partition.strip_prefix("clicks_")?, "%Y%m%d").ok()
}

/// Creates the partition of `day` if it is missing (in the caller's transaction).
pub(crate) async fn ensure_partition(
    tx: &deadpool_postgres::Transaction<'_>,
    day: NaiveDate,
) -> Result<bool> {
    let name = partition_name(day);
    let exists: bool = tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await?
        .get(0);
    if exists {
        return Ok(false);
    }
    let next = day + TimeDelta::days(1);
    // Names and bounds are dates we formatted: nothing from input reaches this DDL.
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {name} PARTITION OF clicks FOR VALUES FROM ('{day}') TO ('{next}')"
    ))
    .await?;
    Ok(true)
}

/// One round: partitions for today and `AHEAD_DAYS` after it exist (when raw clicks
/// are on), partitions wholly older than the retention window are dropped.
pub async fn run_once(db: &Db, retention_days: u32, today: NaiveDate) -> Result<Round> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    if !crate::db::try_xact_lock(&tx, LOCK_KEY).await? {
        return Ok(Round::default());
    }
    let mut round = Round {
        ran: true,
        ..Round::default()
    };
    if retention_days > 0 {
        for ahead in 0..=AHEAD_DAYS {
            let day = today + TimeDelta::days(ahead);
            if ensure_partition(&tx, day).await? {
                round.created.push(day);
            }
        }
    }
    // The oldest day kept: with 30 days, today and the 29 before it.
    let keep_from = today - TimeDelta::days(i64::from(retention_days.max(1)) - 1);
    for row in tx
        .query(
            "SELECT c.relname::text FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'clicks'::regclass ORDER BY 1",
            &[],
        )
        .await?
    {
        let name: String = row.get(0);
        let Some(day) = day_of(&name) else { continue };
        if retention_days == 0 || day < keep_from {
            tx.batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                .await?;
            round.dropped.push(day);
        }
    }
    tx.execute(
        "DELETE FROM click_batches WHERE applied_at < now() - interval '1 day'",
        &[],
    )
    .await?;
    tx.commit().await?;
    Ok(round)
}

/// How many day partitions exist (for the gauge).
pub async fn partitions(db: &Db) -> Result<i64> {
    Ok(db
        .get()
        .await?
        .query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'clicks'::regclass",
            &[],
        )
        .await?
        .get(0))
}

/// Runs a round at start and every `EVERY`, for as long as the service runs.
pub async fn keep(db: Db, retention_days: u32) {
    m::click_retention_days(retention_days);
    loop {
        match run_once(&db, retention_days, Utc::now().date_naive()).await {
            Ok(round) if round.ran => tracing::info!(
                created = round.created.len(),
                dropped = round.dropped.len(),
                "click partitions maintained"
            ),
            Ok(_) => tracing::debug!("click maintenance ran on another replica"),
            Err(e) => {
                tracing::warn!(error = %e, "click partition maintenance failed; retrying in a minute")
            }
        }
        if let Ok(n) = partitions(&db).await {
            m::click_partitions(n);
        }
        let wait = if matches!(partitions(&db).await, Ok(n) if n > 0 || retention_days == 0) {
            EVERY
        } else {
            Duration::from_secs(60)
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_carry_their_day() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
        assert_eq!(partition_name(day), "clicks_20261201");
        assert_eq!(day_of("clicks_20261201"), Some(day));
        assert_eq!(day_of("clicks_default"), None);
    }
}
