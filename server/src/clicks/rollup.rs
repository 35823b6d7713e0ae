//! One flush's worth of clicks, pre-aggregated in memory, and its write: one upsert
//! per key (never one per click), keys in a fixed order (BTreeMap) so that replicas
//! writing the same rows never deadlock, and the whole flush in one transaction
//! guarded by its batch id, so a flush retried after an ambiguous failure (the
//! COMMIT went out, its answer did not come back) is not applied twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, DurationRound, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::agent::{Agent, Device};
use crate::db::statements as sql;
use crate::error::Result;

/// Counts of one key: (all clicks, of which bots).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub clicks: i64,
    pub bots: i64,
}

impl Count {
    fn add(&mut self, bot: bool) {
        self.clicks += 1;
        self.bots += i64::from(bot);
    }
}

/// A link click, classified.
pub struct LinkClick<'a> {
    /// Its id when it has one already (a redirect event being moved out of `events`).
    pub id: Option<i64>,
    pub at: DateTime<Utc>,
    pub url_id: i64,
    pub user_id: i64,
    pub code: &'a Arc<str>,
    pub agent: &'a Agent,
    /// As sent, cut to the stored length (raw clicks only).
    pub referrer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// A raw click row, as COPY writes it.
#[derive(Debug, Clone)]
struct Raw {
    id: Option<i64>,
    at: NaiveDateTime,
    url_id: i64,
    user_id: i64,
    code: Arc<str>,
    referrer: Option<String>,
    user_agent: Option<String>,
    bot: bool,
}

/// A link's hour: its owner, the counts, the last click's time.
type LinkHour = (i64, Count, DateTime<Utc>);

/// The part of a flush written every CLICKS_FLUSH_INTERVAL_MS: the links' hours (their
/// time series and totals), the service's hours, and the raw rows.
#[derive(Debug, Default)]
pub struct Hourly {
    link: BTreeMap<(i64, DateTime<Utc>), LinkHour>,
    /// (clicks, of which bots), unknown-code hits, inactive-code hits.
    global: BTreeMap<DateTime<Utc>, (Count, i64, i64)>,
    raw: Vec<Raw>,
    clicks: u64,
    bots: u64,
    orphans: u64,
}

/// The part written every CLICKS_BREAKDOWN_FLUSH_INTERVAL_MS: the users' hours (a
/// user's time series), and the per-day breakdowns. Fewer, larger flushes: under
/// Zipf-skewed traffic most keys recur within the interval, so each costs one
/// upsert per interval instead of one per second (PERF.md "Clicks").
#[derive(Debug, Default)]
pub struct Daily {
    user_hours: BTreeMap<(i64, DateTime<Utc>), Count>,
    link: BTreeMap<(i64, NaiveDate, &'static str, Arc<str>), Count>,
    user: BTreeMap<(i64, NaiveDate, &'static str, Arc<str>), Count>,
    user_links: BTreeMap<(i64, NaiveDate, i64), Count>,
    clicks: u64,
}

fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

impl Hourly {
    pub fn add_link(&mut self, c: &LinkClick<'_>, keep_raw: bool) {
        let hour = hour_of(c.at);
        let e = self
            .link
            .entry((c.url_id, hour))
            .or_insert((c.user_id, Count::default(), c.at));
        e.1.add(c.agent.bot);
        e.2 = e.2.max(c.at);
        self.global.entry(hour).or_default().0.add(c.agent.bot);
        if keep_raw {
            self.raw.push(Raw {
                id: c.id,
                at: c.at.naive_utc(),
                url_id: c.url_id,
                user_id: c.user_id,
                code: Arc::clone(c.code),
                referrer: c.referrer.map(str::to_owned),
                user_agent: c.user_agent.map(str::to_owned),
                bot: c.agent.bot,
            });
        }
        self.clicks += 1;
        self.bots += u64::from(c.agent.bot);
    }

    /// A hit on an unknown (`inactive` false) or inactive code.
    pub fn add_orphan(&mut self, at: DateTime<Utc>, inactive: bool) {
        let e = self.global.entry(hour_of(at)).or_default();
        if inactive {
            e.2 += 1;
        } else {
            e.1 += 1;
        }
        self.orphans += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.clicks == 0 && self.orphans == 0
    }

    /// Link clicks in this part (what a drop loses).
    pub fn clicks(&self) -> u64 {
        self.clicks
    }

    /// Of `clicks`, how many were bots.
    pub fn bots(&self) -> u64 {
        self.bots
    }

    pub fn raw_rows(&self) -> usize {
        self.raw.len()
    }

    /// Writes this part in the caller's transaction.
    pub async fn write(&self, tx: &deadpool_postgres::Transaction<'_>) -> Result<()> {
        if !self.link.is_empty() {
            let mut cols = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
            for ((url, hour), (user, n, last)) in &self.link {
                cols.0.push(*url);
                cols.1.push(*hour);
                cols.2.push(*user);
                cols.3.push(n.clicks);
                cols.4.push(n.bots);
                cols.5.push(*last);
            }
            let stmt = tx.prepare_cached(sql::CLICK_LINK_HOURLY_UPSERT).await?;
            tx.execute(
                &stmt,
                &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5],
            )
            .await?;
        }
        if !self.global.is_empty() {
            let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (hour, (n, unknown, inactive)) in &self.global {
                cols.0.push(*hour);
                cols.1.push(n.clicks);
                cols.2.push(n.bots);
                cols.3.push(*unknown);
                cols.4.push(*inactive);
            }
            let stmt = tx.prepare_cached(sql::CLICK_GLOBAL_HOURLY_UPSERT).await?;
            tx.execute(&stmt, &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4])
                .await?;
        }
        if !self.raw.is_empty() {
            // Moved rows keep their event ids; new ones take the next from the sequence.
            let with_ids = self.raw.iter().all(|r| r.id.is_some());
            let sink = tx
                .copy_in(if with_ids {
                    sql::CLICKS_COPY_WITH_IDS
                } else {
                    sql::CLICKS_COPY
                })
                .await?;
            let mut types = Vec::with_capacity(8);
            if with_ids {
                types.push(Type::INT8);
            }
            types.extend([
                Type::TIMESTAMP,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::BOOL,
            ]);
            let writer = BinaryCopyInWriter::new(sink, &types);
            pin_mut!(writer);
            for r in &self.raw {
                let code: &str = &r.code;
                let row: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
                    &r.at,
                    &r.url_id,
                    &r.user_id,
                    &code,
                    &r.referrer,
                    &r.user_agent,
                    &r.bot,
                ];
                match r.id.filter(|_| with_ids) {
                    Some(id) => {
                        let mut full: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                            Vec::with_capacity(8);
                        full.push(&id);
                        full.extend_from_slice(&row);
                        writer.as_mut().write(&full).await?;
                    }
                    None => writer.as_mut().write(&row).await?,
                }
            }
            writer.finish().await?;
        }
        Ok(())
    }
}

impl Daily {
    pub fn add(&mut self, c: &LinkClick<'_>, referrer_host: Arc<str>) {
        let day = c.at.date_naive();
        let bot = c.agent.bot;
        self.user_hours
            .entry((c.user_id, hour_of(c.at)))
            .or_default()
            .add(bot);
        let dims: [(&'static str, Arc<str>); 4] = [
            ("referrer", referrer_host),
            ("browser", Arc::clone(&c.agent.browser)),
            ("os", Arc::clone(&c.agent.os)),
            ("device", device_value(c.agent.device)),
        ];
        for (dim, value) in dims {
            self.link
                .entry((c.url_id, day, dim, Arc::clone(&value)))
                .or_default()
                .add(bot);
            self.user
                .entry((c.user_id, day, dim, value))
                .or_default()
                .add(bot);
        }
        self.user_links
            .entry((c.user_id, day, c.url_id))
            .or_default()
            .add(bot);
        self.clicks += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.clicks == 0
    }

    pub fn clicks(&self) -> u64 {
        self.clicks
    }

    pub async fn write(&self, tx: &deadpool_postgres::Transaction<'_>) -> Result<()> {
        if !self.user_hours.is_empty() {
            let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((user, hour), n) in &self.user_hours {
                cols.0.push(*user);
                cols.1.push(*hour);
                cols.2.push(n.clicks);
                cols.3.push(n.bots);
            }
            let stmt = tx.prepare_cached(sql::CLICK_USER_HOURLY_UPSERT).await?;
            tx.execute(&stmt, &[&cols.0, &cols.1, &cols.2, &cols.3])
                .await?;
        }
        for (map, stmt) in [
            (&self.link, sql::CLICK_LINK_DAILY_UPSERT),
            (&self.user, sql::CLICK_USER_DAILY_UPSERT),
        ] {
            if map.is_empty() {
                continue;
            }
            let mut cols = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
            for ((id, day, dim, value), n) in map {
                cols.0.push(*id);
                cols.1.push(*day);
                cols.2.push(*dim);
                cols.3.push(&**value);
                cols.4.push(n.clicks);
                cols.5.push(n.bots);
            }
            let stmt = tx.prepare_cached(stmt).await?;
            tx.execute(
                &stmt,
                &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5],
            )
            .await?;
        }
        if !self.user_links.is_empty() {
            let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((user, day, url), n) in &self.user_links {
                cols.0.push(*user);
                cols.1.push(*day);
                cols.2.push(*url);
                cols.3.push(n.clicks);
                cols.4.push(n.bots);
            }
            let stmt = tx
                .prepare_cached(sql::CLICK_USER_DAILY_LINKS_UPSERT)
                .await?;
            tx.execute(&stmt, &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4])
                .await?;
        }
        Ok(())
    }
}

fn device_value(d: Device) -> Arc<str> {
    thread_local! {
        static NAMES: [Arc<str>; 5] = [
            Device::Desktop, Device::Mobile, Device::Tablet, Device::Bot, Device::Other,
        ].map(|d| Arc::from(d.as_str()));
    }
    NAMES.with(|n| Arc::clone(&n[d as usize]))
}

/// Applies one flush in one transaction unless its batch id was applied before.
/// Returns whether it was applied now (false: an earlier try already had).
pub async fn apply(
    client: &mut deadpool_postgres::Object,
    batch_id: i64,
    hourly: Option<&Hourly>,
    daily: Option<&Daily>,
) -> Result<bool> {
    let tx = client.transaction().await?;
    let stmt = tx.prepare_cached(sql::CLICK_BATCH_CLAIM).await?;
    if tx.query_opt(&stmt, &[&batch_id]).await?.is_none() {
        // Applied by an earlier try whose answer was lost: nothing to do.
        tx.rollback().await?;
        return Ok(false);
    }
    if let Some(h) = hourly {
        h.write(&tx).await?;
    }
    if let Some(d) = daily {
        d.write(&tx).await?;
    }
    tx.commit().await?;
    Ok(true)
}
