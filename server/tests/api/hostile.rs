//! Tests: hostile input and limits against the existing API. NUL characters, which
//! PostgreSQL cannot store in `text` or `jsonb`, are a 422 naming the field and write
//! nothing; header bytes that are not UTF-8 do not cost a redirect its event; a
//! non-ASCII target goes out in its URI form; an absurd page is refused before it
//! reaches the database. Ordinary bad input lives in `errors`.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, REFERER, USER_AGENT};
use serde_json::{json, Value};

use crate::helpers::*;

// === Helpers of this file ===

async fn count(sql: &str, param: &(dyn tokio_postgres::types::ToSql + Sync)) -> i64 {
    db().await
        .query_one(sql, &[param])
        .await
        .expect("count")
        .get(0)
}

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().expect("integer id")
}

/// A user's row as stored: (username, email).
async fn user_row(id: i64) -> (String, String) {
    let row = db()
        .await
        .query_one("SELECT username, email FROM users WHERE id = $1", &[&id])
        .await
        .expect("user row");
    (row.get(0), row.get(1))
}

/// A URL's row as stored: title, target, active flag and last update, as text.
async fn url_row(id: i64) -> Vec<String> {
    let row = db()
        .await
        .query_one(
            "SELECT title, original_url, is_active::text, updated_at::text FROM urls WHERE id = $1",
            &[&id],
        )
        .await
        .expect("url row");
    (0..4).map(|i| row.get(i)).collect()
}

async fn post_bulk(app: &TestApp, csv: Vec<u8>) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(csv)
        .file_name("users.csv")
        .mime_str("text/csv")
        .expect("mime");
    app.client
        .post(app.url("/users/bulk"))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("POST /users/bulk")
}

// === NUL characters ===

#[tokio::test]
async fn create_user_with_nul_in_username_or_email_is_a_422_naming_the_field_and_writes_nothing() {
    let app = spawn_app().await;

    let name = unique("nuluser");
    let email = format!("{name}@example.com");
    let resp = app
        .post_json(
            "/users",
            &json!({"username": format!("{name}\u{0}x"), "email": email}),
        )
        .await;
    invalid_field(resp, "username").await;
    assert_eq!(
        count("SELECT count(*) FROM users WHERE email = $1", &email).await,
        0
    );

    let name = unique("nulmail");
    let resp = app
        .post_json(
            "/users",
            &json!({"username": name, "email": format!("{name}\u{0}@example.com")}),
        )
        .await;
    invalid_field(resp, "email").await;
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

#[tokio::test]
async fn update_user_with_nul_in_username_or_email_is_a_422_naming_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let id = id_of(&user);
    let path = format!("/users/{id}");
    let before = user_row(id).await;

    for (field, value) in [
        ("username", format!("{}\u{0}", before.0)),
        ("email", format!("nul\u{0}{}", before.1)),
    ] {
        let resp = app.put_json(&path, &json!({ field: value })).await;
        invalid_field(resp, field).await;
        assert_eq!(user_row(id).await, before, "after a NUL in {field}");
    }
    assert_eq!(
        count(
            "SELECT count(*) FROM events WHERE user_id = $1 AND event_type = 'user_updated'",
            &id
        )
        .await,
        0
    );
}

#[tokio::test]
async fn create_url_with_nul_in_title_is_a_422_naming_title_and_writes_nothing() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let code = unique_code();
    let target = format!("https://example.com/{}", unique("nultitle"));
    let resp = app
        .post_json(
            "/urls",
            &json!({
                "user_id": id_of(&user),
                "original_url": target,
                "title": "before\u{0}after",
                "short_code": code,
            }),
        )
        .await;
    invalid_field(resp, "title").await;
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
}

#[tokio::test]
async fn create_url_with_nul_in_original_url_is_a_422_naming_original_url_and_writes_nothing() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let code = unique_code();
    let resp = app
        .post_json(
            "/urls",
            &json!({
                "user_id": id_of(&user),
                "original_url": format!("https://example.com/{}\u{0}x", unique("nulurl")),
                "title": "t",
                "short_code": code,
            }),
        )
        .await;
    invalid_field(resp, "original_url").await;
    assert_eq!(
        count("SELECT count(*) FROM urls WHERE short_code = $1", &code).await,
        0
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM events WHERE details->>'short_code' = $1",
            &code
        )
        .await,
        0
    );
}

#[tokio::test]
async fn update_url_with_nul_in_title_is_a_422_naming_title_and_changes_nothing() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let id = id_of(&url);
    let before = url_row(id).await;
    let resp = app
        .put_json(&format!("/urls/{id}"), &json!({"title": "x\u{0}y"}))
        .await;
    invalid_field(resp, "title").await;
    assert_eq!(url_row(id).await, before);
    assert_eq!(
        count(
            "SELECT count(*) FROM events WHERE url_id = $1 AND event_type = 'updated'",
            &id
        )
        .await,
        0
    );
}

/// POSTs an event of a type no other test uses, with the given details; asserts a 422
/// naming `details` and that no event of that type was written.
async fn assert_event_details_refused(app: &TestApp, url: &Value, details: Value) {
    let event_type = unique("nulevent");
    let resp = app
        .post_json(
            "/events",
            &json!({
                "url_id": url["id"],
                "user_id": url["user_id"],
                "event_type": event_type,
                "details": details,
            }),
        )
        .await;
    invalid_field(resp, "details").await;
    assert_eq!(
        count(
            "SELECT count(*) FROM events WHERE event_type = $1",
            &event_type
        )
        .await,
        0,
        "an event was written for details {details}"
    );
}

#[tokio::test]
async fn create_event_with_nul_in_a_details_value_is_a_422_naming_details_and_writes_nothing() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    assert_event_details_refused(&app, &url, json!({"note": "a\u{0}b"})).await;
}

#[tokio::test]
async fn create_event_with_nul_in_a_details_key_is_a_422_naming_details_and_writes_nothing() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    assert_event_details_refused(&app, &url, json!({"no\u{0}te": "ab"})).await;
}

#[tokio::test]
async fn create_event_with_nul_nested_deep_in_details_is_a_422_naming_details_too() {
    // PostgreSQL refuses \u0000 anywhere in a jsonb value, so a check of the top level
    // only would leave these as 500s.
    let app = spawn_app().await;
    let url = app.create_url().await;
    assert_event_details_refused(&app, &url, json!({"a": {"b": ["ok", "x\u{0}"]}})).await;
    assert_event_details_refused(&app, &url, json!({"a": [{"k\u{0}": 1}]})).await;
}

#[tokio::test]
async fn bulk_import_with_nul_in_a_username_is_a_422_naming_file_and_imports_nothing() {
    let app = spawn_app().await;
    let name = unique("nulbulk");
    // Ids far above the sequence, as the bulk tests in `users` pick them.
    let id = rand::random_range(1_000_000_000..1_000_000_000_000_i64) * 1000 + 1;
    let mut csv = b"id,username,email,created_at\n".to_vec();
    csv.extend_from_slice(
        format!("{id},{name}\0x,{name}@example.com,2025-09-19 22:25:05\n").as_bytes(),
    );
    let resp = post_bulk(&app, csv).await;
    invalid_field(resp, "file").await;
    assert_eq!(
        count("SELECT count(*) FROM users WHERE id = $1", &id).await,
        0
    );
    let email = format!("{name}@example.com");
    assert_eq!(
        count("SELECT count(*) FROM users WHERE email = $1", &email).await,
        0
    );
}

// === Header bytes that are not UTF-8 ===

#[tokio::test]
async fn a_redirect_with_non_utf8_user_agent_and_referer_still_redirects_and_records_its_event() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let (id, code) = (id_of(&url), url["short_code"].as_str().expect("code"));
    let resp = app
        .client
        .get(app.url(&format!("/{code}")))
        .header(
            USER_AGENT,
            HeaderValue::from_bytes(b"Mozilla/5.0 \xff\xfe caf\xe9").expect("obs-text value"),
        )
        .header(
            REFERER,
            HeaderValue::from_bytes(b"https://r\xe9f.example/\xff").expect("obs-text value"),
        )
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 302);

    // Poll the table, not the API: an empty list page polled too early could stay
    // cached (list fills have no tombstone guard).
    let client = db().await;
    let client = &client;
    eventually(
        "the redirect event in the table",
        Duration::from_secs(10),
        || async move {
            client
                .query_one("SELECT count(*) FROM clicks WHERE url_id = $1", &[&id])
                .await
                .expect("count")
                .get::<_, i64>(0)
                >= 1
        },
    )
    .await;
    let resp = app
        .get(&format!("/events?url_id={id}&event_type=redirect"))
        .await;
    assert_eq!(resp.status(), 200);
    let list: Value = resp.json().await.expect("JSON");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 1, "{list:?}");
    let details = &list[0]["details"];
    assert_eq!(details["short_code"], code, "{details}");
    let agent = details["user_agent"]
        .as_str()
        .unwrap_or_else(|| panic!("no user_agent in the redirect event: {details}"));
    assert!(agent.contains("Mozilla/5.0"), "{agent:?}");
    let referrer = details["referrer"]
        .as_str()
        .unwrap_or_else(|| panic!("no referrer in the redirect event: {details}"));
    assert!(referrer.contains(".example/"), "{referrer:?}");
}

// === Location of non-ASCII targets ===

fn location_bytes(resp: &reqwest::Response) -> Vec<u8> {
    resp.headers()
        .get("location")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default()
}

/// GETs `path` (a redirect) until a cache answers it, asserting the `Location` of every
/// answer on the way (the first from PostgreSQL).
async fn assert_location(app: &TestApp, path: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), 302, "GET {path}");
        let got = location_bytes(&resp);
        let cache = resp
            .headers()
            .get("x-cache")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        assert!(
            got == want.as_bytes(),
            "GET {path} ({cache}): Location {:?}, want {want:?}",
            String::from_utf8_lossy(&got)
        );
        if cache == "HIT" {
            return;
        }
        assert!(Instant::now() < deadline, "GET {path} never answered HIT");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn location_of_a_non_ascii_target_is_its_uri_form_while_the_api_keeps_it_as_given() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let target = "https://bücher.example/straße?q=ü%20x&r=%E2%82%AC";
    let url = app.create_url_for(id_of(&user), target).await;
    assert_eq!(url["original_url"], target);
    let code = url["short_code"].as_str().expect("code");

    let want = "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%BC%20x&r=%E2%82%AC";
    assert_location(&app, &format!("/{code}"), want).await;
    assert_location(&app, &format!("/urls/{code}/redirect"), want).await;

    let got: Value = app
        .get(&format!("/urls/{}", id_of(&url)))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(got["original_url"], target);
}

#[tokio::test]
async fn location_of_an_ascii_target_is_sent_byte_for_byte() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    for target in [
        "HTTPS://Example.com/%7Euser/../x?q=a%20b",
        "https://example.com/a|b?c=%zz&d=[1]#frag",
    ] {
        let url = app.create_url_for(id_of(&user), target).await;
        let code = url["short_code"].as_str().expect("code");
        assert_location(&app, &format!("/{code}"), target).await;
    }
}

// === Absurd pages ===

#[tokio::test]
async fn an_absurd_page_is_a_fast_422_naming_page() {
    let app = spawn_app().await;
    for list in ["/events", "/urls", "/users"] {
        let path = format!("{list}?page=9999999&per_page=1000");
        let start = Instant::now();
        let resp = app.get(&path).await;
        let took = start.elapsed();
        invalid_field(resp, "page").await;
        assert!(took < Duration::from_secs(1), "{path} took {took:?}");
    }
}

#[tokio::test]
async fn a_page_offset_may_reach_1_000_000_but_not_more() {
    let app = spawn_app().await;
    for list in ["/events", "/urls", "/users"] {
        for query in ["page=1001&per_page=1000", "page=1000001&per_page=1"] {
            let path = format!("{list}?{query}");
            let resp = app.get(&path).await;
            assert_eq!(resp.status(), 200, "{path}");
        }
        for query in ["page=1002&per_page=1000", "page=1000002&per_page=1"] {
            let path = format!("{list}?{query}");
            let reason = invalid_field(app.get(&path).await, "page").await;
            assert!(!reason.is_empty(), "{path}");
        }
    }
}
