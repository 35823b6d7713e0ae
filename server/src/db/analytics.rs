//! Analytics reads: every one from the rollup tables (never the raw clicks), each an
//! index range scan on the scope's primary key prefix.

use chrono::{DateTime, NaiveDate, Utc};

use super::statements as sql;
pub use crate::domain::analytics::Scope;
use crate::error::Result;

/// A link's all-time counts and its last click.
pub struct LinkTotals {
    pub clicks: i64,
    pub bot_clicks: i64,
    pub last_clicked_at: Option<DateTime<Utc>>,
}

pub async fn link_totals(client: &deadpool_postgres::Client, url_id: i64) -> Result<LinkTotals> {
    let stmt = client.prepare_cached(sql::ANALYTICS_LINK_TOTALS).await?;
    let row = client.query_one(&stmt, &[&url_id]).await?;
    Ok(LinkTotals {
        clicks: row.get(0),
        bot_clicks: row.get(1),
        last_clicked_at: row.get(2),
    })
}

/// The first hour with clicks in the scope (for `interval=all`).
pub async fn first_hour(
    client: &deadpool_postgres::Client,
    scope: Scope,
) -> Result<Option<DateTime<Utc>>> {
    let stmt = client
        .prepare_cached(match scope {
            Scope::Url(_) => sql::ANALYTICS_LINK_FIRST_HOUR,
            Scope::User(_) => sql::ANALYTICS_USER_FIRST_HOUR,
        })
        .await?;
    Ok(client.query_one(&stmt, &[&scope.id()]).await?.get(0))
}

/// The scope's hours with clicks in [start, end), in order: (hour, clicks, bot clicks).
pub async fn hours(
    client: &deadpool_postgres::Client,
    scope: Scope,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, i64, i64)>> {
    let stmt = client
        .prepare_cached(match scope {
            Scope::Url(_) => sql::ANALYTICS_LINK_SERIES,
            Scope::User(_) => sql::ANALYTICS_USER_SERIES,
        })
        .await?;
    let rows = client.query(&stmt, &[&scope.id(), &start, &end]).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// The top values of one dimension over whole UTC days: (value, clicks counted).
pub async fn breakdown(
    client: &deadpool_postgres::Client,
    scope: Scope,
    dim: &str,
    days: (NaiveDate, NaiveDate),
    exclude_bots: bool,
    limit: i64,
) -> Result<Vec<(String, i64)>> {
    let stmt = client
        .prepare_cached(match scope {
            Scope::Url(_) => sql::ANALYTICS_LINK_BREAKDOWN,
            Scope::User(_) => sql::ANALYTICS_USER_BREAKDOWN,
        })
        .await?;
    let rows = client
        .query(
            &stmt,
            &[&scope.id(), &dim, &days.0, &days.1, &exclude_bots, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A user's top links over whole UTC days: (url_id, short_code if it still exists, clicks).
pub async fn top_urls(
    client: &deadpool_postgres::Client,
    user_id: i64,
    days: (NaiveDate, NaiveDate),
    exclude_bots: bool,
    limit: i64,
) -> Result<Vec<(i64, Option<String>, i64)>> {
    let stmt = client.prepare_cached(sql::ANALYTICS_TOP_URLS).await?;
    let rows = client
        .query(&stmt, &[&user_id, &days.0, &days.1, &exclude_bots, &limit])
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Service-wide sums: clicks, bot clicks, unknown-code hits, inactive-code hits.
pub async fn summary(
    client: &deadpool_postgres::Client,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(i64, i64, i64, i64)> {
    let stmt = client.prepare_cached(sql::ANALYTICS_SUMMARY).await?;
    let r = client.query_one(&stmt, &[&start, &end]).await?;
    Ok((r.get(0), r.get(1), r.get(2), r.get(3)))
}
