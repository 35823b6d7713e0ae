//! PostgreSQL: the pool, and every query the service runs (one file per table).
//! Rows are read only here; SQL text lives in `statements`.

pub mod analytics;
pub mod events;
pub mod migrate;
pub mod seed;
pub mod statements;
pub mod urls;
pub mod users;

use std::time::{Duration, Instant};

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Object, Pool, QueueMode, RecyclingMethod, Runtime,
    Timeouts,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics as m;

/// The connection pool; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// DATABASE_RO_URL's pool, for lag-tolerant reads.
    replica: Option<Pool>,
}

impl Db {
    /// Builds the pool. No connection is made yet; `ping` makes the first.
    ///
    /// # Errors
    /// When the database settings do not parse.
    pub fn new(cfg: &Config) -> anyhow::Result<Self> {
        let pool = build_pool(cfg, cfg.pg_config()?, cfg.database_pool_max as usize)?;
        let replica = match &cfg.database_ro_url {
            Some(url) => {
                let mut pg = url
                    .expose()
                    .parse::<tokio_postgres::Config>()
                    .map_err(|e| {
                        anyhow::anyhow!("DATABASE_RO_URL is not a valid PostgreSQL URL: {e}")
                    })?;
                pg.connect_timeout(Duration::from_millis(cfg.database_connect_timeout_ms));
                pg.application_name("url-shortener-ro");
                // Replica reads wait briefly: past that, the primary answers instead.
                Some(build_pool(cfg, pg, cfg.database_ro_pool_max as usize)?)
            }
            None => None,
        };
        Ok(Db { pool, replica })
    }

    /// A pooled connection, waiting at most DATABASE_POOL_TIMEOUT_MS (then 503).
    pub async fn get(&self) -> Result<Object> {
        let start = Instant::now();
        let res = self.pool.get().await;
        m::db_pool_wait(start.elapsed());
        res.map_err(Error::from)
    }

    /// A connection for a read that tolerates replication lag (lists, analytics,
    /// events): a replica's when DATABASE_RO_URL is set and it answers in time, else
    /// the primary's. Reads that must see a just-made write use `get`.
    pub async fn get_ro(&self) -> Result<Object> {
        if let Some(replica) = &self.replica {
            let wait = Timeouts {
                wait: Some(Duration::from_millis(200)),
                create: Some(Duration::from_millis(500)),
                ..replica.timeouts()
            };
            match replica.timeout_get(&wait).await {
                Ok(conn) => {
                    m::db_read(m::ReadTarget::Replica);
                    return Ok(conn);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "replica unavailable; reading from the primary");
                    m::db_read(m::ReadTarget::PrimaryFallback);
                }
            }
        } else {
            m::db_read(m::ReadTarget::Primary);
        }
        self.get().await
    }

    /// A round trip to PostgreSQL, for readiness.
    pub async fn ping(&self) -> Result<()> {
        let client = self.get().await?;
        let stmt = client.prepare_cached(statements::PING).await?;
        client.query_one(&stmt, &[]).await?;
        Ok(())
    }

    /// (size, in use) of the pool, for the gauges.
    pub fn pool_status(&self) -> (usize, usize) {
        let s = self.pool.status();
        (s.size, s.size.saturating_sub(s.available))
    }

    pub fn close(&self) {
        self.pool.close();
        if let Some(r) = &self.replica {
            r.close();
        }
    }
}

/// One pool: every statement prepared on connect, bounded waits and statements.
fn build_pool(cfg: &Config, mut pg: tokio_postgres::Config, size: usize) -> anyhow::Result<Pool> {
    // Every statement a request runs is bounded (lock waits included), so a slow
    // query cannot hold a pooled connection for as long as it likes; the bulk
    // import raises it for its own transaction (`set_local_statement_timeout`).
    pg.options(format!(
        "-c statement_timeout={}",
        cfg.database_statement_timeout_ms
    ));
    let mgr = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(mgr)
        .max_size(size)
        .wait_timeout(Some(Duration::from_millis(cfg.database_pool_timeout_ms)))
        .create_timeout(Some(Duration::from_millis(cfg.database_connect_timeout_ms)))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .runtime(Runtime::Tokio1)
        // Most recently returned first: a light load keeps reusing a few warm
        // connections (and their PostgreSQL backends) instead of cycling through
        // all of them, each growing its buffers (PERF.md#what-was-tried).
        .queue_mode(QueueMode::Lifo)
        // Prepare every statement once per connection, so requests only ever
        // execute and a schema mismatch shows at connect time.
        .post_create(Hook::async_fn(|client, _| {
            Box::pin(async move {
                for sql in statements::all() {
                    client
                        .prepare_cached(sql)
                        .await
                        .map_err(|e| HookError::message(format!("preparing {sql:?}: {e}")))?;
                }
                Ok(())
            })
        }))
        .build()?;
    Ok(pool)
}

/// Runs an idempotent operation, and once more when it failed in a way that a second
/// try may not (serialization failure, deadlock, a cancelled statement): the
/// retry happens here, inside the service, instead of as a 503 to the client.
///
/// # Errors
/// The operation's error; a retryable one after the second try.
pub async fn retry_once<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    match op().await {
        Err(e) if e.is_retryable() => {
            tracing::debug!(error = %e, "retrying once");
            m::db_retry();
            op().await
        }
        other => other,
    }
}

/// Takes a transaction-scoped advisory lock if it is free: the one-replica-at-a-time
/// guard of background jobs (another replica holding it skips its round).
pub(crate) async fn try_xact_lock(
    tx: &deadpool_postgres::Transaction<'_>,
    key: i64,
) -> Result<bool> {
    Ok(tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])
        .await?
        .get(0))
}

/// Raises the statement timeout for the rest of the caller's transaction.
pub(crate) async fn set_local_statement_timeout(
    tx: &deadpool_postgres::Transaction<'_>,
    ms: u64,
) -> Result<()> {
    let stmt = tx
        .prepare_cached(statements::SET_LOCAL_STATEMENT_TIMEOUT)
        .await?;
    tx.query_one(&stmt, &[&format!("{ms}ms")]).await?;
    Ok(())
}

/// Whether an error is PostgreSQL reporting a given SQLSTATE.
pub(crate) fn is_state(e: &tokio_postgres::Error, state: &SqlState) -> bool {
    e.code() == Some(state)
}

/// The constraint an error names, if any.
pub(crate) fn constraint(e: &tokio_postgres::Error) -> Option<&str> {
    e.as_db_error().and_then(|d| d.constraint())
}
