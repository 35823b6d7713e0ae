//! Tests: `/users`, `/users/{id}` and `/users/bulk` (and `/health`). Events these
//! write are checked in `events`, generic bad-input handling in `errors`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

// === Helpers of this file ===

async fn body(resp: reqwest::Response) -> Value {
    resp.json().await.expect("JSON body")
}

/// Asserts an error response: its status, a JSON content type and an `error` string.
async fn error_body(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status(), status, "status");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v = body(resp).await;
    assert!(v["error"].is_string(), "no error message in {v}");
    v
}

/// Asserts a 422 whose `details` names `field`; returns the reason given for it.
async fn invalid_field(resp: reqwest::Response, field: &str) -> String {
    let v = error_body(resp, 422).await;
    v["details"][field]
        .as_str()
        .unwrap_or_else(|| panic!("details do not name {field}: {v}"))
        .to_owned()
}

fn assert_timestamp(v: &Value) {
    let s = v.as_str().expect("timestamp is a string");
    assert_eq!(s.len(), 19, "{s} is not YYYY-MM-DDTHH:MM:SS");
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .unwrap_or_else(|e| panic!("{s} is not YYYY-MM-DDTHH:MM:SS: {e}"));
}

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().expect("integer id")
}

/// GETs `path` until it is served from the cache.
async fn until_cached(app: &TestApp, path: &str) {
    eventually(
        &format!("{path} cached"),
        Duration::from_secs(10),
        || async move {
            app.get(path)
                .await
                .headers()
                .get("x-cache")
                .is_some_and(|v| v == "HIT")
        },
    )
    .await;
}

/// A base for ids that nothing else in this run uses: the sequence is far below it,
/// and the range is wide enough that two random bases practically never meet.
fn random_id_base() -> i64 {
    rand::random_range(1_000_000_000..1_000_000_000_000_i64) * 1000
}

fn csv_of(rows: &[(i64, String, String)]) -> String {
    let mut s = String::from("id,username,email,created_at\n");
    for (id, name, email) in rows {
        s.push_str(&format!("{id},{name},{email},2025-09-19 22:25:05\n"));
    }
    s
}

/// `n` fresh rows with ids `base+1..=base+n`.
fn fresh_rows(base: i64, n: i64) -> Vec<(i64, String, String)> {
    (1..=n)
        .map(|i| {
            let name = unique("bulk");
            let email = format!("{name}@example.com");
            (base + i, name, email)
        })
        .collect()
}

async fn post_bulk(app: &TestApp, csv: String) -> reqwest::Response {
    let part = reqwest::multipart::Part::text(csv)
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

// === /health ===

#[tokio::test]
async fn health_answers_ok_without_dependencies() {
    let app = spawn_app().await;
    let resp = app.get("/health").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        resp.json::<serde_json::Value>().await.expect("json"),
        serde_json::json!({"status": "ok"})
    );
}

// === POST /users ===

#[tokio::test]
async fn create_user_returns_201_with_the_user() {
    let app = spawn_app().await;
    let name = unique("ann");
    let email = format!("{name}@example.com");
    let resp = app
        .post_json("/users", &json!({"username": name, "email": email}))
        .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let user = body(resp).await;
    let obj = user.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["created_at", "email", "id", "username"]);
    assert!(id_of(&user) > 0);
    assert_eq!(user["username"], name);
    assert_eq!(user["email"], email);
    assert_timestamp(&user["created_at"]);

    // It is really there.
    let got = app.get(&format!("/users/{}", id_of(&user))).await;
    assert_eq!(got.status(), 200);
    assert_eq!(body(got).await, user);
}

#[tokio::test]
async fn create_user_allows_duplicate_usernames() {
    let app = spawn_app().await;
    let name = unique("same");
    for i in 0..2 {
        let resp = app
            .post_json(
                "/users",
                &json!({"username": name, "email": format!("{name}{i}@example.com")}),
            )
            .await;
        assert_eq!(resp.status(), 201);
    }
}

#[tokio::test]
async fn create_user_returns_409_when_email_is_taken_case_insensitively() {
    let app = spawn_app().await;
    let name = unique("dup");
    let resp = app
        .post_json(
            "/users",
            &json!({"username": name, "email": format!("{name}@Example.com")}),
        )
        .await;
    assert_eq!(resp.status(), 201);

    for email in [
        format!("{name}@Example.com"),
        format!("{}@EXAMPLE.COM", name.to_uppercase()),
    ] {
        let resp = app
            .post_json("/users", &json!({"username": "other", "email": email}))
            .await;
        error_body(resp, 409).await;
    }
    let n: i64 = db()
        .await
        .query_one(
            "SELECT count(*) FROM users WHERE lower(email) = lower($1)",
            &[&format!("{name}@example.com")],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1, "a duplicate was written");
}

#[tokio::test]
async fn create_user_returns_422_naming_a_missing_field() {
    let app = spawn_app().await;
    let resp = app
        .post_json("/users", &json!({"username": unique("u")}))
        .await;
    assert_eq!(invalid_field(resp, "email").await, "is required");

    let resp = app
        .post_json(
            "/users",
            &json!({"email": format!("{}@example.com", unique("u"))}),
        )
        .await;
    assert_eq!(invalid_field(resp, "username").await, "is required");
}

#[tokio::test]
async fn create_user_returns_422_when_username_is_not_a_string() {
    let app = spawn_app().await;
    let email = format!("{}@example.com", unique("u"));
    let resp = app
        .post_json("/users", &json!({"username": 123, "email": email}))
        .await;
    let reason = invalid_field(resp, "username").await;
    assert!(reason.contains("string"), "{reason}");
    let n: i64 = db()
        .await
        .query_one("SELECT count(*) FROM users WHERE email = $1", &[&email])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0, "an invalid user was written");
}

#[tokio::test]
async fn create_user_returns_422_when_username_is_empty_or_blank() {
    let app = spawn_app().await;
    for name in ["", "   "] {
        let resp = app
            .post_json(
                "/users",
                &json!({"username": name, "email": format!("{}@example.com", unique("u"))}),
            )
            .await;
        invalid_field(resp, "username").await;
    }
}

#[tokio::test]
async fn create_user_returns_422_when_email_is_invalid() {
    let app = spawn_app().await;
    for email in [
        "",
        "plain",
        "a@b",
        "a b@example.com",
        "@example.com",
        "x@@y.com",
    ] {
        let name = unique("bad");
        let resp = app
            .post_json("/users", &json!({"username": name, "email": email}))
            .await;
        invalid_field(resp, "email").await;
        let n: i64 = db()
            .await
            .query_one("SELECT count(*) FROM users WHERE username = $1", &[&name])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 0, "{email:?} was accepted into the table");
    }
}

#[tokio::test]
async fn create_user_returns_422_naming_an_unknown_field() {
    let app = spawn_app().await;
    let name = unique("u");
    let resp = app
        .post_json(
            "/users",
            &json!({"username": name, "email": format!("{name}@example.com"), "role": "admin"}),
        )
        .await;
    assert_eq!(invalid_field(resp, "role").await, "unknown field");
}

#[tokio::test]
async fn create_user_names_every_bad_field_in_one_422() {
    let app = spawn_app().await;
    let resp = app
        .post_json("/users", &json!({"username": 1, "email": false, "x": 0}))
        .await;
    let v = error_body(resp, 422).await;
    for field in ["username", "email", "x"] {
        assert!(v["details"][field].is_string(), "{field} missing in {v}");
    }
}

// === GET /users/{id} ===

#[tokio::test]
async fn get_user_returns_404_json_for_an_unknown_id() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let id = id_of(&user);
    app.delete(&format!("/users/{id}")).await;
    error_body(app.get(&format!("/users/{id}")).await, 404).await;
    error_body(app.get("/users/9223372036854775807").await, 404).await;
}

#[tokio::test]
async fn get_user_returns_404_json_for_a_non_integer_or_out_of_range_id() {
    let app = spawn_app().await;
    for id in ["abc", "1.5", "0", "-1", "99999999999999999999", "1e3"] {
        error_body(app.get(&format!("/users/{id}")).await, 404).await;
    }
}

// === GET /users ===

#[tokio::test]
async fn list_users_without_pagination_is_ordered_by_id() {
    let app = spawn_app().await;
    app.create_user().await;
    app.create_user().await;
    let resp = app.get("/users").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let users = body(resp).await;
    let users = users.as_array().expect("array");
    assert!(users.len() >= 2);
    assert!(users.len() <= 10_000, "more than the default cap");
    let ids: Vec<i64> = users.iter().map(id_of).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "not ordered by id");
}

#[tokio::test]
async fn list_users_without_pagination_stops_at_the_configured_cap() {
    let mut cfg = test_config();
    cfg.users_list_max = 3;
    let app = spawn_app_with(cfg).await;
    for _ in 0..3 {
        app.create_user().await;
    }
    let users = body(app.get("/users").await).await;
    assert_eq!(users.as_array().expect("array").len(), 3);
}

#[tokio::test]
async fn list_users_pages_follow_each_other_in_id_order() {
    let app = spawn_app().await;
    for _ in 0..4 {
        app.create_user().await;
    }
    let page1 = body(app.get("/users?page=1&per_page=2").await).await;
    let page2 = body(app.get("/users?per_page=2&page=2").await).await;
    let (page1, page2) = (
        page1.as_array().expect("array"),
        page2.as_array().expect("array"),
    );
    assert_eq!(page1.len(), 2);
    assert_eq!(page2.len(), 2);
    let ids: Vec<i64> = page1.iter().chain(page2).map(id_of).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let far = body(app.get("/users?page=1000&per_page=1000").await).await;
    assert_eq!(far, json!([]), "a page past the data is empty");
    // Past the offset window ((page - 1) x per_page > 1,000,000) it is a 422, not a scan.
    let resp = app.get("/users?page=10000000&per_page=1000").await;
    assert_eq!(resp.status(), 422);
    assert!(body(resp).await["details"]["page"].is_string());
}

#[tokio::test]
async fn list_users_page_holds_a_new_user_where_its_id_puts_it() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let id = id_of(&user);
    let before: i64 = db()
        .await
        .query_one("SELECT count(*) FROM users WHERE id < $1", &[&id])
        .await
        .expect("count")
        .get(0);
    // Other tests insert and delete concurrently: look on the expected page and its neighbours.
    let per_page = 50;
    let page = before / per_page + 1;
    let mut found = 0;
    for p in (page - 1).max(1)..=page + 1 {
        let users = body(
            app.get(&format!("/users?page={p}&per_page={per_page}"))
                .await,
        )
        .await;
        let users = users.as_array().expect("array");
        assert!(users.len() <= per_page as usize);
        found += users.iter().filter(|u| **u == user).count();
    }
    assert_eq!(
        found, 1,
        "user {id} not found exactly once around page {page}"
    );
}

#[tokio::test]
async fn list_users_returns_422_for_bad_pagination() {
    let app = spawn_app().await;
    for (query, field) in [
        ("per_page=0", "per_page"),
        ("per_page=1001", "per_page"),
        ("per_page=-5", "per_page"),
        ("page=abc", "page"),
        ("page=0", "page"),
        ("page=1&per_page=x", "per_page"),
    ] {
        let resp = app.get(&format!("/users?{query}")).await;
        invalid_field(resp, field).await;
    }
    assert_eq!(app.get("/users?page=1&per_page=1000").await.status(), 200);
}

// === PUT /users/{id} ===

#[tokio::test]
async fn update_user_changes_only_the_fields_sent() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let path = format!("/users/{}", id_of(&user));
    until_cached(&app, &path).await;

    let new_name = unique("renamed");
    let resp = app.put_json(&path, &json!({"username": new_name})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let updated = body(resp).await;
    assert_eq!(updated["username"], new_name);
    assert_eq!(updated["email"], user["email"]);
    assert_eq!(updated["created_at"], user["created_at"]);
    assert_eq!(body(app.get(&path).await).await, updated);

    let new_email = format!("{}@example.org", unique("moved"));
    let updated = body(app.put_json(&path, &json!({"email": new_email})).await).await;
    assert_eq!(updated["username"], new_name);
    assert_eq!(updated["email"], new_email);
    assert_eq!(body(app.get(&path).await).await, updated);
}

#[tokio::test]
async fn update_user_returns_409_when_email_is_taken_by_another_user() {
    let app = spawn_app().await;
    let a = app.create_user().await;
    let b = app.create_user().await;
    let taken = a["email"].as_str().expect("email").to_uppercase();
    let path = format!("/users/{}", id_of(&b));
    error_body(app.put_json(&path, &json!({"email": taken})).await, 409).await;
    // Nothing changed, not even the username sent alongside.
    let resp = app
        .put_json(&path, &json!({"email": taken, "username": "changed"}))
        .await;
    error_body(resp, 409).await;
    assert_eq!(body(app.get(&path).await).await, b);
}

#[tokio::test]
async fn update_user_accepts_its_own_email_in_another_case() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let upper = user["email"].as_str().expect("email").to_uppercase();
    let resp = app
        .put_json(
            &format!("/users/{}", id_of(&user)),
            &json!({"email": upper}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body(resp).await["email"], upper);
}

#[tokio::test]
async fn update_user_returns_404_for_an_unknown_user() {
    let app = spawn_app().await;
    let resp = app
        .put_json("/users/9223372036854775807", &json!({"username": "x"}))
        .await;
    error_body(resp, 404).await;
    let resp = app.put_json("/users/abc", &json!({"username": "x"})).await;
    error_body(resp, 404).await;
}

#[tokio::test]
async fn update_user_returns_422_for_an_empty_object() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let resp = app
        .put_json(&format!("/users/{}", id_of(&user)), &json!({}))
        .await;
    invalid_field(resp, "body").await;
}

#[tokio::test]
async fn update_user_returns_422_for_bad_values_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let path = format!("/users/{}", id_of(&user));
    for (payload, field) in [
        (json!({"username": ""}), "username"),
        (json!({"username": 5}), "username"),
        (json!({"email": "nope"}), "email"),
        (json!({"email": null}), "email"),
        (json!({"username": "ok", "id": 7}), "id"),
    ] {
        invalid_field(app.put_json(&path, &payload).await, field).await;
    }
    assert_eq!(body(app.get(&path).await).await, user);
}

// === DELETE /users/{id} ===

#[tokio::test]
async fn delete_user_returns_204_then_404() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let path = format!("/users/{}", id_of(&user));
    until_cached(&app, &path).await;
    let resp = app.delete(&path).await;
    assert_eq!(resp.status(), 204);
    assert!(resp.bytes().await.expect("body").is_empty());
    error_body(app.get(&path).await, 404).await;
    error_body(app.delete(&path).await, 404).await;
    error_body(app.delete("/users/9223372036854775807").await, 404).await;
}

#[tokio::test]
async fn delete_user_removes_its_urls_and_their_cached_redirects() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let uid = id_of(&user);
    let other = app.create_user().await;
    let url = app
        .create_url_for(uid, "https://example.com/deleted-with-user")
        .await;
    let kept = app
        .create_url_for(id_of(&other), "https://example.com/kept")
        .await;
    let code = url["short_code"].as_str().expect("code").to_owned();
    let url_path = format!("/urls/{}", id_of(&url));

    // Make sure both the redirect and the URL are served from the cache first.
    let redirect = format!("/{code}");
    until_cached(&app, &redirect).await;
    until_cached(&app, &url_path).await;
    let resp = app.get(&redirect).await;
    assert_eq!(resp.status(), 302);

    assert_eq!(app.delete(&format!("/users/{uid}")).await.status(), 204);

    error_body(app.get(&redirect).await, 404).await;
    error_body(app.get(&format!("/urls/{code}/redirect")).await, 404).await;
    error_body(app.get(&url_path).await, 404).await;
    let listed = body(app.get(&format!("/urls?user_id={uid}")).await).await;
    assert_eq!(listed, json!([]));
    let n: i64 = db()
        .await
        .query_one("SELECT count(*) FROM urls WHERE user_id = $1", &[&uid])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);

    // Someone else's URL is untouched.
    let resp = app
        .get(&format!("/{}", kept["short_code"].as_str().expect("code")))
        .await;
    assert_eq!(resp.status(), 302);
}

// === POST /users/bulk ===

#[tokio::test]
async fn bulk_import_returns_201_with_the_count_and_creates_the_users() {
    let app = spawn_app().await;
    let base = random_id_base();
    let rows = fresh_rows(base, 3);
    let resp = post_bulk(&app, csv_of(&rows)).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(body(resp).await, json!({"imported": 3}));
    for (id, name, email) in &rows {
        let user = body(app.get(&format!("/users/{id}")).await).await;
        assert_eq!(
            user,
            json!({"id": id, "username": name, "email": email, "created_at": "2025-09-19T22:25:05"})
        );
    }
}

#[tokio::test]
async fn bulk_import_accepts_iso_timestamps_and_surrounding_spaces() {
    let app = spawn_app().await;
    let base = random_id_base();
    let name = unique("iso");
    let csv = format!(
        "id,username,email,created_at\n{} , {name} , {name}@example.com , 2024-01-02T03:04:05\n",
        base + 1
    );
    let resp = post_bulk(&app, csv).await;
    assert_eq!(resp.status(), 201);
    let user = body(app.get(&format!("/users/{}", base + 1)).await).await;
    assert_eq!(user["username"], name);
    assert_eq!(user["created_at"], "2024-01-02T03:04:05");
}

#[tokio::test]
async fn bulk_import_updates_existing_ids_even_when_they_were_cached() {
    let app = spawn_app().await;
    let base = random_id_base();
    let rows = fresh_rows(base, 2);
    assert_eq!(post_bulk(&app, csv_of(&rows)).await.status(), 201);
    let path = format!("/users/{}", base + 1);
    until_cached(&app, &path).await;
    until_cached(&app, "/users?page=1&per_page=1").await;

    let renamed: Vec<(i64, String, String)> = rows
        .iter()
        .map(|(id, _, email)| (*id, unique("renamed"), email.clone()))
        .collect();
    let resp = post_bulk(&app, csv_of(&renamed)).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(body(resp).await, json!({"imported": 2}));

    let resp = app.get(&path).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body(resp).await["username"], renamed[0].1);
    let n: i64 = db()
        .await
        .query_one(
            "SELECT count(*) FROM users WHERE id = ANY($1)",
            &[&vec![base + 1, base + 2]],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 2, "re-import duplicated rows");
}

#[tokio::test]
async fn bulk_import_moves_the_id_sequence_past_the_largest_id() {
    let app = spawn_app().await;
    let base = random_id_base();
    // Out of order on purpose: the largest id is not the last row.
    let mut rows = fresh_rows(base, 3);
    rows.swap(0, 2);
    let max = base + 3;
    assert_eq!(post_bulk(&app, csv_of(&rows)).await.status(), 201);
    let user = app.create_user().await;
    assert!(
        id_of(&user) > max,
        "POST /users got {} <= {max}",
        id_of(&user)
    );
}

#[tokio::test]
async fn bulk_import_rejects_a_malformed_row_with_its_line_and_imports_nothing() {
    let app = spawn_app().await;
    let base = random_id_base();
    let rows = fresh_rows(base, 3);
    let mut csv = csv_of(&rows[..1]);
    csv.push_str(&format!(
        "{},{},not-an-email,2025-09-19 22:25:05\n",
        rows[1].0, rows[1].1
    ));
    csv.push_str(&csv_of(&rows[2..]).replacen("id,username,email,created_at\n", "", 1));
    let resp = post_bulk(&app, csv).await;
    let reason = invalid_field(resp, "file").await;
    assert!(reason.contains("line 3"), "{reason}");
    for (id, _, _) in &rows {
        error_body(app.get(&format!("/users/{id}")).await, 404).await;
    }
    let n: i64 = db()
        .await
        .query_one(
            "SELECT count(*) FROM users WHERE id BETWEEN $1 AND $2",
            &[&(base + 1), &(base + 3)],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn bulk_import_rejects_bad_files_with_422() {
    let app = spawn_app().await;
    let base = random_id_base();
    let name = unique("b");
    let good = format!(
        "{},{name},{name}@example.com,2025-09-19 22:25:05\n",
        base + 1
    );
    for (csv, line) in [
        ("id,name\n1,x\n".to_owned(), "line 1"),
        ("id,username,email,created_at\n".to_owned(), "line 2"),
        (
            format!(
                "id,username,email,created_at\n{good}abc,x,x@example.com,2025-01-01 00:00:00\n"
            ),
            "line 3",
        ),
        (
            format!(
                "id,username,email,created_at\n{good}{},x,x@example.com,yesterday\n",
                base + 2
            ),
            "line 3",
        ),
        (
            format!(
                "id,username,email,created_at\n{good}{},,y@example.com,2025-01-01 00:00:00\n",
                base + 2
            ),
            "line 3",
        ),
        (
            format!("id,username,email,created_at\n{good}{good}"),
            "line 3",
        ),
        (
            format!("id,username,email,created_at\n{good}{}\n", base + 2),
            "line 3",
        ),
    ] {
        let reason = invalid_field(post_bulk(&app, csv.clone()).await, "file").await;
        assert!(reason.contains(line), "{csv:?}: {reason}");
    }
    error_body(app.get(&format!("/users/{}", base + 1)).await, 404).await;
}

#[tokio::test]
async fn bulk_import_returns_409_when_an_email_belongs_to_another_user_and_imports_nothing() {
    let app = spawn_app().await;
    let existing = app.create_user().await;
    let base = random_id_base();
    let mut rows = fresh_rows(base, 2);
    rows[1].2 = existing["email"].as_str().expect("email").to_owned();
    let resp = post_bulk(&app, csv_of(&rows)).await;
    let status = resp.status().as_u16();
    assert!(
        status == 409 || status == 422,
        "expected a clean 409/422, got {status}"
    );
    error_body(resp, status).await;
    error_body(app.get(&format!("/users/{}", base + 1)).await, 404).await;
}

#[tokio::test]
async fn bulk_import_returns_422_without_a_file_field() {
    let app = spawn_app().await;
    let form = reqwest::multipart::Form::new().text("data", "id,username,email,created_at\n");
    let resp = app
        .client
        .post(app.url("/users/bulk"))
        .multipart(form)
        .send()
        .await
        .expect("POST");
    invalid_field(resp, "file").await;
}

#[tokio::test]
async fn bulk_import_returns_400_for_a_body_that_is_not_multipart() {
    let app = spawn_app().await;
    let resp = app
        .post_raw(
            "/users/bulk",
            "text/csv",
            "id,username,email,created_at\n1,a,a@example.com,2025-01-01 00:00:00\n",
        )
        .await;
    error_body(resp, 400).await;
    let resp = app.post_json("/users/bulk", &json!({"file": "x"})).await;
    error_body(resp, 400).await;
}

#[tokio::test]
async fn bulk_import_returns_400_for_a_broken_multipart_body() {
    let app = spawn_app().await;
    let resp = app
        .post_raw(
            "/users/bulk",
            "multipart/form-data; boundary=XYZ",
            "--XYZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nid,username",
        )
        .await;
    error_body(resp, 400).await;
}

#[tokio::test]
async fn bulk_import_writes_one_bulk_imported_event_with_the_count() {
    let app = spawn_app().await;
    let client = db().await;
    let before: i64 = client
        .query_one("SELECT coalesce(max(id), 0) FROM events", &[])
        .await
        .expect("max")
        .get(0);
    // An unusual count, so that a concurrent import is unlikely to match it.
    let base = random_id_base();
    assert_eq!(
        post_bulk(&app, csv_of(&fresh_rows(base, 13)))
            .await
            .status(),
        201
    );
    let rows = client
        .query(
            "SELECT url_id, user_id, details FROM events
             WHERE event_type = 'bulk_imported' AND id > $1 AND details = $2",
            &[&before, &json!({"count": 13})],
        )
        .await
        .expect("events");
    assert_eq!(
        rows.len(),
        1,
        "expected one bulk_imported event for 13 rows"
    );
    assert_eq!(rows[0].get::<_, Option<i64>>(0), None);
    assert_eq!(rows[0].get::<_, Option<i64>>(1), None);
}

#[tokio::test]
async fn bulk_import_takes_the_old_services_users_file() {
    let app = spawn_app().await;
    let original = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/original-seed/users.csv"
    ));
    // The old service's rows, moved to ids and emails of this test's own.
    let base = random_id_base();
    let tag = unique("old");
    let mut lines = original.lines();
    let mut csv = format!("{}\n", lines.next().expect("header"));
    let mut rows = 0_i64;
    for line in lines.filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let id: i64 = fields[0].parse().expect("id");
        csv.push_str(&format!(
            "{},{},{tag}.{},{}\n",
            base + id,
            fields[1],
            fields[2],
            fields[3]
        ));
        rows += 1;
    }
    let resp = post_bulk(&app, csv).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(body(resp).await, json!({"imported": rows}));
    let first = body(app.get(&format!("/users/{}", base + 1)).await).await;
    let row1: Vec<&str> = original.lines().nth(1).expect("row").split(',').collect();
    assert_eq!(first["username"], row1[1]);
    assert_eq!(first["email"], format!("{tag}.{}", row1[2]));
    assert_eq!(first["created_at"], row1[3].replace(' ', "T"));
}

#[tokio::test]
async fn bulk_import_takes_100_000_rows_in_seconds() {
    let app = spawn_app().await;
    let base = random_id_base();
    let tag = unique("h");
    let mut csv = String::with_capacity(100_000 * 64);
    csv.push_str("id,username,email,created_at\n");
    for i in 1..=100_000_i64 {
        csv.push_str(&format!(
            "{},user{i},{tag}.{i}@example.com,2025-09-19 22:25:05\n",
            base + i
        ));
    }
    let started = Instant::now();
    let resp = post_bulk(&app, csv).await;
    let took = started.elapsed();
    eprintln!("bulk import of 100,000 rows took {took:?}");
    assert_eq!(resp.status(), 201);
    assert_eq!(body(resp).await, json!({"imported": 100_000}));
    assert!(took < Duration::from_secs(20), "took {took:?}");

    let n: i64 = db()
        .await
        .query_one(
            "SELECT count(*) FROM users WHERE id BETWEEN $1 AND $2",
            &[&(base + 1), &(base + 100_000)],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 100_000);
    let last = body(app.get(&format!("/users/{}", base + 100_000)).await).await;
    assert_eq!(last["email"], format!("{tag}.100000@example.com"));
    assert!(id_of(&app.create_user().await) > base + 100_000);
}
