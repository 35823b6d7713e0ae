//! `GET /urls/{id}/stats`, `GET /analytics`, `GET /analytics/summary`: answered from
//! the click rollups only, and cached in Valkey for ANALYTICS_CACHE_TTL_SECONDS
//! (never invalidated: they describe time ranges, and counts lag one flush anyway).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{encode, path_id};
use crate::cache::Lookup;
use crate::db::{self, analytics as q};
use crate::domain::analytics::{bucket_label, bucketed, AnalyticsQuery, GroupBy, Scope};
use crate::domain::timestamp;
use crate::error::{Error, Result};
use crate::request::query_pairs;
use crate::response::{cached_json, Request, Response};
use crate::state::AppState;

fn iso(t: DateTime<Utc>) -> String {
    t.naive_utc().format(timestamp::FORMAT).to_string()
}

/// `GET /urls/{id}/stats`: all-time clicks, humans, bots, the last click.
pub async fn stats(id: &str, st: &AppState) -> Result<Response> {
    let id = path_id(id, "url")?;
    cached(st, format!("stats:{id}"), || async move {
        let client = st.db.get().await?;
        let (exists, totals) =
            tokio::try_join!(db::urls::exists(&client, id), q::link_totals(&client, id))?;
        if !exists {
            return Err(Error::NotFound("url"));
        }
        Ok(json!({
            "url_id": id,
            "clicks": totals.clicks,
            "human_clicks": totals.clicks - totals.bot_clicks,
            "bot_clicks": totals.bot_clicks,
            "last_clicked_at": totals.last_clicked_at.map(iso),
        }))
    })
    .await
}

/// `GET /analytics?url_id=|user_id=&...`.
pub async fn query(req: &Request, st: &AppState) -> Result<Response> {
    let aq = AnalyticsQuery::parse(&query_pairs(req), false)?;
    let scope = aq
        .scope
        .ok_or_else(|| Error::field("url_id", "send exactly one of url_id and user_id"))?;
    let aq = &aq;
    cached(st, format!("q:{}", aq.cache_field()), || async move {
        let client = st.db.get_ro().await?;
        let exists = match scope {
            Scope::Url(id) => db::urls::exists(&client, id).await?,
            Scope::User(id) => db::users::exists(&client, id).await?,
        };
        if !exists {
            return Err(Error::NotFound(match scope {
                Scope::Url(_) => "url",
                Scope::User(_) => "user",
            }));
        }
        let first = match aq.range {
            crate::domain::analytics::Range::All => q::first_hour(&client, scope).await?,
            _ => None,
        };
        let w = aq.window(Utc::now(), first)?;
        let counted = |clicks: i64, bots: i64| if aq.exclude_bots { clicks - bots } else { clicks };
        let data: Vec<Value> = match aq.group_by {
            GroupBy::Timeseries => {
                let hours = q::hours(&client, scope, w.start, w.end).await?;
                bucketed(&w, aq.tz, &hours)
                    .into_iter()
                    .map(|(b, c, bots)| json!({ "bucket": bucket_label(b, aq.tz), "clicks": counted(c, bots) }))
                    .collect()
            }
            GroupBy::TopUrls => {
                let user = scope.id();
                q::top_urls(&client, user, w.utc_days(), aq.exclude_bots, aq.limit)
                    .await?
                    .into_iter()
                    .map(|(url_id, code, n)| json!({ "url_id": url_id, "short_code": code, "clicks": n }))
                    .collect()
            }
            g => {
                let dim = g.dimension().unwrap_or("referrer");
                q::breakdown(&client, scope, dim, w.utc_days(), aq.exclude_bots, aq.limit)
                    .await?
                    .into_iter()
                    .map(|(value, n)| json!({ "value": value, "clicks": n }))
                    .collect()
            }
        };
        let total: i64 = data.iter().filter_map(|d| d["clicks"].as_i64()).sum();
        let mut body = json!({
            "group_by": aq.group_by.as_str(),
            "start": iso(w.start),
            "end": iso(w.end),
            "timezone": aq.tz.name(),
            "exclude_bots": aq.exclude_bots,
            "total": total,
            "data": data,
        });
        match scope {
            Scope::Url(id) => body["url_id"] = json!(id),
            Scope::User(id) => body["user_id"] = json!(id),
        }
        if aq.group_by == GroupBy::Timeseries {
            body["granularity"] = json!(w.granularity.as_str());
        } else {
            // Breakdowns are kept per UTC day: the days they cover.
            let (first, last) = w.utc_days();
            body["days"] = json!({ "first": first.to_string(), "last": last.to_string() });
        }
        Ok(body)
    })
    .await
}

/// `GET /analytics/summary`: service-wide clicks, humans and bots, and the hits on
/// unknown and inactive codes, over a range (all time by default).
pub async fn summary(req: &Request, st: &AppState) -> Result<Response> {
    let mut pairs = query_pairs(req);
    if !pairs
        .iter()
        .any(|(k, _)| matches!(k.as_str(), "interval" | "start" | "end"))
    {
        pairs.push(("interval".into(), "all".into()));
    }
    let aq = AnalyticsQuery::parse(&pairs, true)?;
    let aq = &aq;
    cached(st, format!("summary:{}", aq.cache_field()), || async move {
        let first = Some(DateTime::<Utc>::UNIX_EPOCH);
        let w = aq.window(Utc::now(), first)?;
        let (clicks, bots, unknown, inactive) =
            q::summary(&st.db.get_ro().await?, w.start, w.end).await?;
        Ok(json!({
            "start": iso(w.start),
            "end": iso(w.end),
            "clicks": clicks,
            "human_clicks": clicks - bots,
            "bot_clicks": bots,
            "unknown_code_hits": unknown,
            "inactive_code_hits": inactive,
        }))
    })
    .await
}

/// Read-through for an analytics answer under `analytics:{field}`.
async fn cached<F, Fut>(st: &AppState, field: String, load: F) -> Result<Response>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Value>>,
{
    let key = format!("analytics:{field}");
    let lookup = st.cache.get_raw(&key).await;
    if let Lookup::Hit(body) = lookup {
        return Ok(cached_json(body, true));
    }
    let body = encode(&db::retry_once(load).await?)?;
    if matches!(lookup, Lookup::Miss) {
        st.cache
            .put_raw(key, body.clone(), st.cfg.analytics_cache_ttl_seconds);
    }
    Ok(cached_json(body, false))
}
