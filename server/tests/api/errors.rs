//! Tests: bad input everywhere. Unparseable bodies (400), wrong shapes and types (422),
//! oversized bodies (413), unknown routes (404), wrong methods (405 with `Allow`): all
//! JSON with an `error`, and none of them writes anything. Field-level validation of
//! each resource lives with its resource (`users`, `urls`, `events`).

use serde_json::{json, Value};

use crate::helpers::*;

// === Helpers of this file ===

async fn send(app: &TestApp, method: &str, path: &str) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    app.client
        .request(method, app.url(path))
        .send()
        .await
        .expect("request")
}

async fn count(sql: &str, param: &(dyn tokio_postgres::types::ToSql + Sync)) -> i64 {
    db().await
        .query_one(sql, &[param])
        .await
        .expect("count")
        .get(0)
}

// === Unparseable and misshapen bodies ===

#[tokio::test]
async fn malformed_json_is_a_400_json_error() {
    let app = spawn_app().await;
    for path in ["/users", "/urls", "/events", "/users/1", "/urls/1"] {
        let method = if path.ends_with('1') { "PUT" } else { "POST" };
        let resp = app
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                app.url(path),
            )
            .header("content-type", "application/json")
            .body(r#"{"username": "a", "#)
            .send()
            .await
            .expect("request");
        // PUT on an unknown id may well be answered 404 before the body is read.
        let status = resp.status().as_u16();
        assert!(
            status == 400 || (method == "PUT" && status == 404),
            "{method} {path}: {status}"
        );
        error_body(resp, status).await;
    }
    let resp = app
        .post_raw("/users", "application/json", r#"{"username": "a", "#)
        .await;
    error_body(resp, 400).await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_400() {
    let app = spawn_app().await;
    for (ct, body) in [
        ("text/plain", "hello"),
        (
            "application/x-www-form-urlencoded",
            "username=a&email=a%40b.co",
        ),
        ("application/json", ""),
        ("application/json", "   "),
        ("application/json", "{'single': 'quotes'}"),
    ] {
        error_body(app.post_raw("/users", ct, body).await, 400).await;
    }
    let resp = app
        .post_raw("/users", "application/json", vec![0xff_u8, 0xfe, 0x00])
        .await;
    error_body(resp, 400).await;
}

#[tokio::test]
async fn json_that_is_not_an_object_is_a_422() {
    let app = spawn_app().await;
    for body in [
        json!([1, 2]),
        json!([]),
        json!("text"),
        json!(5),
        json!(null),
    ] {
        for path in ["/users", "/urls", "/events"] {
            invalid_field(app.post_json(path, &body).await, "body").await;
        }
    }
}

#[tokio::test]
async fn wrong_types_are_a_422_naming_the_field() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let reason = invalid_field(
        app.post_json(
            "/urls",
            &json!({"user_id": user["id"].to_string(), "original_url": "https://example.com"}),
        )
        .await,
        "user_id",
    )
    .await;
    assert!(reason.contains("integer"), "{reason}");
    invalid_field(
        app.post_json(
            "/urls",
            &json!({"user_id": user["id"], "original_url": ["https://example.com"]}),
        )
        .await,
        "original_url",
    )
    .await;
    invalid_field(
        app.post_json("/users", &json!({"username": {"a": 1}, "email": "a@b.co"}))
            .await,
        "username",
    )
    .await;
    let url = app.create_url().await;
    invalid_field(
        app.put_json(
            &format!("/urls/{}", url["id"]),
            &json!({"is_active": "false"}),
        )
        .await,
        "is_active",
    )
    .await;
}

#[tokio::test]
async fn a_body_over_1_mib_is_a_413_json_error() {
    let app = spawn_app().await;
    let pad = "x".repeat(1_048_576);
    let body =
        serde_json::to_vec(&json!({"username": pad, "email": "big@example.com"})).expect("encode");
    assert!(body.len() > 1_048_576);
    let resp = app.post_raw("/users", "application/json", body).await;
    error_body(resp, 413).await;
    // Just under the limit is read (and then judged on its content).
    let pad = "x".repeat(1_000_000);
    let resp = app
        .post_json("/users", &json!({"username": pad, "email": "not-an-email"}))
        .await;
    invalid_field(resp, "email").await;
}

/// Sends `head` and then `body` as one chunked request on a raw connection, writing
/// while the answer is read (the server may answer before it has read everything).
/// Returns the status and the response's text.
async fn raw_chunked(app: &TestApp, head: &str, body: Vec<u8>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let head = head.to_owned();
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(64 * 1024) {
            wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            wr.write_all(chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"0\r\n\r\n").await?;
        wr.flush().await
    });
    let mut got = Vec::new();
    let mut buf = [0_u8; 8192];
    // Read until the peer closes, or an error (a reset after the answer is fine).
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if text_complete(&got) {
            break;
        }
    }
    writer.abort();
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    (status, text)
}

/// Whether a buffered HTTP/1.1 answer with a Content-Length is complete.
fn text_complete(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .is_some_and(|len| body.len() >= len)
}

#[tokio::test]
async fn a_chunked_body_over_1_mib_is_a_413_json_error() {
    let app = spawn_app().await;
    let head = "POST /users HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let mut body = br#"{"username": ""#.to_vec();
    body.extend(std::iter::repeat_n(b'x', 2 * 1_048_576));
    body.extend_from_slice(br#"", "email": "chunked@example.com"}"#);
    let (status, text) = raw_chunked(&app, head, body).await;
    assert_eq!(status, 413, "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("content-type: application/json"), "{text}");
    let json = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(v["error"].is_string(), "{v}");
}

// === Routes and methods ===

#[tokio::test]
async fn an_unknown_route_is_a_404_json_error() {
    let app = spawn_app().await;
    for path in [
        "/a/b/c/d",
        "/users/1/urls",
        "/urls/abc/redirect/extra",
        "/events/1",
        "/nope-no-such-code",
        "/has.dot",
        "/",
    ] {
        error_body(app.get(path).await, 404).await;
    }
}

#[tokio::test]
async fn a_wrong_method_is_a_405_with_an_allow_header() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        ("DELETE", "/users", "GET, POST"),
        ("PUT", "/users", "GET, POST"),
        ("PATCH", "/urls/1", "GET, PUT, DELETE"),
        ("POST", "/users/1", "GET, PUT, DELETE"),
        ("GET", "/users/bulk", "POST"),
        ("DELETE", "/urls", "GET, POST"),
        ("PUT", "/events", "GET, POST"),
        ("POST", "/health", "GET"),
        ("POST", "/ready", "GET"),
        ("POST", "/abc123", "GET, HEAD"),
        ("DELETE", "/urls/abc/redirect", "GET, HEAD"),
    ] {
        let resp = send(&app, method, path).await;
        let got = resp
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        assert_eq!(got.as_deref(), Some(allow), "{method} {path}");
        error_body(resp, 405).await;
    }
}

#[tokio::test]
async fn bad_ids_and_query_parameters_are_json_errors() {
    let app = spawn_app().await;
    for path in [
        "/users/abc",
        "/urls/abc",
        "/urls/99999999999999999999",
        "/users/-1",
        "/urls/0",
    ] {
        error_body(app.get(path).await, 404).await;
    }
    for (path, field) in [
        ("/urls?user_id=abc", "user_id"),
        ("/urls?is_active=maybe", "is_active"),
        ("/urls?page=0", "page"),
        ("/users?per_page=1001", "per_page"),
        ("/events?url_id=1.5", "url_id"),
    ] {
        invalid_field(app.get(path).await, field).await;
    }
}

#[tokio::test]
async fn every_error_response_is_json_with_an_error_message() {
    let app = spawn_app().await;
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (app.client.get(app.url("/users/0")), 404),
        (app.client.get(app.url("/zzzzzz-unknown")), 404),
        (app.client.delete(app.url("/urls/9223372036854775807")), 404),
        (
            app.client
                .put(app.url("/users/0"))
                .json(&json!({"username": "x"})),
            404,
        ),
        (app.client.post(app.url("/users")).json(&json!({})), 422),
        (app.client.post(app.url("/users")).body("{"), 400),
        (app.client.patch(app.url("/users")), 405),
        (
            app.client
                .post(app.url("/users/bulk"))
                .header("content-type", "text/csv")
                .body("x"),
            400,
        ),
    ];
    for (req, status) in cases {
        error_body(req.send().await.expect("request"), status).await;
    }
    // A HEAD answer has no body, but it is still labelled as the GET's would be.
    let resp = app.head("/zzzzzz-unknown").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/json");
}

// === Nothing half-written ===

#[tokio::test]
async fn create_url_for_an_unknown_user_writes_no_url_and_no_event() {
    let app = spawn_app().await;
    let code = unique_code();
    let target = format!("https://example.com/{}", unique("orphan"));
    let resp = app
        .post_json(
            "/urls",
            &json!({"user_id": i64::MAX, "original_url": target, "short_code": code}),
        )
        .await;
    error_body(resp, 404).await;
    assert_eq!(
        count("SELECT count(*) FROM urls WHERE short_code = $1", &code).await,
        0
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM events WHERE details->>'original_url' = $1",
            &target
        )
        .await,
        0
    );
    error_body(app.get(&format!("/{code}")).await, 404).await;
    let listed = app
        .get(&format!("/events?user_id={}", i64::MAX))
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn a_rejected_url_update_changes_nothing_and_logs_nothing() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let path = format!("/urls/{}", url["id"]);
    // One good field and one bad: the whole request is refused.
    let resp = app
        .put_json(
            &path,
            &json!({"title": "should not stick", "original_url": "javascript:alert(1)"}),
        )
        .await;
    invalid_field(resp, "original_url").await;
    let now = app.get(&path).await.json::<Value>().await.expect("json");
    assert_eq!(now["title"], url["title"]);
    let id = url["id"].as_i64().expect("id");
    assert_eq!(
        count(
            "SELECT count(*) FROM events WHERE url_id = $1 AND event_type = 'updated'",
            &id
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_duplicate_email_writes_no_user_and_no_event() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let name = unique("dupe");
    let resp = app
        .post_json("/users", &json!({"username": name, "email": user["email"]}))
        .await;
    error_body(resp, 409).await;
    assert_eq!(
        count("SELECT count(*) FROM users WHERE username = $1", &name).await,
        0
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM events WHERE details->>'username' = $1",
            &name
        )
        .await,
        0
    );
}
