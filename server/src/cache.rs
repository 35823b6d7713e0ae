//! Valkey as a read-through cache: the key scheme, the TTL, list invalidation, and
//! failing open. Valkey is a cache, not the truth: every error here is counted and
//! logged, and the caller falls through to PostgreSQL.
//!
//! Keys (all under CACHE_KEY_PREFIX):
//! - `user:{id}`, `url:{id}`: the entity's JSON, as served;
//! - `code:{code}`: the redirect lookup (`Link::encode`, or `-` for an unknown code);
//! - `lists:{users|urls|events}`: a hash of cached list pages, one field per distinct
//!   query. A write drops the whole hash with one `UNLINK`: O(1) for the server (the
//!   memory is reclaimed in the background), never `KEYS` or `SCAN`;
//!
//! A write leaves a short-lived tombstone in place of the entity and code keys it
//! invalidates, and fills are `SET NX`, so a lookup that read PostgreSQL before the
//! write cannot put the old answer back. List pages have no such guard: a family is
//! invalidated by every write to it, and a tombstone there would keep busy lists
//! uncached; a list fill racing a write can leave a page stale for up to the TTL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};

use futures_util::StreamExt;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use crate::config::Config;
use crate::domain::Link;
use crate::metrics as m;
use crate::near::NearCache;

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

/// The cache handle; cheap to clone. A disabled cache misses every lookup.
#[derive(Clone)]
pub struct Cache {
    inner: Option<Arc<Inner>>,
}

/// Where the Valkey master is.
enum Source {
    /// A fixed address; the connection manager reconnects to it by itself.
    Direct(redis::Client),
    /// Discovered through Sentinel, and discovered again whenever a command fails:
    /// the connection manager alone would keep reconnecting to the old address, which
    /// after a failover is down or a read-only replica.
    Sentinel {
        sentinel: tokio::sync::Mutex<redis::sentinel::Sentinel>,
        master: String,
    },
}

struct Inner {
    source: Source,
    /// The in-process layer for redirect lookups, when enabled.
    near: Option<Arc<NearCache>>,
    /// The channel writes publish touched short codes on.
    channel: String,
    manager_cfg: ConnectionManagerConfig,
    /// `None` until the first connection succeeds.
    conn: RwLock<Option<ConnectionManager>>,
    /// Set while a background (re)connect runs, so failures start at most one.
    connecting: AtomicBool,
    prefix: String,
    ttl_secs: u64,
    timeout: Duration,
}

impl Inner {
    async fn master(&self) -> redis::RedisResult<redis::Client> {
        match &self.source {
            Source::Direct(client) => Ok(client.clone()),
            // async_master_for asks the Sentinels and checks ROLE on the answer.
            Source::Sentinel { sentinel, master } => {
                sentinel.lock().await.async_master_for(master, None).await
            }
        }
    }

    async fn connect_once(&self) -> redis::RedisResult<ConnectionManager> {
        ConnectionManager::new_with_config(self.master().await?, self.manager_cfg.clone()).await
    }

    /// Connects (again) in the background, swapping the new connection in when it is
    /// up; requests keep going meanwhile (failing over to PostgreSQL).
    fn reconnect(self: &Arc<Self>) {
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                match tokio::time::timeout(Duration::from_secs(3), inner.connect_once()).await {
                    Ok(Ok(conn)) => {
                        *inner.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(conn);
                        inner.connecting.store(false, Ordering::Release);
                        tracing::info!(
                            sentinel = matches!(inner.source, Source::Sentinel { .. }),
                            "connected to Valkey"
                        );
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "Valkey unreachable; serving from PostgreSQL, retrying")
                    }
                    Err(_) => tracing::warn!(
                        "Valkey connect timed out; serving from PostgreSQL, retrying"
                    ),
                }
                drop(inner);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    /// A command failed or timed out: with Sentinel, the master may have moved.
    fn on_failure(self: &Arc<Self>) {
        if matches!(self.source, Source::Sentinel { .. }) {
            self.reconnect();
        }
    }
}

/// Keeps the near cache honest: subscribed to the invalidation channel, it drops each
/// published code; when the link is lost (stream ends, or a heartbeat PING goes
/// unanswered) it drops the whole near cache and stops using it until resubscribed.
async fn follow_invalidations(weak: Weak<Inner>, near: Arc<NearCache>) {
    loop {
        let subscribed = {
            let Some(inner) = weak.upgrade() else { return };
            let channel = inner.channel.clone();
            tokio::time::timeout(Duration::from_secs(3), async {
                let mut pubsub = inner.master().await?.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub.split())
            })
            .await
        };
        match subscribed {
            Ok(Ok((mut sink, mut stream))) => {
                near.set_live(true);
                tracing::info!("near cache live: following invalidations");
                // In subscribed mode PING answers ["pong", ""], hence Value.
                let mut beat = tokio::time::interval_at(
                    tokio::time::Instant::now() + Duration::from_secs(1),
                    Duration::from_secs(1),
                );
                loop {
                    tokio::select! {
                        msg = stream.next() => match msg {
                            Some(msg) => match msg.get_payload::<String>() {
                                Ok(code) => near.invalidate(code.as_str()),
                                Err(_) => break,
                            },
                            None => break,
                        },
                        _ = beat.tick() => {
                            if weak.strong_count() == 0 {
                                return;
                            }
                            let pong = tokio::time::timeout(Duration::from_secs(1), sink.ping::<redis::Value>()).await;
                            if !matches!(pong, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                near.set_live(false);
                tracing::warn!("invalidation link lost: near cache dropped until it is back");
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot subscribe to invalidations yet"),
            Err(_) => tracing::debug!("subscribing to invalidations timed out"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl Cache {
    /// Starts connecting in the background; the service serves from PostgreSQL until it does.
    ///
    /// # Errors
    /// When REDIS_URL or VALKEY_SENTINELS does not parse.
    pub fn start(cfg: &Config) -> anyhow::Result<Self> {
        if !cfg.cache_enabled {
            return Ok(Cache { inner: None });
        }
        let source = match cfg
            .valkey_sentinels
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(list) => {
                let nodes: Vec<String> = list
                    .split(',')
                    .map(|hp| format!("redis://{}/", hp.trim()))
                    .collect();
                let sentinel = redis::sentinel::Sentinel::build(nodes).map_err(|e| {
                    anyhow::anyhow!(
                        "VALKEY_SENTINELS must be a comma-separated host:port list: {e}"
                    )
                })?;
                Source::Sentinel {
                    sentinel: tokio::sync::Mutex::new(sentinel),
                    master: cfg.valkey_sentinel_master.clone(),
                }
            }
            None => Source::Direct(
                redis::Client::open(cfg.cache_url())
                    .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Valkey URL: {e}"))?,
            ),
        };
        let timeout = Duration::from_millis(cfg.cache_timeout_ms);
        let manager_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let near = (cfg.near_cache_capacity > 0).then(|| {
            Arc::new(NearCache::new(
                cfg.near_cache_capacity,
                Duration::from_millis(cfg.near_cache_ttl_ms),
            ))
        });
        let inner = Arc::new(Inner {
            source,
            near: near.clone(),
            channel: format!("{}near-invalidate", cfg.cache_key_prefix),
            manager_cfg,
            conn: RwLock::new(None),
            connecting: AtomicBool::new(false),
            prefix: cfg.cache_key_prefix.clone(),
            ttl_secs: cfg.cache_ttl_seconds,
            timeout,
        });
        inner.reconnect();
        if let Some(near) = near {
            tokio::spawn(follow_invalidations(Arc::downgrade(&inner), near));
        }
        Ok(Cache { inner: Some(inner) })
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
        // A poisoned lock only means a writer panicked mid-assignment of an Option; the
        // value is still a valid Option, so read through it.
        let guard = inner.conn.read().unwrap_or_else(|p| p.into_inner());
        guard.clone().map(|c| (c, inner))
    }

    /// Runs one Valkey call under the command timeout; errors count and log, never propagate.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager, u64) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let Some((conn, inner)) = self.conn() else {
            m::cache_valkey("error");
            return None;
        };
        match tokio::time::timeout(inner.timeout, f(conn, inner.ttl_secs)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                m::cache_valkey("error");
                tracing::warn!(op, error = %e, "Valkey command failed");
                inner.on_failure();
                None
            }
            Err(_) => {
                m::cache_valkey("error");
                tracing::warn!(op, "Valkey command timed out");
                inner.on_failure();
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
                m::cache_valkey("hit");
                Lookup::Hit(None)
            }
            Some(Some(s)) if s == TOMBSTONE => {
                m::cache_valkey("miss");
                Lookup::Miss
            }
            Some(Some(s)) => match Link::decode(&s) {
                Some(link) => {
                    m::cache_valkey("hit");
                    Lookup::Hit(Some(link))
                }
                None => {
                    m::cache_valkey("error");
                    Lookup::Error
                }
            },
            Some(None) => {
                m::cache_valkey("miss");
                Lookup::Miss
            }
            None => Lookup::Error,
        }
    }

    /// Caches a redirect lookup's answer (found or not).
    pub fn put_link(&self, code: &str, link: Option<&Link>) {
        if self.is_enabled() {
            self.fill(
                self.key("code", code),
                link.map_or_else(|| NEGATIVE.to_owned(), Link::encode),
            );
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

    /// Caches a list page. The hash's TTL is set when it is created and never
    /// extended, so no page outlives the TTL.
    pub fn put_list(&self, list: List, field: String, body: Bytes) {
        if !self.is_enabled() {
            return;
        }
        let key = self.key("lists", list.name());
        let this = self.clone();
        tokio::spawn(async move {
            this.run("hset", |mut c, ttl| async move {
                redis::pipe()
                    .atomic()
                    .hset(&key, field, body.as_ref())
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&key)
                    .arg(ttl)
                    .arg("NX")
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        });
    }

    /// Drops entries before the write's response goes out, in one round trip: the
    /// entity keys and short codes are overwritten with a short-lived tombstone (so a
    /// fill that read PostgreSQL before the write cannot land after it: fills are
    /// `SET NX`), list families are unlinked, and the codes are
    /// dropped from this replica's near cache and published to the others'.
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
        let lists: Vec<String> = lists.iter().map(|l| self.key("lists", l.name())).collect();
        let publish: Vec<String> = if inner.near.is_some() {
            codes.iter().map(|c| (*c).to_owned()).collect()
        } else {
            Vec::new()
        };
        if keys.is_empty() && lists.is_empty() {
            return;
        }
        let channel = inner.channel.clone();
        let done = self
            .run("invalidate", |mut c, _| async move {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("SET")
                        .arg(key)
                        .arg(TOMBSTONE)
                        .arg("PX")
                        .arg(TOMBSTONE_MS)
                        .ignore();
                }
                for list in &lists {
                    pipe.unlink(list).ignore();
                }
                for code in &publish {
                    pipe.publish(&channel, code).ignore();
                }
                pipe.query_async::<()>(&mut c).await
            })
            .await;
        if done.is_none() {
            tracing::warn!("cache invalidation failed; stale entries expire within the TTL");
        }
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
            inner.on_failure();
        }
        ok
    }
}

/// A Valkey key: `{prefix}{kind}:{id}` (see the module docs for the kinds).
pub fn key(prefix: &str, kind: &str, id: impl std::fmt::Display) -> String {
    format!("{prefix}{kind}:{id}")
}

/// The cached answer for a short code known not to exist.
const NEGATIVE: &str = "-";
/// What a write leaves in place of an entry: read as a miss, and it blocks `SET NX`
/// fills for a while. Longer than any lookup that could race the write (the pool
/// wait is 2 s by default, a query far less).
const TOMBSTONE: &str = "";
const TOMBSTONE_MS: u64 = 5_000;

fn counted(got: Option<Option<Bytes>>) -> Lookup<Bytes> {
    match got {
        // A tombstone: a write just happened; the NX fill after this miss is a no-op.
        Some(Some(v)) if v.is_empty() => {
            m::cache_valkey("miss");
            Lookup::Miss
        }
        Some(Some(v)) => {
            m::cache_valkey("hit");
            Lookup::Hit(v)
        }
        Some(None) => {
            m::cache_valkey("miss");
            Lookup::Miss
        }
        None => Lookup::Error,
    }
}
