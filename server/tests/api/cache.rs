//! Tests: the Valkey read-through cache: MISS then HIT, invalidation on every kind of
//! write, and serving through a Valkey outage.
use crate::helpers::*;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn x_cache(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// GETs `path` once and returns (status, X-Cache, body bytes).
async fn fetch(app: &TestApp, path: &str) -> (u16, String, bytes::Bytes) {
    let resp = app.get(path).await;
    let status = resp.status().as_u16();
    let cache = x_cache(&resp);
    (status, cache, resp.bytes().await.expect("body"))
}

/// Waits until `path` is answered from the cache; returns that body.
async fn until_hit(app: &TestApp, path: &str) -> bytes::Bytes {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, cache, body) = fetch(app, path).await;
        assert!(status == 200 || status == 302, "{path}: {status}");
        if cache == "HIT" {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for a HIT on {path} (last body {body:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(body: &[u8]) -> Vec<i64> {
    let v: Value = serde_json::from_slice(body).expect("JSON");
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect()
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("JSON")
}

/// The page (with `per_page`) of the unpaginated user list that holds user `id`.
async fn users_page_holding(id: i64, per_page: i64) -> i64 {
    let before: i64 = db()
        .await
        .query_one("SELECT count(*) FROM users WHERE id < $1", &[&id])
        .await
        .expect("count")
        .get(0);
    before / per_page + 1
}

#[tokio::test]
async fn entity_gets_miss_first_then_hit() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    for path in [
        format!("/users/{}", url["user_id"]),
        format!("/urls/{}", url["id"]),
    ] {
        let (status, cache, first) = fetch(&app, &path).await;
        assert_eq!((status, cache.as_str()), (200, "MISS"), "{path}");
        let hit = until_hit(&app, &path).await;
        assert_eq!(json_of(&hit), json_of(&first), "{path}: same body");
    }
}

#[tokio::test]
async fn list_gets_miss_first_then_hit() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    // An unusual page size keeps these cache fields this test's own.
    for path in [
        "/users?page=1&per_page=997".to_owned(),
        format!("/urls?user_id={}", url["user_id"]),
        format!("/events?url_id={}", url["id"]),
    ] {
        let (status, cache, first) = fetch(&app, &path).await;
        assert_eq!(status, 200, "{path}");
        // Another test's write may drop the family between our requests, so MISS is
        // only certain for fields nobody else asks for.
        if !path.starts_with("/users") {
            assert_eq!(cache, "MISS", "{path}");
        }
        let hit = until_hit(&app, &path).await;
        if !path.starts_with("/users") {
            assert_eq!(json_of(&hit), json_of(&first), "{path}");
        }
    }
}

#[tokio::test]
async fn query_parameter_order_shares_one_cache_entry() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let user = &url["user_id"];
    // Any URL write elsewhere drops every cached URL list page, so one try can lose the
    // entry in between; each try uses a page size of its own, so the reordered query's
    // first request can only HIT through the entry the first order filled.
    for per_page in 100..140 {
        until_hit(
            &app,
            &format!("/urls?user_id={user}&page=1&per_page={per_page}"),
        )
        .await;
        let (status, cache, _) = fetch(
            &app,
            &format!("/urls?per_page={per_page}&page=1&user_id={user}"),
        )
        .await;
        assert_eq!(status, 200);
        if cache == "HIT" {
            return;
        }
    }
    panic!("a reordered query never shared the cached page");
}

#[tokio::test]
async fn redirects_miss_first_then_hit() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let code = url["short_code"].as_str().expect("code");
    let resp = app.head(&format!("/{code}")).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(x_cache(&resp), "MISS");
    until_hit(&app, &format!("/{code}")).await;
    // Both redirect paths share the lookup.
    let resp = app.get(&format!("/urls/{code}/redirect")).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(x_cache(&resp), "HIT");
}

#[tokio::test]
async fn creating_a_url_invalidates_the_cached_list_pages() {
    let app = spawn_app().await;
    let first = app.create_url().await;
    let user_id = first["user_id"].as_i64().expect("user");
    let list = format!("/urls?user_id={user_id}");
    let active = format!("/urls?user_id={user_id}&is_active=true");
    let cached = until_hit(&app, &list).await;
    until_hit(&app, &active).await;
    assert_eq!(ids(&cached), [first["id"].as_i64().expect("id")]);

    let second = app.create_url_for(user_id, "https://example.com/2").await;
    let want = [
        first["id"].as_i64().expect("id"),
        second["id"].as_i64().expect("id"),
    ];
    for path in [&list, &active] {
        let (status, _, body) = fetch(&app, path).await;
        assert_eq!(status, 200);
        assert_eq!(ids(&body), want, "{path} shows the new url at once");
    }
}

#[tokio::test]
async fn updating_a_url_invalidates_the_entity_and_the_lists() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let (id, user_id) = (url["id"].as_i64().expect("id"), &url["user_id"]);
    let entity = format!("/urls/{id}");
    let list = format!("/urls?user_id={user_id}");
    let inactive = format!("/urls?user_id={user_id}&is_active=false");
    let events = format!("/events?url_id={id}");
    for path in [&entity, &list, &inactive, &events] {
        until_hit(&app, path).await;
    }
    let resp = app
        .put_json(&entity, &json!({"title": "changed", "is_active": false}))
        .await;
    assert_eq!(resp.status(), 200);

    let (_, _, body) = fetch(&app, &entity).await;
    assert_eq!(json_of(&body)["title"], "changed");
    assert_eq!(json_of(&body)["is_active"], false);
    let (_, _, body) = fetch(&app, &list).await;
    assert_eq!(json_of(&body)[0]["title"], "changed");
    let (_, _, body) = fetch(&app, &inactive).await;
    assert_eq!(ids(&body), [id]);
    let (_, _, body) = fetch(&app, &events).await;
    let types: Vec<Value> = json_of(&body)
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["event_type"].clone())
        .collect();
    assert!(types.contains(&json!("updated")), "{types:?}");
}

#[tokio::test]
async fn deleting_a_url_invalidates_the_entity_the_lists_and_its_code() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let (id, user_id) = (url["id"].as_i64().expect("id"), &url["user_id"]);
    let code = url["short_code"].as_str().expect("code");
    let entity = format!("/urls/{id}");
    let list = format!("/urls?user_id={user_id}");
    for path in [&entity, &list, &format!("/{code}")] {
        until_hit(&app, path).await;
    }
    assert_eq!(app.delete(&entity).await.status(), 204);
    assert_eq!(app.get(&entity).await.status(), 404);
    let (status, _, body) = fetch(&app, &list).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&body), Vec::<i64>::new());
    assert_eq!(app.get(&format!("/{code}")).await.status(), 404);
    assert_eq!(
        app.get(&format!("/urls/{code}/redirect")).await.status(),
        404
    );
}

#[tokio::test]
async fn updating_a_url_invalidates_its_cached_redirect() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let id = url["id"].as_i64().expect("id");
    let code = url["short_code"].as_str().expect("code");
    until_hit(&app, &format!("/{code}")).await;
    let resp = app
        .put_json(
            &format!("/urls/{id}"),
            &json!({"original_url": "https://example.org/moved"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let resp = app.get(&format!("/{code}")).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "https://example.org/moved");
    assert_eq!(x_cache(&resp), "MISS");

    let resp = app
        .put_json(&format!("/urls/{id}"), &json!({"is_active": false}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.get(&format!("/{code}")).await.status(), 404);
}

#[tokio::test]
async fn updating_a_user_invalidates_the_entity_and_the_user_lists() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let id = user["id"].as_i64().expect("id");
    let entity = format!("/users/{id}");
    let per_page = 991;
    let page = users_page_holding(id, per_page).await;
    let list = format!("/users?page={page}&per_page={per_page}");
    until_hit(&app, &entity).await;
    let cached = until_hit(&app, &list).await;
    assert!(ids(&cached).contains(&id), "page {page} holds user {id}");

    let name = unique("renamed");
    let resp = app.put_json(&entity, &json!({"username": name})).await;
    assert_eq!(resp.status(), 200);
    let (_, _, body) = fetch(&app, &entity).await;
    assert_eq!(json_of(&body)["username"], name.as_str());
    let (_, _, body) = fetch(&app, &list).await;
    let listed = json_of(&body);
    let me = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|u| u["id"] == id)
        .cloned();
    assert_eq!(
        me.map(|u| u["username"].clone()),
        Some(json!(name)),
        "the cached page was dropped"
    );
}

#[tokio::test]
async fn a_code_cached_as_unknown_works_right_after_it_is_created() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let code = unique_code();
    // Look it up until the "unknown" answer is in Valkey.
    let key = format!("{}code:{code}", test_config().cache_key_prefix);
    let valkey = valkey().await;
    eventually("unknown code cached", Duration::from_secs(10), || {
        let (app, path, key, mut valkey) = (&app, format!("/{code}"), key.clone(), valkey.clone());
        async move {
            assert_eq!(app.get(&path).await.status(), 404);
            redis::AsyncCommands::get::<_, Option<String>>(&mut valkey, key)
                .await
                .expect("GET")
                .is_some()
        }
    })
    .await;
    let resp = app
        .post_json(
            "/urls",
            &json!({"user_id": user["id"], "original_url": "https://example.com/new", "short_code": code}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    for path in [format!("/{code}"), format!("/urls/{code}/redirect")] {
        let resp = app.get(&path).await;
        assert_eq!(resp.status(), 302, "{path}");
        assert_eq!(resp.headers()["location"], "https://example.com/new");
    }
}

/// A direct connection to the shared Valkey, to look at keys.
async fn valkey() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("REDIS_URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Valkey")
}

#[tokio::test]
async fn cache_operations_are_counted_in_metrics() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    until_hit(&app, &format!("/urls/{}", url["id"])).await;
    let text = app.get("/metrics").await.text().await.expect("text");
    for result in ["hit", "miss"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("cache_operations_total{")
                    && l.contains(&format!("result=\"{result}\""))),
            "cache_operations_total{{result=\"{result}\"}} missing"
        );
    }
}

#[tokio::test]
async fn serving_continues_while_valkey_is_down_and_the_cache_comes_back() {
    let port = free_port();
    let mut v = OwnValkey::start(port).await;
    let mut cfg = test_config();
    cfg.redis_url = Some(v.url().into());
    let app = spawn_app_with(cfg).await;
    let url = app.create_url().await;
    let code = url["short_code"].as_str().expect("code").to_owned();
    let paths = [
        format!("/users/{}", url["user_id"]),
        format!("/urls/{}", url["id"]),
        format!("/urls?user_id={}", url["user_id"]),
        format!("/{code}"),
    ];
    for path in &paths {
        until_hit(&app, path).await;
    }
    let ready: Value = app.get("/ready").await.json().await.expect("JSON");
    assert_eq!(ready["valkey"], "ok", "{ready}");

    v.stop();
    for round in 0..3 {
        for path in &paths {
            let start = Instant::now();
            let (status, cache, _) = fetch(&app, path).await;
            let took = start.elapsed();
            assert!(status == 200 || status == 302, "{path}: {status}");
            assert_eq!(cache, "MISS", "{path} (round {round})");
            assert!(took < Duration::from_secs(1), "{path} took {took:?}");
        }
    }
    // Writes go through too (their invalidation fails open).
    let start = Instant::now();
    let resp = app
        .put_json(
            &format!("/urls/{}", url["id"]),
            &json!({"title": "offline"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(start.elapsed() < Duration::from_secs(1));
    let (_, _, body) = fetch(&app, &paths[1]).await;
    assert_eq!(json_of(&body)["title"], "offline");

    // /ready says so, and stays 200: the cache is optional.
    let (client, ready_url) = (app.client.clone(), app.url("/ready"));
    eventually("ready reports valkey down", Duration::from_secs(10), || {
        let (client, ready_url) = (client.clone(), ready_url.clone());
        async move {
            let resp = client.get(&ready_url).send().await.expect("GET /ready");
            assert_eq!(resp.status(), 200);
            let body: Value = resp.json().await.expect("JSON");
            body["valkey"] == "down"
        }
    })
    .await;

    let _v = OwnValkey::start(port).await;
    for path in &paths {
        until_hit(&app, path).await;
    }
    let (_, _, body) = fetch(&app, &paths[1]).await;
    assert_eq!(json_of(&body)["title"], "offline");
    eventually("ready reports valkey ok", Duration::from_secs(10), || {
        let (client, ready_url) = (client.clone(), ready_url.clone());
        async move {
            let body: Value = client
                .get(&ready_url)
                .send()
                .await
                .expect("GET /ready")
                .json()
                .await
                .expect("JSON");
            body["valkey"] == "ok"
        }
    })
    .await;
}
