//! Boots the real server on 127.0.0.1:0 against real PostgreSQL and Valkey.
//!
//! One database per test binary, created and migrated once; every app a test spawns
//! gets its own pool (a pool's connections belong to the runtime that made them).
//! Valkey keys carry a per-binary prefix. Tests isolate through their data.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shortener::config::Config;
use shortener::App;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must point at a PostgreSQL superuser; run the tests through `make test`",
    )
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .expect("REDIS_URL must point at Valkey; run the tests through `make test`")
}

static RUN_ID: OnceLock<String> = OnceLock::new();

/// A short id unique to this test binary's run.
pub fn run_id() -> &'static str {
    RUN_ID.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{}_{nanos:x}", std::process::id())
    })
}

static DATABASE: OnceLock<String> = OnceLock::new();

/// The URL of this binary's own migrated database (created on first use).
pub fn database_url() -> &'static str {
    DATABASE.get_or_init(|| {
        // Set up on a thread of its own: each #[tokio::test] has its own runtime, and
        // this must outlive whichever test asks first.
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(create_database())
        })
        .join()
        .expect("database setup thread")
    })
}

async fn create_database() -> String {
    create_named_database(&format!("test_{}", run_id())).await
}

/// A migrated database of its own, for tests that change what every other test
/// shares (such as the click partitions).
pub async fn separate_database(tag: &str) -> String {
    create_named_database(&format!("test_{}_{tag}", run_id())).await
}

async fn create_named_database(name: &str) -> String {
    let admin = admin_database_url();
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let mut cfg: tokio_postgres::Config = admin.parse().expect("DATABASE_URL parses");
    cfg.dbname(name);
    let url = format!(
        "postgres://{}@{}:{}/{}",
        cfg.get_user().unwrap_or("postgres"),
        match &cfg.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[allow(unreachable_patterns)]
            _ => "127.0.0.1".to_owned(),
        },
        cfg.get_ports().first().copied().unwrap_or(5432),
        name
    );
    let url = match cfg.get_password() {
        Some(pw) => url.replacen("@", &format!(":{}@", String::from_utf8_lossy(pw)), 1),
        None => url,
    };
    let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to test db");
    tokio::spawn(conn);
    shortener::db::migrate::run(&mut client)
        .await
        .expect("migrate");
    url
}

/// The default test configuration: this binary's database and Valkey prefix, port 0,
/// fast readiness checks and event flushes.
pub fn test_config() -> Config {
    let mut cfg = Config::with_urls(database_url(), &redis_url());
    cfg.host = "127.0.0.1".parse().expect("ip");
    cfg.port = 0;
    cfg.cache_key_prefix = format!("test:{}:", run_id());
    cfg.health_check_interval_ms = 50;
    cfg.clicks_flush_interval_ms = 20;
    cfg.clicks_breakdown_flush_interval_ms = 20;
    cfg.analytics_cache_ttl_seconds = 1;
    cfg.shutdown_timeout_seconds = 5;
    cfg.database_pool_max = 8;
    cfg.access_log = false;
    cfg
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// The running app's shared state, to look inside (near cache, readiness).
    pub state: shortener::state::State,
    pub metrics_addr: Option<SocketAddr>,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config()).await
}

/// Starts the app and waits until /ready says 200.
pub async fn spawn_app_with(cfg: Config) -> TestApp {
    let app = spawn_app_unready(cfg).await;
    let url = app.url("/ready");
    let client = app.client.clone();
    eventually("app ready", Duration::from_secs(20), || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    app
}

/// Starts the app without waiting for readiness.
pub async fn spawn_app_unready(cfg: Config) -> TestApp {
    let app = App::build(cfg).await.expect("app builds");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let state = app.state();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        state,
        metrics_addr,
        client: http_client(),
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// A client that never follows redirects: a 302 is what we test.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn head(&self, path: &str) -> reqwest::Response {
        self.client.head(self.url(path)).send().await.expect("HEAD")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .expect("PUT")
    }

    /// POST with a raw body and content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    /// Creates a user with a unique email; returns its JSON.
    pub async fn create_user(&self) -> Value {
        let name = unique("user");
        let resp = self
            .post_json(
                "/users",
                &json!({"username": name, "email": format!("{name}@example.com")}),
            )
            .await;
        assert_eq!(resp.status(), 201, "creating a user");
        resp.json().await.expect("user JSON")
    }

    /// Creates a URL for a fresh user; returns its JSON.
    pub async fn create_url(&self) -> Value {
        let user = self.create_user().await;
        self.create_url_for(
            user["id"].as_i64().expect("id"),
            "https://example.com/some/page?x=1",
        )
        .await
    }

    pub async fn create_url_for(&self, user_id: i64, target: &str) -> Value {
        let resp = self
            .post_json(
                "/urls",
                &json!({"user_id": user_id, "original_url": target, "title": "t"}),
            )
            .await;
        assert_eq!(resp.status(), 201, "creating a url");
        resp.json().await.expect("url JSON")
    }

    /// Triggers graceful shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("run task"),
            None => Ok(()),
        }
    }

    /// Sends the shutdown signal without waiting.
    pub fn begin_shutdown(&mut self) -> JoinHandle<anyhow::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("running")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A name unique across tests and runs.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        run_id().replace('_', ""),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A short code (3..=32 of [A-Za-z0-9_-]) unique across tests and runs.
pub fn unique_code() -> String {
    let s = unique("c");
    s.chars()
        .rev()
        .take(32)
        .collect::<String>()
        .chars()
        .rev()
        .collect()
}

/// Polls `check` until it returns true or `within` passes; panics naming `what`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A direct connection to this binary's database, to check what was written.
pub async fn db() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(database_url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

// === A Valkey of a test's own, to stop and start ===

pub fn valkey_binary() -> String {
    if let Ok(bin) = std::env::var("VALKEY_SERVER_BIN") {
        return bin;
    }
    let local = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.tools/valkey/bin/valkey-server"
    );
    if std::path::Path::new(local).exists() {
        return local.to_owned();
    }
    for candidate in ["valkey-server", "redis-server"] {
        if Command::new(candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return candidate.to_owned();
        }
    }
    panic!("no valkey-server found: run the tests through `make test`, which installs one");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A Valkey process owned by one test; killed on drop.
pub struct OwnValkey {
    pub port: u16,
    child: Option<Child>,
}

impl OwnValkey {
    pub async fn start(port: u16) -> OwnValkey {
        OwnValkey::start_with_args(port, &[]).await
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnValkey {
    fn drop(&mut self) {
        self.stop();
    }
}

// === Captured logs ===

/// Every log line the apps of this test binary write through `tracing` (JSON, INFO
/// and up), kept in memory so a test can look for its own lines by request id.
static LOGS: OnceLock<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per binary).
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = LogSink(std::sync::Arc::clone(&buf));
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || sink.clone())
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    });
}

/// The captured lines that contain `needle`, parsed.
pub fn log_lines_with(needle: &str) -> Vec<Value> {
    let Some(buf) = LOGS.get() else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&buf.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    text.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

// === Added for hostile / valkey_memory (tests-10) ===

impl OwnValkey {
    /// Like `start`, with extra `valkey-server` arguments (for example
    /// `["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]`).
    pub async fn start_with_args(port: u16, extra: &[&str]) -> OwnValkey {
        let port_arg = port.to_string();
        let mut args = vec![
            "--port",
            port_arg.as_str(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ];
        args.extend_from_slice(extra);
        let child = Command::new(valkey_binary())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start valkey-server");
        let v = OwnValkey {
            port,
            child: Some(child),
        };
        eventually("own valkey up", Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        v
    }
}

// === Error responses ===

/// Asserts an error response: its status, a JSON content type and an `error` string.
pub async fn error_body(resp: reqwest::Response, status: u16) -> Value {
    let (method_status, ct) = (
        resp.status(),
        resp.headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_owned()),
    );
    let url = resp.url().clone();
    let text = resp.text().await.expect("body");
    assert_eq!(method_status, status, "{url}: {text}");
    assert_eq!(ct.as_deref(), Some("application/json"), "{url}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"));
    assert!(
        v["error"].as_str().is_some_and(|s| !s.is_empty()),
        "{url}: no error message in {v}"
    );
    v
}

/// Asserts a 422 whose `details` names `field`; returns the reason given for it.
pub async fn invalid_field(resp: reqwest::Response, field: &str) -> String {
    let v = error_body(resp, 422).await;
    v["details"][field]
        .as_str()
        .unwrap_or_else(|| panic!("details do not name {field}: {v}"))
        .to_owned()
}
