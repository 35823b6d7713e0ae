//! Tests: redirects on `/{code}` and `/urls/{code}/redirect`, GET and HEAD.
use crate::helpers::*;

use std::time::Duration;

use serde_json::{json, Value};

/// A target with a query string, percent-escapes and odd but legal characters, which a
/// URL parser would normalise (case, `..`, `%7e`) if the server re-serialised it.
const ODD_TARGET: &str =
    "https://Example.COM:8443/a/../b/%7Euser/~x|y?q=a%20b&r=%2F%2f&s=1|2~3&empty=&=v#Frag|~";

/// Creates a URL with a custom code for a fresh user; returns (id, code).
async fn link_to(app: &TestApp, target: &str) -> (i64, String) {
    let user = app.create_user().await;
    let code = unique_code();
    let resp = app
        .post_json(
            "/urls",
            &json!({"user_id": user["id"], "original_url": target, "short_code": code}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let url: Value = resp.json().await.expect("JSON");
    (url["id"].as_i64().expect("id"), code)
}

fn redirect_paths(code: &str) -> [String; 2] {
    [format!("/{code}"), format!("/urls/{code}/redirect")]
}

fn assert_redirects_to(resp: &reqwest::Response, target: &str, what: &str) {
    assert_eq!(resp.status(), 302, "{what}");
    assert_eq!(
        resp.headers()["location"].as_bytes(),
        target.as_bytes(),
        "{what}: Location byte for byte"
    );
    assert_eq!(
        resp.headers()["cache-control"],
        "private, max-age=0",
        "{what}"
    );
}

async fn assert_not_found_json(resp: reqwest::Response, what: &str) {
    assert_eq!(resp.status(), 404, "{what}");
    assert_eq!(resp.headers()["content-type"], "application/json", "{what}");
    let body: Value = resp.json().await.expect("JSON");
    assert!(body["error"].is_string(), "{what}: {body}");
}

/// Waits until the code's redirect is served from the cache.
async fn until_cached(app: &TestApp, code: &str) {
    let url = app.url(&format!("/{code}"));
    let client = app.client.clone();
    eventually("redirect cached", Duration::from_secs(10), || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .head(&url)
                .send()
                .await
                .is_ok_and(|r| r.headers().get("x-cache").is_some_and(|v| v == "HIT"))
        }
    })
    .await;
}

#[tokio::test]
async fn get_and_head_redirect_with_302_and_the_exact_location_on_both_paths() {
    let app = spawn_app().await;
    let (_, code) = link_to(&app, ODD_TARGET).await;
    for path in redirect_paths(&code) {
        let resp = app.get(&path).await;
        assert_redirects_to(&resp, ODD_TARGET, &format!("GET {path}"));
        let resp = app.head(&path).await;
        assert_redirects_to(&resp, ODD_TARGET, &format!("HEAD {path}"));
        assert!(resp.bytes().await.expect("body").is_empty());
    }
}

#[tokio::test]
async fn cached_redirects_keep_the_location_byte_for_byte() {
    let app = spawn_app().await;
    let (_, code) = link_to(&app, ODD_TARGET).await;
    until_cached(&app, &code).await;
    for path in redirect_paths(&code) {
        let resp = app.get(&path).await;
        assert_eq!(resp.headers()["x-cache"], "HIT", "{path}");
        assert_redirects_to(&resp, ODD_TARGET, &path);
    }
}

#[tokio::test]
async fn unknown_code_returns_404_json() {
    let app = spawn_app().await;
    let code = unique_code();
    for path in redirect_paths(&code) {
        assert_not_found_json(app.get(&path).await, &format!("GET {path}")).await;
        // Twice: the second answer may come from the cached "unknown".
        assert_not_found_json(app.get(&path).await, &format!("GET {path} again")).await;
        assert_eq!(app.head(&path).await.status(), 404, "HEAD {path}");
    }
}

#[tokio::test]
async fn implausible_codes_return_404_json() {
    let app = spawn_app().await;
    let too_long = "a".repeat(33);
    for path in [
        "/%20".to_owned(),
        format!("/{too_long}"),
        "/a.b".to_owned(),
        "/%7Eabc".to_owned(),
        format!("/urls/{too_long}/redirect"),
        "/urls/%20/redirect".to_owned(),
    ] {
        assert_not_found_json(app.get(&path).await, &path).await;
    }
}

#[tokio::test]
async fn inactive_code_returns_404_and_302_again_once_reactivated() {
    let app = spawn_app().await;
    let target = "https://example.com/inactive?x=1";
    let (id, code) = link_to(&app, target).await;
    let resp = app
        .put_json(&format!("/urls/{id}"), &json!({"is_active": false}))
        .await;
    assert_eq!(resp.status(), 200);
    for path in redirect_paths(&code) {
        assert_not_found_json(app.get(&path).await, &path).await;
        assert_eq!(app.head(&path).await.status(), 404, "HEAD {path}");
    }
    let resp = app
        .put_json(&format!("/urls/{id}"), &json!({"is_active": true}))
        .await;
    assert_eq!(resp.status(), 200);
    for path in redirect_paths(&code) {
        assert_redirects_to(&app.get(&path).await, target, &path);
    }
}

#[tokio::test]
async fn deactivating_a_cached_redirect_returns_404_immediately() {
    let app = spawn_app().await;
    let (id, code) = link_to(&app, "https://example.com/cached").await;
    until_cached(&app, &code).await;
    let resp = app
        .put_json(&format!("/urls/{id}"), &json!({"is_active": false}))
        .await;
    assert_eq!(resp.status(), 200);
    // No waiting: the write invalidated the code before it answered.
    for path in redirect_paths(&code) {
        assert_not_found_json(app.get(&path).await, &path).await;
    }
}

#[tokio::test]
async fn a_changed_original_url_is_served_immediately() {
    let app = spawn_app().await;
    let (id, code) = link_to(&app, "https://example.com/before").await;
    until_cached(&app, &code).await;
    let after = "https://example.org/after?v=2|~";
    let resp = app
        .put_json(&format!("/urls/{id}"), &json!({"original_url": after}))
        .await;
    assert_eq!(resp.status(), 200);
    for path in redirect_paths(&code) {
        assert_redirects_to(&app.get(&path).await, after, &path);
    }
}

#[tokio::test]
async fn a_deleted_url_stops_redirecting_immediately() {
    let app = spawn_app().await;
    let (id, code) = link_to(&app, "https://example.com/deleted").await;
    until_cached(&app, &code).await;
    assert_eq!(app.delete(&format!("/urls/{id}")).await.status(), 204);
    for path in redirect_paths(&code) {
        assert_not_found_json(app.get(&path).await, &path).await;
    }
}

#[tokio::test]
async fn redirect_paths_accept_only_get_and_head() {
    let app = spawn_app().await;
    let (_, code) = link_to(&app, "https://example.com/methods").await;
    for path in redirect_paths(&code) {
        let resp = app.post_json(&path, &json!({})).await;
        assert_eq!(resp.status(), 405, "{path}");
        let allow = resp.headers()["allow"].to_str().expect("ascii").to_owned();
        assert!(allow.contains("GET") && allow.contains("HEAD"), "{allow}");
        let body: Value = resp.json().await.expect("JSON");
        assert!(body["error"].is_string());
    }
}

#[tokio::test]
async fn get_redirects_record_events_and_head_redirects_do_not() {
    let app = spawn_app().await;
    let (id, code) = link_to(&app, "https://example.com/counted").await;
    for _ in 0..3 {
        assert_eq!(app.head(&format!("/{code}")).await.status(), 302);
    }
    let resp = app
        .client
        .get(app.url(&format!("/urls/{code}/redirect")))
        .header("referer", "https://ref.example/")
        .header("user-agent", "redirect-test/1")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 302);
    assert_eq!(app.get(&format!("/{code}")).await.status(), 302);

    let db = db().await;
    let count = || async {
        db.query_one("SELECT count(*) FROM clicks WHERE url_id = $1", &[&id])
            .await
            .expect("count")
            .get::<_, i64>(0)
    };
    eventually("two redirect events", Duration::from_secs(10), || async {
        count().await >= 2
    })
    .await;
    assert_eq!(count().await, 2, "HEAD records nothing");
    let rows = db
        .query(
            "SELECT jsonb_strip_nulls(jsonb_build_object('short_code', short_code, 'referrer', referrer, 'user_agent', user_agent)) FROM clicks WHERE url_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .expect("details");
    let details: Vec<Value> = rows.iter().map(|r| r.get(0)).collect();
    assert!(details.iter().all(|d| d["short_code"] == code.as_str()));
    assert!(
        details.iter().any(
            |d| d["referrer"] == "https://ref.example/" && d["user_agent"] == "redirect-test/1"
        ),
        "{details:?}"
    );
}
