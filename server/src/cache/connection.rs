//! Where the Valkey master is and the connection to it: a fixed address, or
//! discovered through Sentinel and discovered again after any failed command.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::Config;

/// Where the Valkey master is.
pub(super) enum Source {
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

impl Source {
    /// # Errors
    /// When REDIS_URL or VALKEY_SENTINELS does not parse.
    pub(super) fn from_config(cfg: &Config) -> anyhow::Result<Source> {
        match cfg
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
                Ok(Source::Sentinel {
                    sentinel: tokio::sync::Mutex::new(sentinel),
                    master: cfg.valkey_sentinel_master.clone(),
                })
            }
            None => Ok(Source::Direct(
                redis::Client::open(cfg.cache_url())
                    .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Valkey URL: {e}"))?,
            )),
        }
    }
}

/// The connection, kept current in the background.
pub(super) struct Connection {
    source: Source,
    manager_cfg: ConnectionManagerConfig,
    /// `None` until the first connection succeeds.
    conn: RwLock<Option<ConnectionManager>>,
    /// Set while a background (re)connect runs, so failures start at most one.
    connecting: AtomicBool,
}

impl Connection {
    pub(super) fn new(source: Source, command_timeout: Duration) -> Self {
        let manager_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(command_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        Connection {
            source,
            manager_cfg,
            conn: RwLock::new(None),
            connecting: AtomicBool::new(false),
        }
    }

    pub(super) fn is_sentinel(&self) -> bool {
        matches!(self.source, Source::Sentinel { .. })
    }

    /// The master's client (asking the Sentinels, which check ROLE on the answer).
    pub(super) async fn master(&self) -> redis::RedisResult<redis::Client> {
        match &self.source {
            Source::Direct(client) => Ok(client.clone()),
            Source::Sentinel { sentinel, master } => {
                sentinel.lock().await.async_master_for(master, None).await
            }
        }
    }

    /// The current connection, if there is one.
    pub(super) fn current(&self) -> Option<ConnectionManager> {
        // A poisoned lock only means a writer panicked mid-assignment of an Option; the
        // value is still a valid Option, so read through it.
        self.conn.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn connect_once(&self) -> redis::RedisResult<ConnectionManager> {
        ConnectionManager::new_with_config(self.master().await?, self.manager_cfg.clone()).await
    }

    /// Connects (again) in the background, swapping the new connection in when it is
    /// up; requests keep going meanwhile (failing over to PostgreSQL).
    pub(super) fn reconnect(self: &Arc<Self>) {
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(this) = weak.upgrade() else { return };
                match tokio::time::timeout(Duration::from_secs(3), this.connect_once()).await {
                    Ok(Ok(conn)) => {
                        *this.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(conn);
                        this.connecting.store(false, Ordering::Release);
                        tracing::info!(sentinel = this.is_sentinel(), "connected to Valkey");
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "Valkey unreachable; serving from PostgreSQL, retrying")
                    }
                    Err(_) => tracing::warn!(
                        "Valkey connect timed out; serving from PostgreSQL, retrying"
                    ),
                }
                drop(this);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    /// A command failed or timed out: with Sentinel, the master may have moved.
    pub(super) fn on_failure(self: &Arc<Self>) {
        if self.is_sentinel() {
            self.reconnect();
        }
    }
}
