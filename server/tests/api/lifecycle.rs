//! Tests: probes, PostgreSQL being away, graceful shutdown, and `/metrics`.
use crate::helpers::*;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads a raw HTTP/1.1 response up to EOF; returns (status, body as JSON).
async fn read_raw_response(mut stream: TcpStream) -> (u16, Value) {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .expect("read");
    let text = String::from_utf8(buf).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a full response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // One chunk is all these small bodies need.
        body.split_once("\r\n")
            .map(|(_, rest)| rest.rsplit_once("\r\n0\r\n").map_or(rest, |(b, _)| b))
            .unwrap_or_default()
    } else {
        body
    };
    (status, serde_json::from_str(body).expect("JSON body"))
}

async fn refuses_connections(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_err()
}

#[tokio::test]
async fn health_is_200_ok() {
    let app = spawn_app().await;
    let resp = app.get("/health").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        resp.json::<Value>().await.expect("JSON"),
        json!({"status": "ok"})
    );
}

#[tokio::test]
async fn ready_is_200_and_reports_postgres_and_valkey_ok() {
    let app = spawn_app().await;
    let (client, url) = (app.client.clone(), app.url("/ready"));
    // Valkey connects in the background; readiness does not wait for it.
    eventually("valkey ok in /ready", Duration::from_secs(10), || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let resp = client.get(&url).send().await.expect("GET /ready");
            assert_eq!(resp.status(), 200);
            let body: Value = resp.json().await.expect("JSON");
            assert_eq!(body["status"], "ok", "{body}");
            assert_eq!(body["postgres"], "ok", "{body}");
            body["valkey"] == "ok"
        }
    })
    .await;
    let resp = app.get("/ready").await;
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["postgres"], "ok");
    assert_eq!(body["valkey"], "ok");
    assert!(body["peers_with_postgres"].is_u64(), "{body}");
    assert!(body.get("reason").is_none(), "{body}");
}

#[tokio::test]
async fn with_postgres_unreachable_health_is_200_and_requests_get_a_quick_503() {
    let mut cfg = test_config();
    cfg.database_url = Some(format!("postgres://postgres@127.0.0.1:{}/x", free_port()).into());
    // Nothing cached by other apps may answer for this one.
    cfg.cache_key_prefix = format!("{}:", unique("nodb"));
    let app = spawn_app_unready(cfg).await;

    let resp = app.get("/health").await;
    assert_eq!(resp.status(), 200);

    let user_body = json!({"username": "x", "email": format!("{}@example.com", unique("nodb"))});
    for (method, path) in [
        ("GET", "/users/1"),
        ("GET", "/users"),
        ("GET", "/urls?page=1"),
        ("GET", "/events"),
        ("GET", "/urls/1"),
        ("GET", "/abcdef"),
        ("POST", "/users"),
    ] {
        let start = Instant::now();
        let resp = match method {
            "POST" => app.post_json(path, &user_body).await,
            _ => app.get(path).await,
        };
        let took = start.elapsed();
        assert_eq!(resp.status(), 503, "{method} {path}");
        assert!(
            took < Duration::from_secs(3),
            "{method} {path} took {took:?}"
        );
        assert_eq!(
            resp.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        let err: Value = resp.json().await.expect("JSON");
        assert!(err["error"].is_string(), "{method} {path}: {err}");
    }

    // The background check notices too. With no replica reaching PostgreSQL, this
    // one stays ready (docs/adr/0002-readiness.md): it serves what it can, and its
    // 503s stay in its own metrics.
    let (client, url) = (app.client.clone(), app.url("/ready"));
    eventually(
        "ready reports postgres down",
        Duration::from_secs(10),
        || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let resp = client.get(&url).send().await.expect("GET /ready");
                let status = resp.status();
                let body: Value = resp.json().await.expect("JSON");
                body["postgres"] == "down" && status == 200 && body["peers_with_postgres"] == 0
            }
        },
    )
    .await;
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn graceful_shutdown_flushes_queued_redirect_events() {
    let mut cfg = test_config();
    // Only the shutdown flush can write within this test.
    cfg.clicks_flush_interval_ms = 60_000;
    cfg.clicks_breakdown_flush_interval_ms = 60_000;
    let app = spawn_app_with(cfg).await;
    let url = app.create_url().await;
    let (id, code) = (
        url["id"].as_i64().expect("id"),
        url["short_code"].as_str().expect("code").to_owned(),
    );
    const N: i64 = 37;
    for i in 0..N {
        let path = if i % 2 == 0 {
            format!("/{code}")
        } else {
            format!("/urls/{code}/redirect")
        };
        assert_eq!(app.get(&path).await.status(), 302);
    }
    let db = db().await;
    let count = || async {
        db.query_one("SELECT count(*) FROM clicks WHERE url_id = $1", &[&id])
            .await
            .expect("count")
            .get::<_, i64>(0)
    };
    assert_eq!(count().await, 0, "still queued before shutdown");
    let addr = app.addr;
    app.shutdown().await.expect("shutdown returns Ok");
    assert_eq!(count().await, N, "every queued click was written");
    let counted: i64 = db
        .query_one(
            "SELECT coalesce(sum(clicks), 0)::int8 FROM click_link_hourly WHERE url_id = $1",
            &[&id],
        )
        .await
        .expect("rollup")
        .get(0);
    assert_eq!(counted, N, "and counted in the rollups");
    assert!(refuses_connections(addr).await, "the port is closed");
}

#[tokio::test]
async fn shutdown_turns_ready_503_lets_in_flight_requests_finish_and_closes_the_port() {
    let mut app = spawn_app().await;
    let addr = app.addr;

    // Two connections opened before the shutdown: one will ask /ready, the other is
    // mid-request (headers sent, body not finished) when the shutdown begins.
    let mut ready_conn = TcpStream::connect(addr).await.expect("connect");
    ready_conn
        .write_all(b"GET /ready HTTP/1.1\r\nHost: test\r\n")
        .await
        .expect("write");
    let email = format!("{}@example.com", unique("inflight"));
    let body = format!(r#"{{"username":"inflight","email":"{email}"}}"#);
    let (first, rest) = body.split_at(10);
    let mut slow_conn = TcpStream::connect(addr).await.expect("connect");
    slow_conn
        .write_all(
            format!(
                "POST /users HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{first}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    // The accept queue is FIFO: once a later connection has been answered, both of
    // the above have been accepted.
    let resp = http_client()
        .get(app.url("/health"))
        .send()
        .await
        .expect("GET /health");
    assert_eq!(resp.status(), 200);
    drop(resp);

    let run = app.begin_shutdown();
    eventually("listener closed", Duration::from_secs(10), || {
        refuses_connections(addr)
    })
    .await;

    ready_conn.write_all(b"\r\n").await.expect("finish head");
    let (status, ready) = read_raw_response(ready_conn).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "error", "{ready}");
    assert!(ready["reason"].is_string(), "{ready}");

    slow_conn
        .write_all(rest.as_bytes())
        .await
        .expect("finish body");
    let (status, user) = read_raw_response(slow_conn).await;
    assert_eq!(status, 201, "the in-flight request finished: {user}");
    assert_eq!(user["email"], email.as_str());

    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run returns")
        .expect("run task")
        .expect("run returns Ok");
    assert!(refuses_connections(addr).await);
    let n: i64 = db()
        .await
        .query_one("SELECT count(*) FROM users WHERE email = $1", &[&email])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1, "the in-flight write committed");
}

#[tokio::test]
async fn after_shutdown_the_port_refuses_connections() {
    let app = spawn_app().await;
    let addr = app.addr;
    assert_eq!(app.get("/health").await.status(), 200);
    app.shutdown().await.expect("shutdown returns Ok");
    assert!(refuses_connections(addr).await);
}

/// One exposition line for `name` carrying every one of `labels` (any order).
fn has_series(text: &str, name: &str, labels: &[&str]) -> bool {
    text.lines().any(|l| {
        l.strip_prefix(name).is_some_and(|rest| {
            (rest.starts_with('{') || rest.starts_with(' '))
                && labels.iter().all(|want| rest.contains(want))
        })
    })
}

#[tokio::test]
async fn metrics_expose_every_documented_series() {
    let app = spawn_app().await;
    // Exercise what only appears after use: a found, an unknown and an inactive
    // redirect, cache lookups, a user by id, and a written redirect event.
    let url = app.create_url().await;
    let (id, code) = (
        url["id"].as_i64().expect("id"),
        url["short_code"].as_str().expect("code").to_owned(),
    );
    assert_eq!(
        app.get(&format!("/users/{}", url["user_id"]))
            .await
            .status(),
        200
    );
    assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
    assert_eq!(app.get(&format!("/{}", unique_code())).await.status(), 404);
    let db = db().await;
    eventually(
        "redirect event written",
        Duration::from_secs(10),
        || async {
            db.query_one("SELECT count(*) FROM clicks WHERE url_id = $1", &[&id])
                .await
                .expect("count")
                .get::<_, i64>(0)
                > 0
        },
    )
    .await;
    let resp = app
        .put_json(&format!("/urls/{id}"), &json!({"is_active": false}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.get(&format!("/{code}")).await.status(), 404);

    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = resp.text().await.expect("text");
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/metrics-sample.txt");
    std::fs::write(sample, &text).expect("write the metrics sample");

    assert!(
        has_series(
            &text,
            "http_server_request_duration_seconds_bucket",
            &[
                "http_request_method=\"GET\"",
                "http_route=\"/users/{id}\"",
                "http_response_status_code=\"200\"",
                "le=\"2\"",
            ]
        ),
        "duration histogram with its labels and a 2 s bucket"
    );
    for le in ["0.001", "0.005", "0.025", "0.1", "0.5", "1", "2", "5"] {
        assert!(
            has_series(
                &text,
                "http_server_request_duration_seconds_bucket",
                &[&format!("le=\"{le}\"")]
            ),
            "bucket edge {le}"
        );
    }
    assert!(has_series(
        &text,
        "http_server_request_duration_seconds_count",
        &[
            "http_route=\"/{code}\"",
            "http_response_status_code=\"302\""
        ]
    ));
    // Route templates only, never raw paths.
    for l in text.lines().filter(|l| l.contains("http_route=")) {
        let route = l
            .split("http_route=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        assert!(
            !route.chars().any(|c| c.is_ascii_digit()) && !route.contains(code.as_str()),
            "raw path in a route label: {l}"
        );
    }
    for (name, labels) in [
        ("http_server_requests_in_flight", &[][..]),
        ("cache_operations_total", &["result=\"hit\""][..]),
        ("cache_operations_total", &["result=\"miss\""][..]),
        ("db_pool_connections", &["state=\"idle\""][..]),
        ("db_pool_connections", &["state=\"in_use\""][..]),
        ("db_pool_wait_seconds_bucket", &[][..]),
        ("db_pool_wait_seconds_count", &[][..]),
        ("redirects_total", &["result=\"found\""][..]),
        ("redirects_total", &["result=\"not_found\""][..]),
        ("redirects_total", &["result=\"inactive\""][..]),
        ("events_written_total", &["event_type=\"created\""][..]),
        ("clicks_recorded_total", &["bot=\"false\""][..]),
        ("clicks_dropped_total", &[][..]),
        ("click_queue_depth", &[][..]),
        ("click_flush_duration_seconds_bucket", &[][..]),
        ("http_server_requests_cancelled_total", &[][..]),
        ("process_cpu_seconds_total", &[][..]),
        ("process_resident_memory_bytes", &[][..]),
        ("process_open_fds", &[][..]),
        ("process_start_time_seconds", &[][..]),
        ("build_info", &["version=\""][..]),
    ] {
        assert!(has_series(&text, name, labels), "{name} {labels:?}");
    }
}

#[tokio::test]
async fn with_a_metrics_port_metrics_move_off_the_api_port() {
    let mut cfg = test_config();
    cfg.metrics_port = Some(0);
    let app = spawn_app_with(cfg).await;
    let maddr = app.metrics_addr.expect("metrics bound");
    assert_ne!(maddr.port(), 0);
    assert_ne!(maddr, app.addr);

    let resp = app
        .client
        .get(format!("http://{maddr}/metrics"))
        .send()
        .await
        .expect("GET metrics");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("text");
    assert!(has_series(&text, "build_info", &[]), "{text}");

    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let resp = app
        .client
        .get(format!("http://{maddr}/users"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 404, "the metrics port serves nothing else");
}

#[tokio::test]
async fn every_response_carries_a_request_id_echoed_or_fresh() {
    let app = spawn_app().await;
    let echoed = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .expect("GET /health");
    assert_eq!(echoed.headers()["x-request-id"], "trace-42");

    // Without one (or with an empty one), each response gets its own `{pid:08x}-{seq:x}`.
    let mut seen = std::collections::HashSet::new();
    for i in 0..20 {
        let mut req = app.client.get(app.url("/no/such/route/here"));
        if i % 2 == 0 {
            req = req.header("x-request-id", "");
        }
        let resp = req.send().await.expect("GET");
        let id = resp.headers()["x-request-id"]
            .to_str()
            .expect("ASCII id")
            .to_owned();
        let (pid, seq) = id.split_once('-').expect("pid-seq");
        assert_eq!(pid, format!("{:08x}", std::process::id()), "{id}");
        assert!(
            !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(seen.insert(id.clone()), "request id {id} repeated");
    }
}
