//! Valkey as a read-through cache: the key scheme (`keys`), the connection and
//! Sentinel discovery (`connection`), the near cache's invalidation follower
//! (`follower`), and here the operations and their failure rule. Valkey is a cache,
//! not the truth: every error is counted and logged, and the caller falls through to
//! PostgreSQL.
//!
//! A write leaves a short-lived tombstone in place of the entity and code keys it
//! invalidates, and fills are `SET NX`, so a lookup that read PostgreSQL before the
//! write cannot put the old answer back. Where Valkey refuses the tombstone (at
//! `maxmemory` under `noeviction`) the key is unlinked instead: fills are refused
//! then too, so nothing stale can come back. List pages have no such guard: a family
//! is invalidated by every write to it, and a tombstone there would keep busy lists
//! uncached; a list fill racing a write can leave a page stale for up to the TTL.
//!
//! Invalidations are sent in chunks of at most `INVALIDATION_CHUNK` commands, each
//! under the command timeout, from a task of their own: once a write has committed,
//! its invalidation runs to the end even if the client that asked for it is gone.

mod connection;
mod follower;
pub mod keys;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use crate::config::Config;
use crate::domain::Link;
use crate::metrics::{self as m, CacheResult};
use crate::near::NearCache;
use connection::{Connection, Source};
pub use keys::{decode_link, encode_link, key};
use keys::{NEGATIVE, TOMBSTONE, TOMBSTONE_MS};

/// The outcome of a lookup.
#[derive(Debug)]
pub enum Lookup<T> {
    Hit(T),
    Miss,
    /// Valkey was down, slow or answered nonsense: treat as a miss, but don't fill.
    Error,
}

/// The list families; a write drops the whole family it touches.
#[derive(Debug, Clone, Copy)]
pub enum List {
    Users,
    Urls,
    Events,
}

impl List {
    fn name(self) -> &'static str {
        match self {
            List::Users => "users",
            List::Urls => "urls",
            List::Events => "events",
        }
    }
}

/// Commands in one invalidation pipeline, and codes in one published message: a
/// user with 100,000 URLs is 100 pipelines, each well inside the command timeout.
pub const INVALIDATION_CHUNK: usize = 1_000;

/// Adds a page to a list family unless the family already holds `max` pages; the
/// family's TTL is set when it is created and never extended, so no page outlives it.
const PUT_LIST_PAGE: &str = r"
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4], 'NX')
return 1
";

/// The cache handle; cheap to clone. A disabled cache misses every lookup.
#[derive(Clone)]
pub struct Cache {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    conn: Arc<Connection>,
    /// The in-process layer for redirect lookups, when enabled.
    near: Option<Arc<NearCache>>,
    /// The channel writes publish touched short codes on.
    channel: String,
    prefix: String,
    ttl_secs: u64,
    timeout: Duration,
    list_max_pages: u64,
    put_list_page: redis::Script,
    /// TTL of the stale-if-error copies of redirect answers.
    stale_secs: u64,
}

/// What one write invalidates, owned so it can outlive the request.
struct Invalidation {
    keys: Vec<String>,
    lists: Vec<String>,
    codes: Vec<String>,
}

impl Cache {
    /// Starts connecting in the background; the service serves from PostgreSQL until
    /// it does. With a near cache, also starts following invalidations for it.
    ///
    /// # Errors
    /// When REDIS_URL or VALKEY_SENTINELS does not parse.
    pub fn start(cfg: &Config, near: Option<Arc<NearCache>>) -> anyhow::Result<Self> {
        if !cfg.cache_enabled {
            return Ok(Cache { inner: None });
        }
        let timeout = Duration::from_millis(cfg.cache_timeout_ms);
        let conn = Arc::new(Connection::new(Source::from_config(cfg)?, timeout));
        conn.reconnect();
        let channel = format!("{}near-invalidate", cfg.cache_key_prefix);
        if let Some(near) = &near {
            tokio::spawn(follower::follow_invalidations(
                Arc::downgrade(&conn),
                channel.clone(),
                Arc::clone(near),
            ));
        }
        Ok(Cache {
            inner: Some(Arc::new(Inner {
                conn,
                near,
                channel,
                prefix: cfg.cache_key_prefix.clone(),
                ttl_secs: cfg.cache_ttl_seconds,
                timeout,
                list_max_pages: cfg.cache_list_max_pages,
                put_list_page: redis::Script::new(PUT_LIST_PAGE),
                stale_secs: cfg.stale_if_error_seconds,
            })),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The near cache, when enabled.
    pub fn near(&self) -> Option<&NearCache> {
        self.inner.as_deref().and_then(|i| i.near.as_deref())
    }

    fn conn(&self) -> Option<(ConnectionManager, &Arc<Inner>)> {
        let inner = self.inner.as_ref()?;
        inner.conn.current().map(|c| (c, inner))
    }

    /// Runs one Valkey call under the command timeout; errors count and log, never propagate.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager, u64) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let Some((conn, inner)) = self.conn() else {
            m::cache_valkey(CacheResult::Error);
            return None;
        };
        match tokio::time::timeout(inner.timeout, f(conn, inner.ttl_secs)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                m::cache_valkey(CacheResult::Error);
                tracing::warn!(op, error = %e, "Valkey command failed");
                inner.conn.on_failure();
                None
            }
            Err(_) => {
                m::cache_valkey(CacheResult::Error);
                tracing::warn!(op, "Valkey command timed out");
                inner.conn.on_failure();
                None
            }
        }
    }

    fn key(&self, kind: &str, id: impl std::fmt::Display) -> String {
        key(
            self.inner.as_deref().map_or("", |i| i.prefix.as_str()),
            kind,
            id,
        )
    }

    /// Looks up a cached JSON body.
    pub async fn get_json(&self, kind: &'static str, id: i64) -> Lookup<Bytes> {
        if !self.is_enabled() {
            return Lookup::Miss;
        }
        let key = self.key(kind, id);
        let got: Option<Option<Vec<u8>>> = self
            .run("get", |mut c, _| async move { c.get(key).await })
            .await;
        counted(got.map(|v| v.map(Bytes::from)))
    }

    /// Stores a JSON body for the TTL, without making the caller wait for it.
    pub fn put_json(&self, kind: &'static str, id: i64, body: Bytes) {
        if self.is_enabled() {
            self.fill(self.key(kind, id), body);
        }
    }

    /// `SET key value EX ttl NX` in the background. `NX`: a write's tombstone (see
    /// `invalidate`) turns a racing, older fill into a no-op.
    fn fill(&self, key: String, value: impl AsRef<[u8]> + Send + 'static) {
        let this = self.clone();
        tokio::spawn(async move {
            this.run("set", |mut c, ttl| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value.as_ref())
                    .arg("EX")
                    .arg(ttl)
                    .arg("NX")
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        });
    }

    /// A value under `{prefix}{name}` (analytics answers).
    pub async fn get_raw(&self, name: &str) -> Lookup<Bytes> {
        if !self.is_enabled() {
            return Lookup::Miss;
        }
        let key = self.key(name, "");
        let got: Option<Option<Vec<u8>>> = self
            .run("get", |mut c, _| async move { c.get(key).await })
            .await;
        counted(got.map(|v| v.map(Bytes::from)))
    }

    /// Stores a value under `{prefix}{name}` for `ttl_secs`, overwriting (no
    /// tombstone guards these: nothing invalidates them).
    pub fn put_raw(&self, name: String, body: Bytes, ttl_secs: u64) {
        if !self.is_enabled() {
            return;
        }
        let key = self.key(&name, "");
        let this = self.clone();
        tokio::spawn(async move {
            this.run("set", |mut c, _| async move {
                c.set_ex::<_, _, ()>(key, body.as_ref(), ttl_secs).await
            })
            .await;
        });
    }

    /// The redirect lookup. `Hit(None)` is a cached "no such code".
    pub async fn get_link(&self, code: &str) -> Lookup<Option<Link>> {
        if !self.is_enabled() {
            return Lookup::Miss;
        }
        let key = self.key("code", code);
        let got: Option<Option<String>> = self
            .run("get", |mut c, _| async move { c.get(key).await })
            .await;
        match got {
            Some(Some(s)) if s == NEGATIVE => {
                m::cache_valkey(CacheResult::Hit);
                Lookup::Hit(None)
            }
            Some(Some(s)) if s == TOMBSTONE => {
                m::cache_valkey(CacheResult::Miss);
                Lookup::Miss
            }
            Some(Some(s)) => match decode_link(&s) {
                Some(link) => {
                    m::cache_valkey(CacheResult::Hit);
                    Lookup::Hit(Some(link))
                }
                None => {
                    m::cache_valkey(CacheResult::Error);
                    Lookup::Error
                }
            },
            Some(None) => {
                m::cache_valkey(CacheResult::Miss);
                Lookup::Miss
            }
            None => Lookup::Error,
        }
    }

    /// Caches a redirect lookup's answer (found or not), and keeps a long-lived copy
    /// under `code-stale:` for stale-if-error (STALE_IF_ERROR_SECONDS).
    pub fn put_link(&self, code: &str, link: Option<&Link>) {
        let Some(inner) = self.inner.as_ref() else {
            return;
        };
        let value = link.map_or_else(|| NEGATIVE.to_owned(), encode_link);
        let (fresh, stale) = (self.key("code", code), self.key("code-stale", code));
        let (this, stale_secs) = (self.clone(), inner.stale_secs);
        tokio::spawn(async move {
            this.run("set", |mut c, ttl| async move {
                // NX on both: a write's tombstones (see `invalidate`) turn a racing,
                // older fill into a no-op.
                redis::pipe()
                    .cmd("SET")
                    .arg(&fresh)
                    .arg(&value)
                    .arg("EX")
                    .arg(ttl)
                    .arg("NX")
                    .ignore()
                    .cmd("SET")
                    .arg(&stale)
                    .arg(&value)
                    .arg("EX")
                    .arg(stale_secs.max(ttl))
                    .arg("NX")
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        });
    }

    /// The long-lived copy of a redirect answer, for when PostgreSQL is away.
    pub async fn get_stale_link(&self, code: &str) -> Lookup<Option<Link>> {
        if !self.is_enabled() {
            return Lookup::Miss;
        }
        let key = self.key("code-stale", code);
        let got: Option<Option<String>> = self
            .run("get", |mut c, _| async move { c.get(key).await })
            .await;
        match got {
            Some(Some(s)) if s == NEGATIVE => Lookup::Hit(None),
            Some(Some(s)) => decode_link(&s).map_or(Lookup::Miss, |l| Lookup::Hit(Some(l))),
            Some(None) => Lookup::Miss,
            None => Lookup::Error,
        }
    }

    /// Looks up one cached list page.
    pub async fn get_list(&self, list: List, field: &str) -> Lookup<Bytes> {
        if !self.is_enabled() {
            return Lookup::Miss;
        }
        let key = self.key("lists", list.name());
        let field = field.to_owned();
        let got: Option<Option<Vec<u8>>> = self
            .run("hget", |mut c, _| async move { c.hget(key, field).await })
            .await;
        counted(got.map(|v| v.map(Bytes::from)))
    }

    /// Caches a list page in the background (see `put_list_now`).
    pub fn put_list(&self, list: List, field: String, body: Bytes) {
        if self.is_enabled() {
            let this = self.clone();
            tokio::spawn(async move { this.put_list_now(list, field, body).await });
        }
    }

    /// Caches a list page, unless its family already holds CACHE_LIST_MAX_PAGES
    /// pages (each distinct query is a page: without a bound, a client walking
    /// query strings could grow a family without limit for its whole TTL). Returns
    /// whether the page was stored.
    pub async fn put_list_now(&self, list: List, field: String, body: Bytes) -> bool {
        let Some(inner) = self.inner.as_ref() else {
            return false;
        };
        let key = self.key("lists", list.name());
        let (max, script) = (inner.list_max_pages, inner.put_list_page.clone());
        let stored = self
            .run("put_list", |mut c, ttl| async move {
                script
                    .key(key)
                    .arg(field)
                    .arg(body.as_ref())
                    .arg(max)
                    .arg(ttl)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await;
        stored == Some(1)
    }

    /// Drops what a write changed, and returns when it is done: the codes leave this
    /// replica's near cache at once; then, in a task of its own (so a client that
    /// hangs up cannot cancel it half-way), entity and code keys get a tombstone,
    /// list families are unlinked, and the codes are published to the other replicas,
    /// in chunks of `INVALIDATION_CHUNK`.
    pub async fn invalidate(
        &self,
        entities: &[(&'static str, i64)],
        codes: &[&str],
        lists: &[List],
    ) {
        let Some(inner) = self.inner.as_ref() else {
            return;
        };
        // This replica's own near cache first, before anything can fail.
        if let Some(near) = &inner.near {
            for code in codes {
                near.invalidate(code);
            }
        }
        let mut keys: Vec<String> = Vec::with_capacity(entities.len() + codes.len());
        keys.extend(entities.iter().map(|(kind, id)| self.key(kind, id)));
        keys.extend(codes.iter().map(|code| self.key("code", code)));
        keys.extend(codes.iter().map(|code| self.key("code-stale", code)));
        let job = Invalidation {
            keys,
            lists: lists.iter().map(|l| self.key("lists", l.name())).collect(),
            codes: if inner.near.is_some() {
                codes.iter().map(|c| (*c).to_owned()).collect()
            } else {
                Vec::new()
            },
        };
        if job.keys.is_empty() && job.lists.is_empty() && job.codes.is_empty() {
            return;
        }
        let this = self.clone();
        let task = tokio::spawn(async move { this.send_invalidation(job).await });
        if task.await.is_err() {
            tracing::error!("cache invalidation task panicked");
        }
    }

    async fn send_invalidation(&self, job: Invalidation) {
        let Some(inner) = self.inner.as_ref() else {
            return;
        };
        let mut failed = 0usize;
        // Lists first: one command each, and they are what every write touches.
        if !job.lists.is_empty() {
            let lists = job.lists;
            let done = self
                .run("invalidate_lists", |mut c, _| async move {
                    let mut pipe = redis::pipe();
                    for list in &lists {
                        pipe.unlink(list).ignore();
                    }
                    pipe.query_async::<()>(&mut c).await
                })
                .await;
            failed += usize::from(done.is_none());
        }
        for chunk in job.keys.chunks(INVALIDATION_CHUNK) {
            if !self.tombstone(chunk).await {
                failed += 1;
            }
        }
        for message in keys::invalidation_messages(&job.codes, INVALIDATION_CHUNK) {
            let channel = inner.channel.clone();
            let done = self
                .run("publish", |mut c, _| async move {
                    c.publish::<_, _, ()>(channel, message).await
                })
                .await;
            failed += usize::from(done.is_none());
        }
        if failed > 0 {
            tracing::warn!(
                failed,
                "cache invalidation partly failed; stale entries expire within the TTL"
            );
        }
    }

    /// Replaces each key with a tombstone; a key whose tombstone Valkey refuses (out
    /// of memory under `noeviction`) is unlinked instead, which Valkey always allows.
    /// Returns whether every key ended up invalidated.
    async fn tombstone(&self, keys: &[String]) -> bool {
        let owned = keys.to_vec();
        let results = self
            .run("invalidate", |mut c, _| async move {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for key in &owned {
                    pipe.cmd("SET")
                        .arg(key)
                        .arg(TOMBSTONE)
                        .arg("PX")
                        .arg(TOMBSTONE_MS);
                }
                pipe.query_async::<Vec<redis::RedisResult<redis::Value>>>(&mut c)
                    .await
            })
            .await;
        let Some(results) = results else {
            return false;
        };
        let refused: Vec<String> = keys
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_err())
            .map(|(k, _)| k.clone())
            .collect();
        if refused.is_empty() {
            return true;
        }
        tracing::debug!(
            keys = refused.len(),
            "Valkey refused tombstones; unlinking instead"
        );
        self.run("invalidate_unlink", |mut c, _| async move {
            c.unlink::<_, ()>(refused).await
        })
        .await
        .is_some()
    }

    /// Records whether this replica (`me`) reaches PostgreSQL in the `replicas` hash,
    /// and returns how many other replicas reported reaching it within `fresh`.
    /// Valkey away: 0 (no peer is known to be better off).
    pub async fn exchange_db_health(&self, me: u64, db_ok: bool, fresh: Duration) -> usize {
        if !self.is_enabled() {
            return 0;
        }
        let key = self.key("replicas", "db");
        let now_ms = chrono::Utc::now().timestamp_millis();
        let got: Option<std::collections::HashMap<String, String>> = self
            .run("replicas", |mut c, _| async move {
                let (_, all): ((), std::collections::HashMap<String, String>) = redis::pipe()
                    .hset(
                        &key,
                        me.to_string(),
                        format!("{}:{now_ms}", u8::from(db_ok)),
                    )
                    .expire(&key, 60)
                    .ignore()
                    .hgetall(&key)
                    .query_async(&mut c)
                    .await?;
                Ok(all)
            })
            .await;
        let cutoff = now_ms - i64::try_from(fresh.as_millis()).unwrap_or(i64::MAX);
        let all = got.unwrap_or_default();
        // Replicas gone for a minute (restarted under a new id) leave the hash.
        let gone: Vec<&String> = all
            .iter()
            .filter(|(_, v)| {
                v.split_once(':')
                    .and_then(|(_, at)| at.parse::<i64>().ok())
                    .is_none_or(|t| t < now_ms - 60_000)
            })
            .map(|(id, _)| id)
            .collect();
        if !gone.is_empty() {
            let key = self.key("replicas", "db");
            let gone: Vec<String> = gone.into_iter().cloned().collect();
            self.run("replicas_prune", |mut c, _| async move {
                c.hdel::<_, _, ()>(key, gone).await
            })
            .await;
        }
        all.iter()
            .filter(|(id, _)| **id != me.to_string())
            .filter(|(_, v)| {
                v.split_once(':').is_some_and(|(ok, at)| {
                    ok == "1" && at.parse::<i64>().is_ok_and(|t| t >= cutoff)
                })
            })
            .count()
    }

    /// A round trip, for `/ready`.
    pub async fn ping(&self) -> bool {
        let Some((mut conn, inner)) = self.conn() else {
            return false;
        };
        let wait = inner.timeout.max(Duration::from_millis(500));
        let ok = matches!(
            tokio::time::timeout(wait, redis::cmd("PING").query_async::<String>(&mut conn)).await,
            Ok(Ok(_))
        );
        if !ok {
            inner.conn.on_failure();
        }
        ok
    }
}

fn counted(got: Option<Option<Bytes>>) -> Lookup<Bytes> {
    match got {
        // A tombstone: a write just happened; the NX fill after this miss is a no-op.
        Some(Some(v)) if v.is_empty() => {
            m::cache_valkey(CacheResult::Miss);
            Lookup::Miss
        }
        Some(Some(v)) => {
            m::cache_valkey(CacheResult::Hit);
            Lookup::Hit(v)
        }
        Some(None) => {
            m::cache_valkey(CacheResult::Miss);
            Lookup::Miss
        }
        None => Lookup::Error,
    }
}
