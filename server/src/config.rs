//! Configuration: every environment variable the service reads, its default and its
//! parse. `--help` lists them all. A bad value stops start-up naming the variable
//! (clap prints the value name, which is the variable's name).
//!
//! Not here: reading files, or anything that touches the network.

use std::fmt;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// The service's command line and environment.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "url-shortener",
    version,
    about = "URL-shortener API on hyper, PostgreSQL and Valkey"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply the SQL migrations under a PostgreSQL advisory lock, then exit.
    Migrate,
    /// Load demo or load-test data: generated rows, or the old service's CSV files.
    Seed(SeedArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// Load users.csv, urls.csv and events.csv from this folder (upsert by id).
    #[arg(long, value_name = "DIR")]
    pub from_csv: Option<std::path::PathBuf>,
    /// Generated users.
    #[arg(long, default_value_t = 0)]
    pub users: u64,
    /// Generated URLs, spread over the generated users.
    #[arg(long, default_value_t = 0)]
    pub urls: u64,
    /// Generated events, spread over the generated URLs.
    #[arg(long, default_value_t = 0)]
    pub events: u64,
}

/// A setting that may hold a password: `Debug` shows it with the password
/// replaced (a URL keeps its user and host), so the effective configuration can be
/// logged whole.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the code that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains("://") {
            write!(f, "{:?}", redact_url(&self.0))
        } else {
            f.write_str("[redacted]")
        }
    }
}

/// Everything `serve` needs; built from the environment by clap, or by hand in tests.
/// `Debug` is derived, so the effective configuration logged at start lists every
/// setting; secrets are `Secret`s and print redacted.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// PostgreSQL connection URL; when unset, built from the DATABASE_HOST/PORT/NAME/USER/PASSWORD parts.
    #[arg(long, env = "DATABASE_URL", value_name = "DATABASE_URL", global = true)]
    pub database_url: Option<Secret>,
    #[arg(
        long,
        env = "DATABASE_HOST",
        value_name = "DATABASE_HOST",
        default_value = "127.0.0.1",
        global = true
    )]
    pub database_host: String,
    #[arg(
        long,
        env = "DATABASE_PORT",
        value_name = "DATABASE_PORT",
        default_value_t = 5432,
        global = true
    )]
    pub database_port: u16,
    #[arg(
        long,
        env = "DATABASE_NAME",
        value_name = "DATABASE_NAME",
        default_value = "shortener",
        global = true
    )]
    pub database_name: String,
    #[arg(
        long,
        env = "DATABASE_USER",
        value_name = "DATABASE_USER",
        default_value = "postgres",
        global = true
    )]
    pub database_user: String,
    #[arg(
        long,
        env = "DATABASE_PASSWORD",
        value_name = "DATABASE_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub database_password: Option<Secret>,
    /// Pooled PostgreSQL connections per replica: 3 replicas x 60 + 20 reserved = max_connections 200.
    #[arg(long, env = "DATABASE_POOL_MAX", value_name = "DATABASE_POOL_MAX", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=10_000), global = true)]
    pub database_pool_max: u32,
    /// A read replica (CloudNativePG's `-ro` Service) for lag-tolerant reads: lists,
    /// events, analytics. Unset, or unreachable: those read the primary.
    #[arg(
        long,
        env = "DATABASE_RO_URL",
        value_name = "DATABASE_RO_URL",
        global = true
    )]
    pub database_ro_url: Option<Secret>,
    /// Pooled replica connections per replica of the service.
    #[arg(long, env = "DATABASE_RO_POOL_MAX", value_name = "DATABASE_RO_POOL_MAX", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=10_000), global = true)]
    pub database_ro_pool_max: u32,
    /// How long a request waits for a pooled connection before it gets a 503.
    #[arg(long, env = "DATABASE_POOL_TIMEOUT_MS", value_name = "DATABASE_POOL_TIMEOUT_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub database_pool_timeout_ms: u64,
    /// Longest one SQL statement of a request may run (lock waits included), set on
    /// every pooled connection; past it the request gets a 503 with Retry-After.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_MS", value_name = "DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub database_statement_timeout_ms: u64,
    /// Longest a bulk import's statements may run (POST /users/bulk).
    #[arg(long, env = "DATABASE_BULK_STATEMENT_TIMEOUT_MS", value_name = "DATABASE_BULK_STATEMENT_TIMEOUT_MS", default_value_t = 120_000,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub database_bulk_statement_timeout_ms: u64,
    /// Connect timeout for a new PostgreSQL connection.
    #[arg(long, env = "DATABASE_CONNECT_TIMEOUT_MS", value_name = "DATABASE_CONNECT_TIMEOUT_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub database_connect_timeout_ms: u64,

    /// Valkey (or Redis) URL for the cache.
    #[arg(long, env = "REDIS_URL", value_name = "REDIS_URL", global = true)]
    pub redis_url: Option<Secret>,
    /// Alias of REDIS_URL; REDIS_URL wins when both are set.
    #[arg(long, env = "VALKEY_URL", value_name = "VALKEY_URL", global = true)]
    pub valkey_url: Option<Secret>,
    /// Comma-separated host:port list of Valkey Sentinels; when set, the master is discovered through them.
    #[arg(
        long,
        env = "VALKEY_SENTINELS",
        value_name = "VALKEY_SENTINELS",
        global = true
    )]
    pub valkey_sentinels: Option<String>,
    /// The Sentinel master set name.
    #[arg(
        long,
        env = "VALKEY_SENTINEL_MASTER",
        value_name = "VALKEY_SENTINEL_MASTER",
        default_value = "mymaster",
        global = true
    )]
    pub valkey_sentinel_master: String,
    /// Turn the Valkey cache off entirely (every read goes to PostgreSQL).
    #[arg(long, env = "CACHE_ENABLED", value_name = "CACHE_ENABLED", default_value_t = true,
          action = clap::ArgAction::Set, global = true)]
    pub cache_enabled: bool,
    /// Time to live of every cache entry.
    #[arg(long, env = "CACHE_TTL_SECONDS", value_name = "CACHE_TTL_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub cache_ttl_seconds: u64,
    /// Per-command Valkey timeout; past it the request is served from PostgreSQL.
    #[arg(long, env = "CACHE_TIMEOUT_MS", value_name = "CACHE_TIMEOUT_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=60_000), global = true)]
    pub cache_timeout_ms: u64,
    /// Most cached pages one list family (users, urls, events) holds at once.
    #[arg(long, env = "CACHE_LIST_MAX_PAGES", value_name = "CACHE_LIST_MAX_PAGES", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub cache_list_max_pages: u64,
    /// Prefix of every Valkey key, so several deployments (or test runs) can share one Valkey.
    #[arg(
        long,
        env = "CACHE_KEY_PREFIX",
        value_name = "CACHE_KEY_PREFIX",
        default_value = "us:",
        global = true
    )]
    pub cache_key_prefix: String,

    /// Entries of the in-process near cache of redirect lookups (0 turns it off).
    #[arg(
        long,
        env = "NEAR_CACHE_CAPACITY",
        value_name = "NEAR_CACHE_CAPACITY",
        default_value_t = 100_000,
        global = true
    )]
    pub near_cache_capacity: usize,
    /// Longest a near-cache entry is served. Writes through the API drop entries within
    /// milliseconds on every replica; this bounds rows edited outside the API.
    #[arg(long, env = "NEAR_CACHE_TTL_MS", value_name = "NEAR_CACHE_TTL_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub near_cache_ttl_ms: u64,

    /// How old a redirect answer may be and still be served while PostgreSQL cannot
    /// be reached (stale-if-error); 0 turns it off.
    #[arg(long, env = "STALE_IF_ERROR_SECONDS", value_name = "STALE_IF_ERROR_SECONDS", default_value_t = 21_600,
          value_parser = clap::value_parser!(u64).range(0..=2_592_000), global = true)]
    pub stale_if_error_seconds: u64,

    /// Address to listen on.
    #[arg(
        long,
        env = "HOST",
        value_name = "HOST",
        default_value = "0.0.0.0",
        global = true
    )]
    pub host: std::net::IpAddr,
    /// Port of the API.
    #[arg(
        long,
        env = "PORT",
        value_name = "PORT",
        default_value_t = 5000,
        global = true
    )]
    pub port: u16,
    /// When set, /metrics is served on this port only (and not on PORT).
    #[arg(long, env = "METRICS_PORT", value_name = "METRICS_PORT", global = true)]
    pub metrics_port: Option<u16>,
    /// Log level filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(
        long,
        env = "LOG_LEVEL",
        value_name = "LOG_LEVEL",
        default_value = "info",
        global = true
    )]
    pub log_level: String,
    /// One JSON access-log line per request.
    #[arg(long, env = "ACCESS_LOG", value_name = "ACCESS_LOG", default_value_t = true,
          action = clap::ArgAction::Set, global = true)]
    pub access_log: bool,
    /// Largest JSON request body; larger ones get 413.
    #[arg(
        long,
        env = "BODY_LIMIT_BYTES",
        value_name = "BODY_LIMIT_BYTES",
        default_value_t = 1_048_576,
        global = true
    )]
    pub body_limit_bytes: usize,
    /// Largest multipart body for POST /users/bulk.
    #[arg(long, env = "BULK_LIMIT_BYTES", value_name = "BULK_LIMIT_BYTES", default_value_t = 64 * 1_048_576, global = true)]
    pub bulk_limit_bytes: usize,
    /// Most users GET /users returns without pagination.
    #[arg(long, env = "USERS_LIST_MAX", value_name = "USERS_LIST_MAX", default_value_t = 10_000,
          value_parser = clap::value_parser!(i64).range(1..), global = true)]
    pub users_list_max: i64,
    /// Most concurrent client connections; past it, accepting waits.
    #[arg(long, env = "MAX_CONNECTIONS", value_name = "MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_connections: u32,
    /// Time a client has to send its request headers.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECONDS", value_name = "HEADER_READ_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub header_read_timeout_seconds: u64,
    /// Time a client has to send a request body once its headers are in; then 408.
    #[arg(long, env = "BODY_READ_TIMEOUT_SECONDS", value_name = "BODY_READ_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub body_read_timeout_seconds: u64,
    /// TCP_NODELAY on client connections: a response goes out at once instead of
    /// waiting for the previous segment's ACK (PERF.md#runtime-tuning).
    #[arg(long, env = "TCP_NODELAY", value_name = "TCP_NODELAY", default_value_t = true,
          action = clap::ArgAction::Set, global = true)]
    pub tcp_nodelay: bool,
    /// Answer pipelined HTTP/1 requests with one write for the batch instead of one
    /// per response. Off by default: with it on, hyper lost the early 413 answer to an
    /// oversized chunked body when it closed the connection (PERF.md#what-was-tried).
    #[arg(long, env = "HTTP1_PIPELINE_FLUSH", value_name = "HTTP1_PIPELINE_FLUSH", default_value_t = false,
          action = clap::ArgAction::Set, global = true)]
    pub http1_pipeline_flush: bool,
    /// The whole shutdown's budget, from the signal to exit: draining connections,
    /// then writing the queued redirect events, within this many seconds in all. Keep
    /// preStop + this below the pod's terminationGracePeriodSeconds.
    #[arg(
        long,
        env = "SHUTDOWN_TIMEOUT_SECONDS",
        value_name = "SHUTDOWN_TIMEOUT_SECONDS",
        default_value_t = 20,
        global = true
    )]
    pub shutdown_timeout_seconds: u64,
    /// How long PostgreSQL must be unreachable before /ready turns 503.
    #[arg(
        long,
        env = "READY_DB_GRACE_SECONDS",
        value_name = "READY_DB_GRACE_SECONDS",
        default_value_t = 30,
        global = true
    )]
    pub ready_db_grace_seconds: u64,
    /// Interval of the background dependency check behind /ready.
    #[arg(long, env = "HEALTH_CHECK_INTERVAL_MS", value_name = "HEALTH_CHECK_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..), global = true)]
    pub health_check_interval_ms: u64,
    /// Clicks held in memory between the writer's drains (every 50 ms); when full,
    /// clicks are dropped and counted.
    #[arg(long, env = "CLICK_QUEUE_CAPACITY", value_name = "CLICK_QUEUE_CAPACITY", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub click_queue_capacity: u64,
    /// How often click counts (hourly rollups, totals) and raw clicks are written:
    /// the counts' lag.
    #[arg(long, env = "CLICKS_FLUSH_INTERVAL_MS", value_name = "CLICKS_FLUSH_INTERVAL_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub clicks_flush_interval_ms: u64,
    /// How often a user's time series and the daily breakdowns (referrers, browsers,
    /// OS, devices, a user's links) are written: their lag.
    #[arg(long, env = "CLICKS_BREAKDOWN_FLUSH_INTERVAL_MS", value_name = "CLICKS_BREAKDOWN_FLUSH_INTERVAL_MS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub clicks_breakdown_flush_interval_ms: u64,
    /// Days of raw clicks kept (day partitions, dropped whole); 0: no raw clicks, only
    /// the rollups (which are kept forever).
    #[arg(long, env = "CLICKS_RETENTION_DAYS", value_name = "CLICKS_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(0..=3650), global = true)]
    pub clicks_retention_days: u32,
    /// Time to live of a cached analytics answer (they are not invalidated: they are
    /// about time ranges, and counts lag a flush interval anyway).
    #[arg(long, env = "ANALYTICS_CACHE_TTL_SECONDS", value_name = "ANALYTICS_CACHE_TTL_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub analytics_cache_ttl_seconds: u64,
    /// Tokio worker threads (0: one per core).
    #[arg(
        long,
        env = "WORKER_THREADS",
        value_name = "WORKER_THREADS",
        default_value_t = 0,
        global = true
    )]
    pub worker_threads: usize,
}

impl Cli {
    /// Parses arguments as the binary does, but reading no environment variable: for
    /// tests and benches, so a stray variable cannot leak in.
    ///
    /// # Errors
    /// As clap's parse.
    pub fn try_parse_without_env<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command()
            .mut_args(|a| a.env(None))
            .try_get_matches_from(args)?;
        Cli::from_arg_matches(&matches)
    }
}

impl Config {
    /// A configuration with every default, pointed at the given servers (tests, benches).
    ///
    /// # Panics
    /// Never: the defaults are constants that parse (the unit tests prove it).
    pub fn with_urls(database_url: &str, redis_url: &str) -> Self {
        let args = [
            "url-shortener",
            "--database-url",
            database_url,
            "--redis-url",
            redis_url,
        ];
        Cli::try_parse_without_env(args)
            .expect("the defaults parse")
            .config
    }

    /// The PostgreSQL connection settings, from DATABASE_URL or its parts.
    ///
    /// # Errors
    /// When DATABASE_URL does not parse.
    pub fn pg_config(&self) -> anyhow::Result<tokio_postgres::Config> {
        let mut cfg = match &self.database_url {
            Some(url) => url
                .expose()
                .parse::<tokio_postgres::Config>()
                .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?,
            None => {
                let mut c = tokio_postgres::Config::new();
                c.host(&self.database_host)
                    .port(self.database_port)
                    .dbname(&self.database_name)
                    .user(&self.database_user);
                if let Some(pw) = &self.database_password {
                    c.password(pw.expose());
                }
                c
            }
        };
        cfg.connect_timeout(Duration::from_millis(self.database_connect_timeout_ms));
        cfg.application_name("url-shortener");
        Ok(cfg)
    }

    /// The cache URL: REDIS_URL, else VALKEY_URL, else the local default.
    pub fn cache_url(&self) -> &str {
        self.redis_url
            .as_ref()
            .or(self.valkey_url.as_ref())
            .map_or("redis://127.0.0.1:6379/", Secret::expose)
    }

    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_seconds)
    }
}

fn redact_url(url: &str) -> String {
    // postgres://user:secret@host/db -> postgres://user:[redacted]@host/db
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:[redacted]{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let cli = Cli::try_parse_without_env(["url-shortener"]).expect("defaults parse");
        assert_eq!(cli.config.port, 5000);
        assert_eq!(cli.config.database_pool_max, 60);
        assert_eq!(cli.config.database_pool_timeout_ms, 2000);
        assert_eq!(cli.config.cache_ttl_seconds, 30);
        assert_eq!(cli.config.body_limit_bytes, 1_048_576);
        assert_eq!(cli.config.users_list_max, 10_000);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = Cli::try_parse_without_env(["url-shortener", "--database-pool-max", "abc"])
            .expect_err("rejected");
        assert!(err.to_string().contains("DATABASE_POOL_MAX"), "{err}");
    }

    #[test]
    fn database_url_is_built_from_parts_when_absent() {
        let cli = Cli::try_parse_without_env([
            "url-shortener",
            "--database-host",
            "db",
            "--database-port",
            "6543",
        ])
        .expect("parse");
        let pg = cli.config.pg_config().expect("valid");
        assert_eq!(pg.get_ports(), &[6543]);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let cfg = Config::with_urls("postgres://app:hunter2@db/app", "redis://127.0.0.1/");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    /// Issue #10: the effective-configuration log line left out about ten settings
    /// while `Debug` was written by hand; every setting must show.
    #[test]
    fn the_logged_configuration_names_every_setting() {
        use clap::CommandFactory;
        let cfg = Config::with_urls("postgres://app:pw@db/app", "redis://:pw@v/");
        let shown = format!("{cfg:?}");
        let cmd = Cli::command();
        let ids: Vec<String> = cmd
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .filter(|id| !matches!(id.as_str(), "help" | "version"))
            .collect();
        assert!(ids.len() > 40, "{ids:?}");
        for id in ids {
            assert!(
                shown.contains(&format!("{id}:")),
                "{id} missing from {shown}"
            );
        }
        assert!(!shown.contains(":pw@"), "{shown}");
    }

    #[test]
    fn with_urls_ignores_the_environment() {
        // PATH is always set; no variable of ours is read by with_urls at all.
        let cfg = Config::with_urls("postgres://a@b/c", "redis://d/");
        assert_eq!(cfg.port, 5000);
        assert!(cfg.valkey_sentinels.is_none());
    }

    #[test]
    fn redis_url_wins_over_valkey_url() {
        let cli = Cli::try_parse_without_env([
            "url-shortener",
            "--valkey-url",
            "redis://v/",
            "--redis-url",
            "redis://r/",
        ])
        .expect("parse");
        assert_eq!(cli.config.cache_url(), "redis://r/");
    }
}
