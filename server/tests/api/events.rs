//! Tests: the event log. Every mutation's event (written in its transaction), events
//! outliving what they describe, `POST /events`, `GET /events` filters and pages, and
//! redirect events arriving through the batching queue. Bulk imports' event is in `users`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

// === Helpers of this file ===

async fn body(resp: reqwest::Response) -> Value {
    resp.json().await.expect("JSON body")
}

async fn error_body(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status(), status, "status");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v = body(resp).await;
    assert!(v["error"].is_string(), "no error message in {v}");
    v
}

async fn invalid_field(resp: reqwest::Response, field: &str) -> String {
    let v = error_body(resp, 422).await;
    v["details"][field]
        .as_str()
        .unwrap_or_else(|| panic!("details do not name {field}: {v}"))
        .to_owned()
}

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().expect("integer id")
}

/// `GET /events?{query}` as a list; asserts 200 and id order.
async fn events(app: &TestApp, query: &str) -> Vec<Value> {
    let resp = app.get(&format!("/events?{query}")).await;
    assert_eq!(resp.status(), 200, "GET /events?{query}");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let list = body(resp).await.as_array().expect("array").clone();
    let ids: Vec<i64> = list.iter().map(id_of).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "not by id: {ids:?}");
    list
}

fn of_type<'a>(list: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    list.iter()
        .filter(|e| e["event_type"] == event_type)
        .collect()
}

fn assert_timestamp(v: &Value) {
    let s = v.as_str().expect("timestamp is a string");
    assert_eq!(s.len(), 19, "{s} is not YYYY-MM-DDTHH:MM:SS");
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .unwrap_or_else(|e| panic!("{s} is not YYYY-MM-DDTHH:MM:SS: {e}"));
}

/// Waits until `n` redirect events of a URL are in the table, then reads them through
/// `GET /events?url_id=..&event_type=redirect`. Polling PostgreSQL rather than the API
/// keeps an empty list page out of the cache; `redirect_events_show_up_in_a_list_cached_before_they_arrived`
/// checks the API on its own.
async fn redirect_events(app: &TestApp, url_id: i64, n: usize) -> Vec<Value> {
    let client = db().await;
    let client = &client;
    eventually(
        &format!("{n} redirect event(s) for url {url_id} in the table"),
        Duration::from_secs(10),
        || async move {
            let got: i64 = client
                .query_one("SELECT count(*) FROM clicks WHERE url_id = $1", &[&url_id])
                .await
                .expect("count")
                .get(0);
            got >= i64::try_from(n).expect("small")
        },
    )
    .await;
    events(
        app,
        &format!("url_id={url_id}&event_type=redirect&per_page=100"),
    )
    .await
}

async fn redirect_with(app: &TestApp, path: &str, referrer: &str, agent: &str) {
    let resp = app
        .client
        .get(app.url(path))
        .header("referer", referrer)
        .header("user-agent", agent)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 302, "GET {path}");
}

// === Users' events ===

#[tokio::test]
async fn create_user_writes_a_user_created_event() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let list = events(&app, &format!("user_id={}", id_of(&user))).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let e = &list[0];
    assert_eq!(e["event_type"], "user_created");
    assert_eq!(e["user_id"], user["id"]);
    assert_eq!(e["url_id"], Value::Null);
    assert_eq!(e["details"]["username"], user["username"]);
    assert_eq!(e["details"]["email"], user["email"]);
    assert_timestamp(&e["timestamp"]);
    let obj = e.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "details",
            "event_type",
            "id",
            "timestamp",
            "url_id",
            "user_id"
        ]
    );
}

#[tokio::test]
async fn update_user_writes_one_user_updated_event_per_changed_field() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let id = id_of(&user);
    let name = unique("new");
    let email = format!("{name}@example.net");
    let resp = app
        .put_json(
            &format!("/users/{id}"),
            &json!({"username": name, "email": email}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let list = events(&app, &format!("user_id={id}&event_type=user_updated")).await;
    let mut changes: Vec<(String, Value)> = list
        .iter()
        .map(|e| {
            assert_eq!(e["url_id"], Value::Null);
            (
                e["details"]["field"].as_str().expect("field").to_owned(),
                e["details"]["new_value"].clone(),
            )
        })
        .collect();
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        changes,
        [
            ("email".to_owned(), json!(email)),
            ("username".to_owned(), json!(name))
        ]
    );
}

#[tokio::test]
async fn update_user_writes_no_event_for_a_value_that_did_not_change() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let id = id_of(&user);
    let name = unique("n");
    let resp = app
        .put_json(
            &format!("/users/{id}"),
            &json!({"username": name, "email": user["email"]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let list = events(&app, &format!("user_id={id}&event_type=user_updated")).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        list[0]["details"],
        json!({"field": "username", "new_value": name})
    );
}

#[tokio::test]
async fn delete_user_writes_user_deleted_and_keeps_the_users_earlier_events() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let id = id_of(&user);
    app.put_json(&format!("/users/{id}"), &json!({"username": unique("x")}))
        .await;
    assert_eq!(app.delete(&format!("/users/{id}")).await.status(), 204);
    let list = events(&app, &format!("user_id={id}")).await;
    let types: Vec<&str> = list
        .iter()
        .map(|e| e["event_type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, ["user_created", "user_updated", "user_deleted"]);
    assert_eq!(list[2]["url_id"], Value::Null);
    assert_eq!(list[2]["user_id"], id);
}

// === URLs' events ===

#[tokio::test]
async fn create_url_writes_a_created_event_with_short_code_and_original_url() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let list = events(&app, &format!("url_id={}", id_of(&url))).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let e = &list[0];
    assert_eq!(e["event_type"], "created");
    assert_eq!(e["url_id"], url["id"]);
    assert_eq!(e["user_id"], url["user_id"]);
    assert_eq!(e["details"]["short_code"], url["short_code"]);
    assert_eq!(e["details"]["original_url"], url["original_url"]);
    assert_timestamp(&e["timestamp"]);
}

#[tokio::test]
async fn update_url_writes_one_updated_event_per_changed_field() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let id = id_of(&url);
    let resp = app
        .put_json(
            &format!("/urls/{id}"),
            &json!({
                "title": "new title",
                "is_active": false,
                "original_url": "https://example.org/moved",
            }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let list = events(&app, &format!("url_id={id}&event_type=updated")).await;
    let mut changes: Vec<(String, Value)> = list
        .iter()
        .map(|e| {
            assert_eq!(e["user_id"], url["user_id"]);
            (
                e["details"]["field"].as_str().expect("field").to_owned(),
                e["details"]["new_value"].clone(),
            )
        })
        .collect();
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        changes,
        [
            ("is_active".to_owned(), json!(false)),
            (
                "original_url".to_owned(),
                json!("https://example.org/moved")
            ),
            ("title".to_owned(), json!("new title")),
        ]
    );

    // Sending the same values again changes nothing and logs nothing.
    let resp = app
        .put_json(
            &format!("/urls/{id}"),
            &json!({"title": "new title", "is_active": false}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        events(&app, &format!("url_id={id}&event_type=updated"))
            .await
            .len(),
        3
    );
}

#[tokio::test]
async fn delete_url_writes_a_deleted_event_and_keeps_the_urls_events() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let id = id_of(&url);
    app.put_json(&format!("/urls/{id}"), &json!({"title": "renamed"}))
        .await;
    assert_eq!(app.delete(&format!("/urls/{id}")).await.status(), 204);
    let list = events(&app, &format!("url_id={id}")).await;
    let types: Vec<&str> = list
        .iter()
        .map(|e| e["event_type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, ["created", "updated", "deleted"]);
    assert_eq!(list[2]["user_id"], url["user_id"]);
}

#[tokio::test]
async fn delete_user_keeps_the_events_of_its_urls() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let uid = url["user_id"].as_i64().expect("user id");
    assert_eq!(app.delete(&format!("/users/{uid}")).await.status(), 204);
    let list = events(&app, &format!("url_id={}", id_of(&url))).await;
    assert_eq!(of_type(&list, "created").len(), 1, "{list:?}");
    let list = events(&app, &format!("user_id={uid}")).await;
    for t in ["user_created", "created", "user_deleted"] {
        assert_eq!(of_type(&list, t).len(), 1, "{t} in {list:?}");
    }
}

// === POST /events ===

#[tokio::test]
async fn create_event_returns_201_with_the_event() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let details = json!({"source": "test", "n": 1, "nested": {"a": [1, 2]}});
    let resp = app
        .post_json(
            "/events",
            &json!({
                "url_id": url["id"],
                "user_id": url["user_id"],
                "event_type": "shared",
                "details": details,
            }),
        )
        .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let e = body(resp).await;
    assert!(id_of(&e) > 0);
    assert_eq!(e["url_id"], url["id"]);
    assert_eq!(e["user_id"], url["user_id"]);
    assert_eq!(e["event_type"], "shared");
    assert_eq!(e["details"], details);
    assert_timestamp(&e["timestamp"]);

    let list = events(&app, &format!("url_id={}&event_type=shared", id_of(&url))).await;
    assert_eq!(list, [e]);
}

#[tokio::test]
async fn create_event_defaults_details_to_an_empty_object() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let resp = app
        .post_json(
            "/events",
            &json!({"url_id": url["id"], "user_id": url["user_id"], "event_type": "viewed"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(body(resp).await["details"], json!({}));
}

#[tokio::test]
async fn create_event_returns_404_for_an_unknown_url() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let resp = app
        .post_json(
            "/events",
            &json!({"url_id": i64::MAX, "user_id": user["id"], "event_type": "x"}),
        )
        .await;
    let v = error_body(resp, 404).await;
    assert!(v["error"].as_str().expect("error").contains("url"), "{v}");
    let list = events(&app, &format!("user_id={}&event_type=x", id_of(&user))).await;
    assert!(list.is_empty(), "{list:?}");
}

#[tokio::test]
async fn create_event_returns_404_for_an_unknown_user() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let resp = app
        .post_json(
            "/events",
            &json!({"url_id": url["id"], "user_id": i64::MAX, "event_type": "x"}),
        )
        .await;
    let v = error_body(resp, 404).await;
    assert!(v["error"].as_str().expect("error").contains("user"), "{v}");
    let list = events(&app, &format!("url_id={}&event_type=x", id_of(&url))).await;
    assert!(list.is_empty(), "{list:?}");
}

#[tokio::test]
async fn create_event_returns_422_when_details_is_not_an_object() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    for details in [json!([1, 2]), json!("text"), json!(3), json!(null)] {
        let resp = app
            .post_json(
                "/events",
                &json!({
                    "url_id": url["id"],
                    "user_id": url["user_id"],
                    "event_type": "x",
                    "details": details,
                }),
            )
            .await;
        invalid_field(resp, "details").await;
    }
}

#[tokio::test]
async fn create_event_returns_422_when_event_type_is_empty_or_missing() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    for event_type in [json!(""), json!("  "), json!(7)] {
        let resp = app
            .post_json(
                "/events",
                &json!({"url_id": url["id"], "user_id": url["user_id"], "event_type": event_type}),
            )
            .await;
        invalid_field(resp, "event_type").await;
    }
    let resp = app
        .post_json(
            "/events",
            &json!({"url_id": url["id"], "user_id": url["user_id"]}),
        )
        .await;
    assert_eq!(invalid_field(resp, "event_type").await, "is required");
}

#[tokio::test]
async fn create_event_returns_422_for_ids_that_are_not_positive_integers() {
    let app = spawn_app().await;
    for (payload, field) in [
        (
            json!({"url_id": "1", "user_id": 1, "event_type": "x"}),
            "url_id",
        ),
        (
            json!({"url_id": 1, "user_id": 1.5, "event_type": "x"}),
            "user_id",
        ),
        (
            json!({"url_id": 0, "user_id": 1, "event_type": "x"}),
            "url_id",
        ),
        (json!({"user_id": 1, "event_type": "x"}), "url_id"),
        (
            json!({"url_id": 1, "user_id": 1, "event_type": "x", "extra": 1}),
            "extra",
        ),
    ] {
        invalid_field(app.post_json("/events", &payload).await, field).await;
    }
}

// === GET /events ===

#[tokio::test]
async fn list_events_pages_by_20_by_default_in_id_order() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let id = id_of(&url);
    for i in 0..24 {
        let resp = app
            .post_json(
                "/events",
                &json!({
                    "url_id": id,
                    "user_id": url["user_id"],
                    "event_type": "click",
                    "details": {"i": i},
                }),
            )
            .await;
        assert_eq!(resp.status(), 201);
    }
    // 25 in all: the `created` event and 24 clicks.
    let first = events(&app, &format!("url_id={id}")).await;
    assert_eq!(first.len(), 20);
    assert_eq!(first[0]["event_type"], "created");
    let second = events(&app, &format!("url_id={id}&page=2")).await;
    assert_eq!(second.len(), 5);
    assert!(id_of(&first[19]) < id_of(&second[0]));
    assert_eq!(second[4]["details"], json!({"i": 23}));
    let all = events(&app, &format!("url_id={id}&per_page=100")).await;
    assert_eq!(all.len(), 25);
    assert_eq!(&all[..20], &first[..]);
    assert_eq!(&all[20..], &second[..]);
    let small = events(&app, &format!("url_id={id}&per_page=3&page=2")).await;
    assert_eq!(&small[..], &all[3..6]);
    assert!(events(&app, &format!("url_id={id}&page=3"))
        .await
        .is_empty());
    // Without a filter the default page size still applies.
    assert_eq!(events(&app, "").await.len(), 20);
}

#[tokio::test]
async fn list_events_filters_combine() {
    let app = spawn_app().await;
    let a = app.create_url().await;
    let user_a = a["user_id"].as_i64().expect("user");
    let a2 = app.create_url_for(user_a, "https://example.com/a2").await;
    let b = app.create_url().await;
    for (url, t) in [(&a, "like"), (&a, "share"), (&a2, "like"), (&b, "like")] {
        let resp = app
            .post_json(
                "/events",
                &json!({"url_id": url["id"], "user_id": url["user_id"], "event_type": t}),
            )
            .await;
        assert_eq!(resp.status(), 201);
    }
    let (ida, ida2) = (id_of(&a), id_of(&a2));

    let by_user = events(&app, &format!("user_id={user_a}&per_page=100")).await;
    // user_created, 2 created, 3 posted.
    assert_eq!(by_user.len(), 6, "{by_user:?}");
    assert!(by_user.iter().all(|e| e["user_id"] == user_a));

    let likes = events(&app, &format!("user_id={user_a}&event_type=like")).await;
    let urls: Vec<i64> = likes
        .iter()
        .map(|e| e["url_id"].as_i64().expect("url"))
        .collect();
    assert_eq!(urls, [ida, ida2]);

    let one = events(
        &app,
        &format!("event_type=like&url_id={ida}&user_id={user_a}"),
    )
    .await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["url_id"], ida);

    let url_and_type = events(&app, &format!("url_id={ida}&event_type=share")).await;
    assert_eq!(url_and_type.len(), 1);

    let mismatch = events(&app, &format!("url_id={ida}&user_id={}", b["user_id"])).await;
    assert!(mismatch.is_empty());

    // A type-only filter returns only that type.
    let shares = events(&app, "event_type=share&per_page=1000").await;
    assert!(!shares.is_empty());
    assert!(shares.iter().all(|e| e["event_type"] == "share"));
}

#[tokio::test]
async fn list_events_returns_422_for_bad_query_parameters() {
    let app = spawn_app().await;
    for (query, field) in [
        ("per_page=0", "per_page"),
        ("per_page=1001", "per_page"),
        ("page=abc", "page"),
        ("url_id=abc", "url_id"),
        ("user_id=0", "user_id"),
        ("user_id=-3", "user_id"),
        ("event_type=", "event_type"),
    ] {
        invalid_field(app.get(&format!("/events?{query}")).await, field).await;
    }
}

// === Redirect events ===

#[tokio::test]
async fn redirect_records_an_event_with_referrer_and_user_agent_after_batching() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let code = url["short_code"].as_str().expect("code");
    redirect_with(
        &app,
        &format!("/{code}"),
        "https://ref.example/page",
        "agent/1.0",
    )
    .await;
    let list = redirect_events(&app, id_of(&url), 1).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let e = &list[0];
    assert_eq!(e["user_id"], url["user_id"]);
    assert_eq!(
        e["details"],
        json!({
            "short_code": code,
            "referrer": "https://ref.example/page",
            "user_agent": "agent/1.0",
        })
    );
    assert_timestamp(&e["timestamp"]);
}

#[tokio::test]
async fn redirect_events_show_up_in_a_list_cached_before_they_arrived() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let code = url["short_code"].as_str().expect("code");
    let query = format!("/events?url_id={}&event_type=redirect", id_of(&url));
    // The empty page is served from the cache before the click.
    eventually(
        "empty redirect list cached",
        Duration::from_secs(10),
        || {
            let query = query.clone();
            let app = &app;
            async move {
                app.get(&query)
                    .await
                    .headers()
                    .get("x-cache")
                    .is_some_and(|v| v == "HIT")
            }
        },
    )
    .await;
    redirect_with(
        &app,
        &format!("/{code}"),
        "https://ref.example/",
        "cached-list",
    )
    .await;
    // Well under the 30 s cache TTL: the event must show without waiting it out.
    eventually(
        "the redirect event in GET /events",
        Duration::from_secs(10),
        || {
            let query = query.clone();
            let app = &app;
            async move {
                let list = body(app.get(&query).await).await;
                list.as_array().is_some_and(|l| l.len() == 1)
            }
        },
    )
    .await;
}

#[tokio::test]
async fn redirect_through_the_old_path_records_an_event_too() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let code = url["short_code"].as_str().expect("code");
    redirect_with(&app, &format!("/urls/{code}/redirect"), "r", "old-path").await;
    let list = redirect_events(&app, id_of(&url), 1).await;
    assert_eq!(list[0]["details"]["user_agent"], "old-path");
    assert_eq!(list[0]["details"]["short_code"], code);
}

#[tokio::test]
async fn redirect_event_details_leave_out_headers_that_were_not_sent() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let code = url["short_code"].as_str().expect("code");
    // reqwest sends no User-Agent unless told to.
    assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
    let list = redirect_events(&app, id_of(&url), 1).await;
    assert_eq!(list[0]["details"], json!({"short_code": code}));
}

#[tokio::test]
async fn redirect_event_truncates_a_huge_user_agent() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let code = url["short_code"].as_str().expect("code");
    let agent = "A".repeat(4000);
    redirect_with(&app, &format!("/{code}"), "r", &agent).await;
    let list = redirect_events(&app, id_of(&url), 1).await;
    let kept = list[0]["details"]["user_agent"].as_str().expect("agent");
    assert!(
        !kept.is_empty() && kept.len() <= 1024,
        "kept {} bytes",
        kept.len()
    );
    assert!(agent.starts_with(kept));
}

#[tokio::test]
async fn head_redirect_records_no_event() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let code = url["short_code"].as_str().expect("code");
    for path in [format!("/{code}"), format!("/urls/{code}/redirect")] {
        let resp = app
            .client
            .head(app.url(&path))
            .header("user-agent", "head")
            .send()
            .await
            .expect("HEAD");
        assert_eq!(resp.status(), 302);
    }
    // The queue is FIFO: once the GET's event is in, a HEAD's would be too.
    redirect_with(&app, &format!("/{code}"), "r", "get").await;
    let list = redirect_events(&app, id_of(&url), 1).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["details"]["user_agent"], "get");
}

#[tokio::test]
async fn redirect_of_an_inactive_code_records_no_event() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let (id, code) = (id_of(&url), url["short_code"].as_str().expect("code"));
    let path = format!("/urls/{id}");
    assert_eq!(
        app.put_json(&path, &json!({"is_active": false}))
            .await
            .status(),
        200
    );
    let resp = app
        .client
        .get(app.url(&format!("/{code}")))
        .header("user-agent", "inactive")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 404);
    assert_eq!(
        app.put_json(&path, &json!({"is_active": true}))
            .await
            .status(),
        200
    );
    redirect_with(&app, &format!("/{code}"), "r", "active").await;
    let list = redirect_events(&app, id, 1).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["details"]["user_agent"], "active");
}

#[tokio::test]
async fn many_redirects_all_arrive() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let code = url["short_code"].as_str().expect("code");
    let gets = (0..50).map(|i| {
        let (app, code) = (&app, code);
        async move { redirect_with(app, &format!("/{code}"), "r", &format!("ua{i}")).await }
    });
    futures_util::future::join_all(gets).await;
    let list = redirect_events(&app, id_of(&url), 50).await;
    assert_eq!(list.len(), 50);
    let mut agents: Vec<&str> = list
        .iter()
        .map(|e| e["details"]["user_agent"].as_str().expect("agent"))
        .collect();
    agents.sort_unstable();
    agents.dedup();
    assert_eq!(agents.len(), 50);
}
