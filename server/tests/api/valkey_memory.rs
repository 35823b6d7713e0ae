//! Tests: the service stays correct when Valkey is at maxmemory. Two replicas share a
//! Valkey of the test's own with a 4 MiB limit; B has no near cache, so it answers
//! from Valkey. Once junk has filled Valkey, a write through A must still stop B
//! serving the old answer: under `noeviction` Valkey refuses every write that needs
//! memory (the invalidation's tombstone `SET` among them), under `allkeys-lru` it
//! evicts. Outages of Valkey are in `cache` and `near`.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};

use crate::helpers::*;

// === Helpers of this file ===

/// A Valkey limited to 4 MiB under `policy`, and two apps on it: A with the default
/// config, B without a near cache (it reads Valkey on every request).
async fn replicas_at_maxmemory(policy: &str) -> (OwnValkey, TestApp, TestApp) {
    let valkey = OwnValkey::start_with_args(
        free_port(),
        &["--maxmemory", "4mb", "--maxmemory-policy", policy],
    )
    .await;
    let mut cfg = test_config();
    cfg.redis_url = Some(valkey.url().into());
    // Nothing cached may expire while a test runs: an old entry expiring would pass
    // for an invalidation that worked.
    cfg.cache_ttl_seconds = 3600;
    let a = spawn_app_with(cfg.clone()).await;
    cfg.near_cache_capacity = 0;
    let b = spawn_app_with(cfg).await;
    (valkey, a, b)
}

fn x_cache(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// GETs `path` on `app` until Valkey answers it (`X-Cache: HIT`). A new code's
/// tombstone blocks fills for its first 5 s, hence the long wait.
async fn until_hit(app: &TestApp, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = app.get(path).await;
        let status = resp.status();
        assert!(status == 200 || status == 302, "GET {path}: {status}");
        if x_cache(&resp) == "HIT" {
            return;
        }
        assert!(Instant::now() < deadline, "GET {path} never answered HIT");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect(valkey: &OwnValkey) -> MultiplexedConnection {
    redis::Client::open(valkey.url())
        .expect("Valkey URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to own Valkey")
}

const JUNK_BYTES: usize = 10 * 1024;
/// 40 MiB: ten times the limit, so a loop that never meets it is a broken setup.
const JUNK_KEYS_MAX: usize = 4096;

/// `SET junk:{i}` (10 KiB, no TTL) until Valkey answers OOM (`noeviction`).
async fn fill_until_oom(conn: &mut MultiplexedConnection) {
    let junk = vec![b'j'; JUNK_BYTES];
    for i in 0..JUNK_KEYS_MAX {
        let res = redis::cmd("SET")
            .arg(format!("junk:{i}"))
            .arg(&junk)
            .query_async::<()>(conn)
            .await;
        match res {
            Ok(()) => {}
            Err(e) if e.code() == Some("OOM") => return,
            Err(e) => panic!("SET junk:{i}: {e}"),
        }
    }
    panic!("Valkey took {JUNK_KEYS_MAX} junk keys without an OOM: is maxmemory set?");
}

/// A number from `INFO {section}`.
async fn info_field(conn: &mut MultiplexedConnection, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section}: {info}"))
}

async fn evicted_keys(conn: &mut MultiplexedConnection) -> u64 {
    info_field(conn, "stats", "evicted_keys").await
}

/// Fills Valkey until it answers OOM, then keeps it past its limit for the rest of the
/// test. The OOM on a 10 KiB `SET` is partly that command's own query buffer: once it
/// is freed, Valkey sits just under the limit and takes small writes again (a probe
/// `SET` was seen to pass). Lowering maxmemory 1 MiB below what is in use makes every
/// later write that needs memory fail, as on a Valkey that is really full.
async fn fill_past_the_limit(conn: &mut MultiplexedConnection) {
    fill_until_oom(conn).await;
    let used = info_field(conn, "memory", "used_memory").await;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used.saturating_sub(1024 * 1024).max(1024 * 1024))
        .query_async::<()>(conn)
        .await
        .expect("CONFIG SET maxmemory");
    assert_refuses_writes(conn).await;
}

/// `SET junk:{i}` (10 KiB, no TTL) until Valkey has evicted keys (`allkeys-lru`).
async fn fill_until_eviction(conn: &mut MultiplexedConnection) {
    let junk = vec![b'j'; JUNK_BYTES];
    for i in 0..JUNK_KEYS_MAX {
        redis::cmd("SET")
            .arg(format!("junk:{i}"))
            .arg(&junk)
            .query_async::<()>(conn)
            .await
            .unwrap_or_else(|e| panic!("SET junk:{i} under allkeys-lru: {e}"));
        if i % 8 == 7 && evicted_keys(conn).await > 0 {
            return;
        }
    }
    panic!("Valkey took {JUNK_KEYS_MAX} junk keys without evicting: is maxmemory set?");
}

/// Asserts that Valkey still refuses a write for want of memory.
async fn assert_refuses_writes(conn: &mut MultiplexedConnection) {
    let err = redis::cmd("SET")
        .arg("probe")
        .arg("x")
        .query_async::<()>(conn)
        .await
        .expect_err("Valkey at maxmemory (noeviction) accepted a write");
    assert_eq!(err.code(), Some("OOM"), "{err}");
}

/// Creates a URL through A and waits until B has its redirect and its JSON from
/// Valkey. Returns (id, code).
async fn url_cached_by_b(a: &TestApp, b: &TestApp) -> (i64, String) {
    let url = a.create_url().await;
    let id = url["id"].as_i64().expect("id");
    let code = url["short_code"].as_str().expect("code").to_owned();
    until_hit(b, &format!("/{code}")).await;
    until_hit(b, &format!("/urls/{id}")).await;
    (id, code)
}

/// The scenario both policies share: fill Valkey, change the target through A, and B
/// must answer the new target and the new JSON at once (the write's response only
/// goes out after its invalidation).
async fn a_target_change_reaches_a_replica_reading_valkey(policy: &str) {
    let (valkey, a, b) = replicas_at_maxmemory(policy).await;
    let (id, code) = url_cached_by_b(&a, &b).await;
    let mut conn = connect(&valkey).await;
    if policy == "noeviction" {
        fill_past_the_limit(&mut conn).await;
    } else {
        fill_until_eviction(&mut conn).await;
    }

    let target = format!("https://example.org/{}", unique("moved"));
    let resp = a
        .put_json(&format!("/urls/{id}"), &json!({"original_url": target}))
        .await;
    assert_eq!(resp.status(), 200, "PUT through A");

    let resp = b.get(&format!("/{code}")).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        location(&resp).as_deref(),
        Some(target.as_str()),
        "B redirects to the old target (X-Cache: {}) after the write through A",
        x_cache(&resp)
    );
    let resp = b.get(&format!("/urls/{id}")).await;
    assert_eq!(resp.status(), 200);
    let cache = x_cache(&resp);
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(
        v["original_url"], target,
        "B serves the old JSON (X-Cache: {cache}) after the write through A: {v}"
    );
}

// === noeviction ===

#[tokio::test]
async fn a_target_change_reaches_other_replicas_when_valkey_is_full_under_noeviction() {
    a_target_change_reaches_a_replica_reading_valkey("noeviction").await;
}

#[tokio::test]
async fn a_deactivation_reaches_other_replicas_when_valkey_is_full_under_noeviction() {
    let (valkey, a, b) = replicas_at_maxmemory("noeviction").await;
    let (id, code) = url_cached_by_b(&a, &b).await;
    let mut conn = connect(&valkey).await;
    fill_past_the_limit(&mut conn).await;

    let resp = a
        .put_json(&format!("/urls/{id}"), &json!({"is_active": false}))
        .await;
    assert_eq!(resp.status(), 200, "PUT through A");

    let resp = b.get(&format!("/{code}")).await;
    assert_eq!(
        resp.status(),
        404,
        "B still redirects a deactivated code (X-Cache: {}, Location: {:?})",
        x_cache(&resp),
        location(&resp)
    );
    let v: Value = b
        .get(&format!("/urls/{id}"))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(v["is_active"], false, "B serves the old JSON: {v}");
}

// === allkeys-lru ===

#[tokio::test]
async fn a_target_change_reaches_other_replicas_when_valkey_is_full_under_allkeys_lru() {
    // Valkey evicts instead of refusing here, so this passes without any special
    // handling; it guards the fix for noeviction against breaking this case.
    a_target_change_reaches_a_replica_reading_valkey("allkeys-lru").await;
}
