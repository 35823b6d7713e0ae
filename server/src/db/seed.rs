//! The `seed` subcommand: realistic generated data for demos and load tests (COPY,
//! a million URLs in seconds), or the old service's three CSV files (upsert by id).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use chrono::{Duration, NaiveDateTime, Utc};
use futures_util::SinkExt;
use rand::Rng;
use tokio_postgres::Client;

use super::statements as sql;
use crate::config::SeedArgs;
use crate::domain::timestamp;

const ADJECTIVES: &[&str] = &[
    "clear", "mellow", "ivory", "lively", "amber", "dawn", "opal", "young", "quiet", "bright",
    "swift", "silver",
];
const NOUNS: &[&str] = &[
    "lagoon", "field", "orbit", "journey", "harvest", "window", "meadow", "trail", "canyon",
    "zenith", "pioneer", "river",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "seeded.app",
    "hackstack.io",
    "relay.cloud",
    "opswise.net",
];
const TITLES: &[&str] = &[
    "Ops review",
    "Quarterly brief",
    "Incident notes",
    "Launch plan",
    "Design doc",
    "Team sync",
];

/// Rows sent per COPY chunk.
const CHUNK_ROWS: usize = 20_000;

/// Seeds what the arguments ask for.
///
/// # Errors
/// On a malformed CSV (with its line) or a database error.
pub async fn run(client: &mut Client, args: &SeedArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.from_csv {
        from_csv(client, dir).await?;
    }
    if args.users > 0 || args.urls > 0 || args.events > 0 {
        generate(client, args.users, args.urls, args.events).await?;
    }
    client
        .query_one(sql::SEED_SEQUENCES_SYNC, &[])
        .await
        .context("moving id sequences")?;
    Ok(())
}

/// A 7-character code from a URL id: a bijection on 0..62^7 (the multiplier is a prime
/// coprime to 62), so seeded codes never collide with each other, and their length keeps
/// them apart from the 6-character generated ones.
pub fn seed_code(id: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const SPACE: u64 = 62u64.pow(7);
    let mut n = (id % SPACE).wrapping_mul(2_654_435_761) % SPACE;
    let mut out = [0u8; 7];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

async fn copy_chunks<F>(
    client: &tokio_postgres::Transaction<'_>,
    statement: &str,
    rows: u64,
    mut row: F,
) -> anyhow::Result<()>
where
    F: FnMut(u64, &mut String),
{
    let sink = client
        .copy_in::<_, Bytes>(statement)
        .await
        .context("starting COPY")?;
    futures_util::pin_mut!(sink);
    let mut buf = String::with_capacity(CHUNK_ROWS * 128);
    for i in 0..rows {
        row(i, &mut buf);
        if buf.len() > CHUNK_ROWS * 100 {
            sink.send(Bytes::from(std::mem::take(&mut buf)))
                .await
                .context("sending COPY data")?;
        }
    }
    if !buf.is_empty() {
        sink.send(Bytes::from(buf))
            .await
            .context("sending COPY data")?;
    }
    sink.finish().await.context("finishing COPY")?;
    Ok(())
}

async fn generate(client: &mut Client, users: u64, urls: u64, events: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let row = client.query_one(sql::SEED_MAX_IDS, &[]).await?;
    let (max_user, max_url): (i64, i64) = (row.get(0), row.get(1));
    let (user_base, url_base) = (max_user.max(0) as u64, max_url.max(0) as u64);
    if users == 0 && urls > 0 && max_user == 0 {
        bail!("--urls needs users: pass --users too, or seed users first");
    }
    let user_count = if users > 0 { users } else { user_base };
    let user_first = if users > 0 { user_base + 1 } else { 1 };
    let now = Utc::now().naive_utc();
    let mut rng = rand::rng();
    let ts = |rng: &mut rand::rngs::ThreadRng| {
        (now - Duration::seconds(rng.random_range(0..31_536_000))).format(timestamp::FORMAT_SQL)
    };

    let tx = client.transaction().await?;
    copy_chunks(&tx, sql::SEED_COPY_USERS, users, |i, buf| {
        let id = user_base + 1 + i;
        let name = format!(
            "{}{}{}",
            ADJECTIVES[(id % 12) as usize],
            NOUNS[(id / 12 % 12) as usize],
            id % 100
        );
        let _ = writeln!(
            buf,
            "{id}\t{name}\t{name}.{id}@{}\t{}",
            DOMAINS[(id % 5) as usize],
            ts(&mut rng)
        );
    })
    .await?;
    let mut rng = rand::rng();
    copy_chunks(&tx, sql::SEED_COPY_URLS, urls, |i, buf| {
        let id = url_base + 1 + i;
        let user = user_first + rng.random_range(0..user_count);
        let created = now - Duration::seconds(rng.random_range(0..31_536_000));
        let updated = created + Duration::seconds(rng.random_range(0..86_400));
        let active = if rng.random_bool(0.9) { "t" } else { "f" };
        let _ = writeln!(
            buf,
            "{id}\t{user}\t{}\thttps://{}/{}/{}/{id}\t{} {}\t{active}\t{}\t{}",
            seed_code(id),
            DOMAINS[rng.random_range(0..DOMAINS.len())],
            ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
            NOUNS[rng.random_range(0..NOUNS.len())],
            TITLES[rng.random_range(0..TITLES.len())],
            NOUNS[rng.random_range(0..NOUNS.len())],
            created.format(timestamp::FORMAT_SQL),
            updated.format(timestamp::FORMAT_SQL),
        );
    })
    .await?;
    let url_last = url_base + urls;
    if events > 0 && url_last == 0 {
        bail!("--events needs URLs: pass --urls too, or seed URLs first");
    }
    let mut rng = rand::rng();
    copy_chunks(&tx, sql::SEED_COPY_EVENTS, events, |_, buf| {
        let url = rng.random_range(1..=url_last);
        let user = user_first + rng.random_range(0..user_count.max(1));
        let (kind, details) = match rng.random_range(0..10) {
            0 => (
                "created",
                format!(r#"{{"short_code": "{}"}}"#, seed_code(url)),
            ),
            1 | 2 => (
                "updated",
                r#"{"field": "title", "new_value": "archived"}"#.to_owned(),
            ),
            _ => (
                "redirect",
                format!(r#"{{"short_code": "{}"}}"#, seed_code(url)),
            ),
        };
        let _ = writeln!(buf, "{url}\t{user}\t{kind}\t{}\t{details}", ts(&mut rng));
    })
    .await?;
    tx.commit().await?;
    tracing::info!(
        users,
        urls,
        events,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "seed generated"
    );
    Ok(())
}

fn parse_ts(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(s, timestamp::FORMAT))
        .ok()
}

fn read_csv(dir: &Path, name: &str) -> anyhow::Result<Vec<csv::StringRecord>> {
    let path = dir.join(name);
    let mut reader =
        csv::Reader::from_path(&path).with_context(|| format!("opening {}", path.display()))?;
    reader
        .records()
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {}", path.display()))
}

fn field<'a>(
    rec: &'a csv::StringRecord,
    i: usize,
    file: &str,
    line: usize,
) -> anyhow::Result<&'a str> {
    rec.get(i)
        .with_context(|| format!("{file} line {line}: missing column {}", i + 1))
}

async fn from_csv(client: &mut Client, dir: &Path) -> anyhow::Result<()> {
    let users = read_csv(dir, "users.csv")?;
    let urls = read_csv(dir, "urls.csv")?;
    let events = read_csv(dir, "events.csv")?;

    let (mut ids, mut names, mut emails, mut created) = (vec![], vec![], vec![], vec![]);
    for (n, rec) in users.iter().enumerate() {
        let line = n + 2;
        let bad = |what: &str| anyhow::anyhow!("users.csv line {line}: {what}");
        ids.push(
            field(rec, 0, "users.csv", line)?
                .parse::<i64>()
                .map_err(|_| bad("id is not an integer"))?,
        );
        names.push(field(rec, 1, "users.csv", line)?.to_owned());
        emails.push(field(rec, 2, "users.csv", line)?.to_owned());
        created.push(
            parse_ts(field(rec, 3, "users.csv", line)?).ok_or_else(|| bad("bad created_at"))?,
        );
    }

    let mut u = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for (n, rec) in urls.iter().enumerate() {
        let line = n + 2;
        let f = |i| field(rec, i, "urls.csv", line);
        let bad = |what: &str| anyhow::anyhow!("urls.csv line {line}: {what}");
        u.0.push(
            f(0)?
                .parse::<i64>()
                .map_err(|_| bad("id is not an integer"))?,
        );
        u.1.push(
            f(1)?
                .parse::<i64>()
                .map_err(|_| bad("user_id is not an integer"))?,
        );
        u.2.push(f(2)?.to_owned());
        u.3.push(f(3)?.to_owned());
        u.4.push(f(4)?.to_owned());
        u.5.push(matches!(f(5)?, "True" | "true" | "t" | "1"));
        u.6.push(parse_ts(f(6)?).ok_or_else(|| bad("bad created_at"))?);
        u.7.push(parse_ts(f(7)?).ok_or_else(|| bad("bad updated_at"))?);
    }

    let mut e = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (n, rec) in events.iter().enumerate() {
        let line = n + 2;
        let f = |i| field(rec, i, "events.csv", line);
        let bad = |what: &str| anyhow::anyhow!("events.csv line {line}: {what}");
        let opt_id = |s: &str| {
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse::<i64>().map(Some)
            }
        };
        e.0.push(
            f(0)?
                .parse::<i64>()
                .map_err(|_| bad("id is not an integer"))?,
        );
        e.1.push(opt_id(f(1)?).map_err(|_| bad("url_id is not an integer"))?);
        e.2.push(opt_id(f(2)?).map_err(|_| bad("user_id is not an integer"))?);
        e.3.push(f(3)?.to_owned());
        e.4.push(parse_ts(f(4)?).ok_or_else(|| bad("bad timestamp"))?);
        let details: serde_json::Value =
            serde_json::from_str(f(5)?).map_err(|_| bad("details is not JSON"))?;
        e.5.push(details);
    }

    let tx = client.transaction().await?;
    tx.execute(sql::SEED_USERS_UPSERT, &[&ids, &names, &emails, &created])
        .await
        .context("loading users.csv")?;
    tx.execute(
        sql::SEED_URLS_UPSERT,
        &[&u.0, &u.1, &u.2, &u.3, &u.4, &u.5, &u.6, &u.7],
    )
    .await
    .context("loading urls.csv")?;
    tx.execute(
        sql::SEED_EVENTS_UPSERT,
        &[&e.0, &e.1, &e.2, &e.3, &e.4, &e.5],
    )
    .await
    .context("loading events.csv")?;
    tx.commit().await?;
    tracing::info!(users = ids.len(), urls = u.0.len(), events = e.0.len(), dir = %dir.display(), "seed loaded from CSV");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_codes_are_distinct_and_seven_characters() {
        let codes: std::collections::HashSet<String> = (1..=100_000).map(seed_code).collect();
        assert_eq!(codes.len(), 100_000);
        assert!(codes.iter().all(|c| c.len() == 7));
    }
}
