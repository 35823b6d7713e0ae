//! Tests: limits on how long a request may hold the database or the connection, and
//! how PostgreSQL's transient failures reach the client. A statement past
//! DATABASE_STATEMENT_TIMEOUT_MS is a 503 with `Retry-After`; a body that stops
//! arriving is a 408 after BODY_READ_TIMEOUT_SECONDS; serialization failures,
//! deadlocks and cancels are 503s worth retrying (and `db::retry_once` retries them
//! once); bad input PostgreSQL catches is a 422; anything else stays a 500.
//!
//! Needs `Config::database_statement_timeout_ms`, `Config::body_read_timeout_seconds`
//! and `shortener::db::retry_once`: register it in `main.rs` (`mod limits;`) with them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

// === Helpers of this file ===

/// Makes PostgreSQL itself fail with `sqlstate`, and returns that error as the
/// service's `Error`.
async fn raised(client: &tokio_postgres::Client, sqlstate: &str) -> shortener::error::Error {
    // The SQLSTATE is one of this file's constants, never input.
    let sql = format!(
        "DO $$ BEGIN RAISE EXCEPTION 'raised by a test' USING ERRCODE = '{sqlstate}'; END $$"
    );
    let err = client
        .batch_execute(&sql)
        .await
        .expect_err("RAISE EXCEPTION succeeded");
    assert_eq!(err.code().map(|c| c.code()), Some(sqlstate), "{err:?}");
    err.into()
}

/// A real 22P02 (invalid_text_representation) from PostgreSQL.
async fn invalid_text(client: &tokio_postgres::Client) -> shortener::error::Error {
    let err = client
        .batch_execute("SELECT 'abc'::int")
        .await
        .expect_err("'abc'::int parsed");
    assert_eq!(err.code().map(|c| c.code()), Some("22P02"), "{err:?}");
    err.into()
}

/// Reads an HTTP/1.1 answer until the peer closes or its Content-Length is in.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0_u8; 4096];
    // An error (a reset after the answer) ends the answer like a close does.
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            });
            if len.is_some_and(|len| body.len() >= len) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

// === Statement timeout ===

#[tokio::test]
async fn a_write_blocked_past_the_statement_timeout_is_a_503_with_retry_after_and_writes_nothing() {
    let mut cfg = test_config();
    cfg.database_statement_timeout_ms = 300;
    let app = spawn_app_with(cfg).await;
    let url = app.create_url().await;
    let id = url["id"].as_i64().expect("id");
    let path = format!("/urls/{id}");
    let title = unique("blocked");

    // Hold the row's lock in a transaction of our own: the app's UPDATE must wait for
    // it, and give up at the statement timeout.
    let mut locker = db().await;
    let tx = locker.transaction().await.expect("BEGIN");
    tx.query_one("SELECT id FROM urls WHERE id = $1 FOR UPDATE", &[&id])
        .await
        .expect("lock the url row");

    let start = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(3),
        app.put_json(&path, &json!({"title": title})),
    )
    .await
    .unwrap_or_else(|_| panic!("PUT while the row is locked: no answer within 3 s"));
    let took = start.elapsed();
    assert_eq!(resp.status(), 503, "PUT while the row is locked");
    assert!(
        resp.headers().contains_key("retry-after"),
        "no Retry-After: {:?}",
        resp.headers()
    );
    let v: Value = resp.json().await.expect("JSON body");
    assert!(v["error"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    assert!(took < Duration::from_secs(3), "the 503 took {took:?}");

    let check = db().await;
    let stored: String = check
        .query_one("SELECT title FROM urls WHERE id = $1", &[&id])
        .await
        .expect("url row")
        .get(0);
    assert_eq!(stored, url["title"].as_str().expect("title"));
    let updated: i64 = check
        .query_one(
            "SELECT count(*) FROM events WHERE url_id = $1 AND event_type = 'updated'",
            &[&id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        updated, 0,
        "an updated event was written for a failed update"
    );

    tx.rollback().await.expect("ROLLBACK");
    let resp = app.put_json(&path, &json!({"title": title})).await;
    assert_eq!(resp.status(), 200, "the same PUT once the lock is gone");
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(v["title"], title.as_str());
}

// === Body read timeout ===

#[tokio::test]
async fn a_body_that_stops_arriving_is_a_408_json_error() {
    let mut cfg = test_config();
    cfg.body_read_timeout_seconds = 1;
    let app = spawn_app_with(cfg).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"username\":",
        )
        .await
        .expect("send the head and a bit of the body");
    stream.flush().await.expect("flush");

    let start = Instant::now();
    let text = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut stream))
        .await
        .unwrap_or_else(|_| panic!("no answer within 5 s"));
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    assert_eq!(status, 408, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{text}"
    );
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(v["error"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    eprintln!("408 after {:?}", start.elapsed());
}

// === SQLSTATE mapping ===

#[tokio::test]
async fn serialization_failures_deadlocks_and_cancels_are_503s_with_retry_after() {
    let client = db().await;
    for sqlstate in ["40001", "40P01", "57014"] {
        let e = raised(&client, sqlstate).await;
        assert_eq!(e.status(), 503, "{sqlstate}: {e:?}");
        let resp = e.into_response();
        assert!(
            resp.headers().contains_key("retry-after"),
            "{sqlstate}: no Retry-After in {:?}",
            resp.headers()
        );
    }
}

#[tokio::test]
async fn invalid_text_representation_is_a_422() {
    let client = db().await;
    let e = invalid_text(&client).await;
    assert_eq!(e.status(), 422, "{e:?}");
}

#[tokio::test]
async fn any_other_database_error_is_a_500() {
    let client = db().await;
    let e = raised(&client, "XX000").await;
    assert_eq!(e.status(), 500, "{e:?}");
    let resp = e.into_response();
    assert!(!resp.headers().contains_key("retry-after"));
}

// === retry_once ===

#[tokio::test]
async fn retry_once_retries_a_serialization_failure_and_returns_the_second_answer() {
    let client = db().await;
    let client = &client;
    let calls = AtomicUsize::new(0);
    let calls = &calls;
    let got = shortener::db::retry_once(|| async move {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(raised(client, "40001").await)
        } else {
            Ok(42)
        }
    })
    .await;
    assert_eq!(got.ok(), Some(42));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_once_gives_up_after_the_second_serialization_failure() {
    let client = db().await;
    let client = &client;
    let calls = AtomicUsize::new(0);
    let calls = &calls;
    let got: shortener::error::Result<i32> = shortener::db::retry_once(|| async move {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(raised(client, "40001").await)
    })
    .await;
    let e = got.expect_err("two serialization failures");
    assert_eq!(e.status(), 503, "{e:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_once_does_not_retry_an_error_that_would_fail_again() {
    let client = db().await;
    let client = &client;
    let calls = AtomicUsize::new(0);
    let calls = &calls;
    let got: shortener::error::Result<i32> = shortener::db::retry_once(|| async move {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(invalid_text(client).await)
    })
    .await;
    let e = got.expect_err("invalid text");
    assert_eq!(e.status(), 422, "{e:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
