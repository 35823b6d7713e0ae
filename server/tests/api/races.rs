//! Issue #10: writes whose clients vanish, a shutdown that must fit its budget,
//! invalidations too large for one pipeline, list families that must stay bounded,
//! and a 500 that must be traceable to its request.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::helpers::*;
use crate::proxy::{database_port, Mode, PgProxy};

fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Until `app` serves `code` from its near cache with `target`.
async fn warm_near(app: &TestApp, code: &str, target: &str) {
    eventually(
        "served from the near cache",
        Duration::from_secs(5),
        || async {
            let r = app.get(&format!("/{code}")).await;
            location(&r).as_deref() == Some(target)
                && app
                    .state
                    .links
                    .near()
                    .and_then(|n| n.get(code))
                    .flatten()
                    .is_some_and(|t| t.location == target)
        },
    )
    .await;
}

/// Sends a request over a raw connection and returns the stream (not read).
async fn send_raw(addr: std::net::SocketAddr, request: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    stream
}

/// A client that gives up after its write committed must not leave Valkey and the
/// other replicas stale: the write's invalidation runs to completion anyway, and
/// the abandoned request is settled (in-flight gauge down, logged as 499).
#[tokio::test]
async fn a_write_whose_client_hangs_up_after_commit_still_invalidates_everywhere() {
    capture_logs();
    let proxy = PgProxy::start(database_port()).await;
    let mut cfg = test_config();
    cfg.database_url = Some(proxy.database_url().into());
    cfg.access_log = true;
    let a = spawn_app_with(cfg).await;
    let b = spawn_app().await;
    let url = b.create_url().await;
    let (id, code) = (
        url["id"].as_i64().expect("id"),
        url["short_code"].as_str().expect("code").to_owned(),
    );
    warm_near(&b, &code, url["original_url"].as_str().expect("target")).await;

    // A's COMMIT reaches PostgreSQL, but A does not hear back until released; the
    // client hangs up in that moment.
    proxy.set(Mode::HoldCommitAnswers);
    let rid = unique("hangup");
    let body = json!({"original_url": "https://example.org/after-hangup"}).to_string();
    let request = format!(
        "PUT /urls/{id} HTTP/1.1\r\nHost: t\r\nX-Request-Id: {rid}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let stream = send_raw(a.addr, &request).await;
    proxy.commits_sent(1).await;
    drop(stream);
    // hyper notices the hang-up and drops the request's future: it is settled as 499.
    eventually(
        "the abandoned request is logged as 499",
        Duration::from_secs(5),
        || async {
            log_lines_with(&rid)
                .iter()
                .any(|l| l["fields"]["status"] == 499 && l["fields"]["route"] == "/urls/{id}")
        },
    )
    .await;
    proxy.set(Mode::Pass);

    eventually(
        "B serves the committed target",
        Duration::from_secs(2),
        || async {
            location(&b.get(&format!("/{code}")).await).as_deref()
                == Some("https://example.org/after-hangup")
        },
    )
    .await;
    let fetched: serde_json::Value = b
        .get(&format!("/urls/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(fetched["original_url"], "https://example.org/after-hangup");
}

/// SHUTDOWN_TIMEOUT_SECONDS is one budget for the whole shutdown: a request that
/// does not finish and an event queue PostgreSQL will not take must not stretch it
/// (it used to be applied to the drain, the flush and the metrics server in turn).
#[tokio::test]
async fn shutdown_fits_its_budget_when_connections_and_the_event_flush_hang() {
    let proxy = PgProxy::start(database_port()).await;
    let mut cfg = test_config();
    cfg.database_url = Some(proxy.database_url().into());
    cfg.shutdown_timeout_seconds = 2;
    // One readiness check at start, then none: every statement the proxy holds
    // below is one this test caused.
    cfg.health_check_interval_ms = 600_000;
    let mut app = spawn_app_with(cfg).await;
    let url = app.create_url().await;
    let code = url["short_code"].as_str().expect("code").to_owned();
    warm_near(&app, &code, url["original_url"].as_str().expect("target")).await;

    proxy.set(Mode::Hang);
    // Served from the near cache; its event is written by a statement that now hangs.
    assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
    proxy.messages_held(1).await;
    // A read whose statement hangs too: its connection stays busy through the drain.
    let stuck = {
        let (client, url) = (app.client.clone(), app.url("/users/999999999"));
        tokio::spawn(async move { client.get(url).send().await })
    };
    proxy.messages_held(2).await;
    let started = Instant::now();
    eprintln!("START {:?}", std::time::Instant::now());
    let task = app.begin_shutdown();
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run returns");
    let took = started.elapsed();
    proxy.set(Mode::Pass);
    stuck.abort();
    assert!(result.expect("join").is_ok());
    assert!(
        took < Duration::from_millis(2_800),
        "shutdown took {took:?}, budget 2 s"
    );
}

/// Deleting a user with 100,000 URLs invalidates every one of them: the commands are
/// sent in chunks, each inside the command timeout (one pipeline of 200,000 commands
/// used to time out and invalidate nothing).
#[tokio::test]
async fn deleting_a_user_with_100000_urls_invalidates_all_of_them() {
    let a = spawn_app().await;
    let mut cfg = test_config();
    cfg.near_cache_capacity = 0; // B reads Valkey directly
    let b = spawn_app_with(cfg).await;
    let c = spawn_app().await; // near cache on
    let user = a.create_user().await;
    let user_id = user["id"].as_i64().expect("id");
    let prefix = unique("m");
    db().await
        .execute(
            "INSERT INTO urls (user_id, short_code, original_url) \
             SELECT $1, $2 || g, 'https://example.com/' || g FROM generate_series(1, 100000) g",
            &[&user_id, &prefix],
        )
        .await
        .expect("insert 100,000 urls");
    let sample: Vec<String> = [1, 33_333, 66_666, 100_000]
        .iter()
        .map(|g| format!("{prefix}{g}"))
        .collect();
    for code in &sample {
        let target = format!("https://example.com/{}", &code[prefix.len()..]);
        eventually(
            "B serves it from Valkey",
            Duration::from_secs(5),
            || async {
                let r = b.get(&format!("/{code}")).await;
                r.headers()["x-cache"] == "HIT" && location(&r).as_deref() == Some(target.as_str())
            },
        )
        .await;
        warm_near(&c, code, &target).await;
    }

    let started = Instant::now();
    assert_eq!(a.delete(&format!("/users/{user_id}")).await.status(), 204);
    eprintln!("DELETE with 100,000 URLs took {:?}", started.elapsed());
    for code in &sample {
        assert_eq!(
            b.get(&format!("/{code}")).await.status(),
            404,
            "{code} still served from Valkey"
        );
        eventually(
            "C drops it from its near cache",
            Duration::from_secs(1),
            || async { c.get(&format!("/{code}")).await.status() == 404 },
        )
        .await;
    }
}

/// A list family holds at most CACHE_LIST_MAX_PAGES pages, however many distinct
/// queries clients send within its TTL.
#[tokio::test]
async fn a_list_family_holds_at_most_its_page_bound() {
    let mut cfg = test_config();
    cfg.cache_key_prefix = unique("bound:");
    cfg.cache_list_max_pages = 3;
    let app = spawn_app_with(cfg.clone()).await;
    let cache = &app.state.cache;
    let mut stored = Vec::new();
    for page in 1..=10 {
        stored.push(
            cache
                .put_list_now(
                    shortener::cache::List::Urls,
                    format!("p={page}"),
                    bytes::Bytes::from_static(b"[]"),
                )
                .await,
        );
    }
    assert_eq!(stored.iter().filter(|s| **s).count(), 3, "{stored:?}");
    let mut conn = redis::Client::open(redis_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let key = format!("{}lists:urls", cfg.cache_key_prefix);
    let len: i64 = redis::cmd("HLEN")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("HLEN");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("TTL");
    assert_eq!(len, 3);
    assert!(ttl > 0 && ttl <= 30, "ttl {ttl}");
}

/// A genuine 500 is logged with the request id and the route, so it can be matched to
/// its access line; the client gets an opaque body.
#[tokio::test]
async fn an_internal_error_is_logged_with_its_request_id_and_route() {
    capture_logs();
    let app = spawn_app().await;
    // A trigger that fails the insert of one marked user with an internal error.
    let marker = unique("boom");
    db().await
        .batch_execute(&format!(
            "CREATE OR REPLACE FUNCTION fail_{marker}() RETURNS trigger AS $$ BEGIN \
               IF NEW.username = '{marker}' THEN RAISE EXCEPTION 'injected failure' USING ERRCODE = 'XX000'; END IF; \
               RETURN NEW; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER fail_{marker} BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION fail_{marker}();"
        ))
        .await
        .expect("trigger");
    let rid = unique("rid");
    let resp = app
        .client
        .post(app.url("/users"))
        .header("x-request-id", &rid)
        .json(&json!({"username": marker, "email": format!("{marker}@example.com")}))
        .send()
        .await
        .expect("POST");
    db().await
        .batch_execute(&format!("DROP TRIGGER fail_{marker} ON users"))
        .await
        .expect("drop trigger");
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers()["x-request-id"], rid.as_str());
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body, json!({"error": "internal error"}));
    let lines = log_lines_with(&rid);
    let line = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no error line for {rid}: {lines:?}"));
    assert_eq!(line["fields"]["route"], "/users");
    assert!(
        line["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("injected failure")),
        "{line}"
    );
}

/// Issue #15: while PostgreSQL is away, a redirect whose target is known keeps being
/// served past its TTL (stale-if-error), counted; an unknown code is a 503, not 404.
#[tokio::test]
async fn known_redirects_are_served_stale_while_postgresql_is_away() {
    let proxy = PgProxy::start(database_port()).await;
    let mut cfg = test_config();
    cfg.database_url = Some(proxy.database_url().into());
    cfg.near_cache_ttl_ms = 1; // every near-cache entry is already expired
    cfg.database_pool_timeout_ms = 300;
    let app = spawn_app_with(cfg).await;
    let url = app.create_url().await;
    let (code, target) = (
        url["short_code"].as_str().expect("code").to_owned(),
        url["original_url"].as_str().expect("target").to_owned(),
    );
    let resp = app.get(&format!("/{code}")).await;
    assert_eq!(location(&resp).as_deref(), Some(target.as_str()));
    // Valkey's fresh entry gone too (as after its TTL); the long-lived copy stays.
    let mut conn = redis::Client::open(redis_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let prefix = &app.state.cfg.cache_key_prefix;
    eventually("the stale copy is written", Duration::from_secs(5), || {
        let mut conn = conn.clone();
        let key = format!("{prefix}code-stale:{code}");
        async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap_or(0)
                == 1
        }
    })
    .await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}code:{code}"))
        .query_async(&mut conn)
        .await
        .expect("DEL");

    proxy.set(Mode::Refuse);
    for _ in 0..3 {
        let resp = app.get(&format!("/{code}")).await;
        assert_eq!(resp.status(), 302, "a known target is served stale");
        assert_eq!(location(&resp).as_deref(), Some(target.as_str()));
    }
    let unknown = app.get(&format!("/{}", unique_code())).await;
    assert_eq!(
        unknown.status(),
        503,
        "an unknown code cannot be answered: 503, not 404"
    );
    assert!(unknown.headers().contains_key("retry-after"));
    let write = app
        .post_json(
            "/users",
            &json!({"username": "x", "email": format!("{}@example.com", unique("w"))}),
        )
        .await;
    assert_eq!(write.status(), 503, "writes fail fast with 503");
    proxy.set(Mode::Pass);
}

/// Issue #15: readiness compares a replica with its peers. A replica that cannot
/// reach PostgreSQL while another can leaves the Service (after the grace period);
/// when none can, all stay ready (see the test above and docs/adr/0002-readiness.md).
#[tokio::test]
async fn a_replica_cut_off_from_postgresql_alone_turns_unready() {
    let proxy = PgProxy::start(database_port()).await;
    let mut shared = test_config();
    // Peers find each other under one prefix: a fresh one for this test alone.
    shared.cache_key_prefix = unique("ready:");
    shared.ready_db_grace_seconds = 0;
    let mut cut_cfg = shared.clone();
    cut_cfg.database_url = Some(proxy.database_url().into());
    let cut = spawn_app_with(cut_cfg).await;
    let healthy = spawn_app_with(shared).await;
    proxy.set(Mode::Refuse);
    let ready = |app: &TestApp| {
        let (client, url) = (app.client.clone(), app.url("/ready"));
        async move {
            let resp = client.get(&url).send().await.expect("GET /ready");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("JSON"))
        }
    };
    eventually(
        "the cut-off replica turns unready",
        Duration::from_secs(10),
        || async {
            let (status, body) = ready(&cut).await;
            status == 503 && body["postgres"] == "down" && body["peers_with_postgres"] == 1
        },
    )
    .await;
    let (status, body) = ready(&healthy).await;
    assert_eq!(status, 200, "{body}");
    // PostgreSQL gone for the peer too: the cut-off replica is no worse off; ready again.
    drop(healthy);
    eventually(
        "ready again once no peer reaches PostgreSQL",
        Duration::from_secs(15),
        || async { ready(&cut).await.0 == 200 },
    )
    .await;
    proxy.set(Mode::Pass);
}

/// Issue #15: lag-tolerant reads (lists, events, analytics) go to DATABASE_RO_URL;
/// when the replica cannot be reached they fall back to the primary; reads of a
/// just-written entity stay on the primary.
#[tokio::test]
async fn lists_read_the_replica_and_fall_back_to_the_primary() {
    let replica = PgProxy::start(database_port()).await;
    let mut cfg = test_config();
    cfg.database_ro_url = Some(replica.database_url().into());
    cfg.cache_enabled = false; // every read reaches a database
    let app = spawn_app_with(cfg).await;
    let reads = |target: &'static str| {
        let app = &app;
        async move {
            let text = app.get("/metrics").await.text().await.expect("metrics");
            text.lines()
                .filter(|l| {
                    l.starts_with("db_reads_total{") && l.contains(&format!("target=\"{target}\""))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        }
    };
    let user = app.create_user().await;
    let id = user["id"].as_i64().expect("id");
    // Read-your-write: the entity itself comes from the primary, at once.
    assert_eq!(app.get(&format!("/users/{id}")).await.status(), 200);
    let before = reads("replica").await;
    assert_eq!(app.get("/urls?page=1").await.status(), 200);
    assert_eq!(
        app.get(&format!("/events?user_id={id}")).await.status(),
        200
    );
    assert!(
        reads("replica").await >= before + 2.0,
        "lists read the replica"
    );
    replica.set(Mode::Refuse);
    let fallback = reads("primary_fallback").await;
    let resp = app.get(&format!("/events?user_id={id}")).await;
    assert_eq!(
        resp.status(),
        200,
        "the primary answers when the replica cannot"
    );
    assert!(reads("primary_fallback").await > fallback);
    replica.set(Mode::Pass);
}

/// Issue #15: a PostgreSQL failover is followed without a restart. The URL names
/// two hosts (`target_session_attrs=read-write`, as a CloudNativePG primary and its
/// standby); the first goes away and the second becomes the primary: broken pooled
/// connections are dropped, new ones reach the second host, and meanwhile writes
/// fail only with 503.
#[tokio::test]
async fn a_primary_switch_is_followed_without_a_restart() {
    let first = PgProxy::start(database_port()).await;
    let second = PgProxy::start(database_port()).await;
    second.set(Mode::Refuse); // not the primary yet
    let db_url = first.database_url();
    let (head, tail) = db_url
        .split_once(&format!(":{}/", first.port))
        .expect("a url with the proxy's port");
    let mut cfg = test_config();
    cfg.database_url = Some(
        format!(
            "{head}:{},127.0.0.1:{}/{tail}?target_session_attrs=read-write",
            first.port, second.port
        )
        .into(),
    );
    cfg.database_pool_timeout_ms = 500;
    cfg.database_connect_timeout_ms = 500;
    let app = spawn_app_with(cfg).await;
    let new_user = || {
        let name = unique("fo");
        json!({"username": name, "email": format!("{name}@example.com")})
    };
    assert_eq!(app.post_json("/users", &new_user()).await.status(), 201);

    // Failover: the old primary is gone, the standby is promoted.
    first.set(Mode::Refuse);
    second.set(Mode::Pass);
    let statuses = std::sync::Mutex::new(Vec::new());
    eventually(
        "writes succeed on the new primary",
        Duration::from_secs(10),
        || async {
            let status = app.post_json("/users", &new_user()).await.status().as_u16();
            statuses.lock().expect("lock").push(status);
            status == 201
        },
    )
    .await;
    let statuses = statuses.into_inner().expect("lock");
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 503),
        "only 503 while the primary was away: {statuses:?}"
    );
    // And it stays on the new primary.
    for _ in 0..5 {
        assert_eq!(app.post_json("/users", &new_user()).await.status(), 201);
    }
}

/// Issue #11 (found by the chaos run): a click flush that fails, its COMMIT's fate
/// unknown, is kept and retried under its batch id, not counted as dropped: once
/// PostgreSQL is back, the stats equal the redirects served, exactly.
#[tokio::test]
async fn clicks_of_a_failed_flush_are_written_once_postgresql_is_back() {
    let proxy = PgProxy::start(database_port()).await;
    let mut cfg = test_config();
    cfg.database_url = Some(proxy.database_url().into());
    cfg.database_pool_timeout_ms = 200;
    // One readiness check at start, then none: every refused connection below is
    // the click writer's.
    cfg.health_check_interval_ms = 600_000;
    let app = spawn_app_with(cfg).await;
    let url = app.create_url().await;
    let (id, code, target) = (
        url["id"].as_i64().expect("id"),
        url["short_code"].as_str().expect("code").to_owned(),
        url["original_url"].as_str().expect("target").to_owned(),
    );
    // Every GET is a click: count the warm-up ones too.
    let mut clicks = 0;
    loop {
        let r = app.get(&format!("/{code}")).await;
        assert_eq!(location(&r).as_deref(), Some(target.as_str()));
        clicks += 1;
        if app.state.links.near().and_then(|n| n.get(&code)).is_some() {
            break;
        }
        assert!(clicks < 1000, "the near cache never filled");
    }
    let stats = |app: &TestApp| {
        let (client, url) = (app.client.clone(), app.url(&format!("/urls/{id}/stats")));
        async move {
            let r = client.get(&url).send().await.expect("stats");
            r.json::<Value>().await.expect("JSON")["clicks"].as_i64()
        }
    };
    proxy.set(Mode::Refuse);
    for _ in 0..25 {
        assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
    }
    // Past the writer's three attempts at that flush, and a later one's.
    proxy.connections_refused(4).await;
    proxy.set(Mode::Pass);
    let mut cfg = test_config();
    cfg.cache_enabled = false; // exact, uncached stats
    let observer = spawn_app_with(cfg).await;
    eventually(
        "every click counted once",
        Duration::from_secs(15),
        || async { stats(&observer).await == Some(clicks + 25) },
    )
    .await;
}
