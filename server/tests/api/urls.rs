//! Tests: `/urls` and `/urls/{id}`: create, list, get, update, delete, and their validation.
use crate::helpers::*;

use serde_json::{json, Value};

/// `YYYY-MM-DDTHH:MM:SS`, nothing more.
fn is_timestamp(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").is_ok() && s.len() == 19
}

async fn new_user_id(app: &TestApp) -> i64 {
    app.create_user().await["id"].as_i64().expect("user id")
}

/// POSTs a body to /urls and returns (status, JSON body).
async fn post_url(app: &TestApp, body: &Value) -> (u16, Value) {
    let resp = app.post_json("/urls", body).await;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    assert_eq!(ct.as_deref(), Some("application/json"), "for {body}");
    (status, resp.json().await.expect("JSON body"))
}

async fn get_json(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app.get(path).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|u| u["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test]
async fn create_url_returns_201_with_the_full_shape_and_a_generated_code() {
    let app = spawn_app().await;
    let user_id = new_user_id(&app).await;
    let target = "https://Example.COM/a/../b/%7Euser?q=1&Q=%2f#Frag";
    let (status, url) = post_url(&app, &json!({"user_id": user_id, "original_url": target})).await;
    assert_eq!(status, 201, "{url}");
    let obj = url.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "id",
            "is_active",
            "original_url",
            "short_code",
            "title",
            "updated_at",
            "user_id"
        ]
    );
    assert!(url["id"].as_i64().is_some_and(|id| id > 0));
    assert_eq!(url["user_id"], user_id);
    let code = url["short_code"].as_str().expect("code");
    assert_eq!(code.len(), 6, "{code}");
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()), "{code}");
    assert_eq!(url["original_url"], target, "kept byte for byte");
    assert_eq!(url["title"], "");
    assert_eq!(url["is_active"], true);
    assert!(is_timestamp(&url["created_at"]), "{}", url["created_at"]);
    assert!(is_timestamp(&url["updated_at"]), "{}", url["updated_at"]);
}

#[tokio::test]
async fn create_url_generates_distinct_codes() {
    let app = spawn_app().await;
    let user_id = new_user_id(&app).await;
    let mut codes = std::collections::HashSet::new();
    for _ in 0..10 {
        let url = app.create_url_for(user_id, "https://example.com/").await;
        assert!(codes.insert(url["short_code"].as_str().expect("code").to_owned()));
    }
}

#[tokio::test]
async fn create_url_accepts_a_custom_short_code_and_a_title() {
    let app = spawn_app().await;
    let user_id = new_user_id(&app).await;
    let code = unique_code();
    let (status, url) = post_url(
        &app,
        &json!({"user_id": user_id, "original_url": "http://example.org", "title": "Hi ✓", "short_code": code}),
    )
    .await;
    assert_eq!(status, 201, "{url}");
    assert_eq!(url["short_code"], code.as_str());
    assert_eq!(url["title"], "Hi ✓");
    // Both ends of the length range, and every allowed character class.
    let u = unique_code();
    let longest = format!("{}{u}", &"Ab-_".repeat(8)[..32 - u.len()]);
    for code in [short_random_code(), longest] {
        let (status, url) = post_url(
            &app,
            &json!({"user_id": user_id, "original_url": "https://example.org/x", "short_code": code}),
        )
        .await;
        assert_eq!(status, 201, "{code}: {url}");
        assert_eq!(url["short_code"], code.as_str());
    }
}

/// A 3-character custom code, random enough not to collide within one run's database.
fn short_random_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let n: u32 = rand::random();
    (0..3)
        .map(|i| char::from(ALPHABET[((n >> (6 * i)) & 63) as usize]))
        .collect()
}

#[tokio::test]
async fn create_url_returns_409_when_short_code_is_taken() {
    let app = spawn_app().await;
    let user_id = new_user_id(&app).await;
    let code = unique_code();
    let body =
        json!({"user_id": user_id, "original_url": "https://example.com/1", "short_code": code});
    assert_eq!(post_url(&app, &body).await.0, 201);
    let other = new_user_id(&app).await;
    let (status, err) = post_url(
        &app,
        &json!({"user_id": other, "original_url": "https://example.com/2", "short_code": code}),
    )
    .await;
    assert_eq!(status, 409, "{err}");
    assert!(err["error"].is_string(), "{err}");
    // Nothing half-written: the code still points at the first URL.
    let resp = app.get(&format!("/{code}")).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "https://example.com/1");
}

#[tokio::test]
async fn create_url_returns_422_for_an_invalid_custom_code() {
    let app = spawn_app().await;
    let user_id = new_user_id(&app).await;
    let too_long = "a".repeat(33);
    for code in [
        "ab",
        too_long.as_str(),
        "has space",
        "users",
        "Users",
        "metrics",
        "a/b",
        "ünï",
        "",
    ] {
        let (status, err) = post_url(
            &app,
            &json!({"user_id": user_id, "original_url": "https://example.com/", "short_code": code}),
        )
        .await;
        assert_eq!(status, 422, "{code:?}: {err}");
        assert!(err["details"]["short_code"].is_string(), "{code:?}: {err}");
    }
}

#[tokio::test]
async fn create_url_returns_422_for_a_bad_original_url() {
    let app = spawn_app().await;
    let user_id = new_user_id(&app).await;
    let too_long = format!("https://example.com/{}", "a".repeat(2049 - 20));
    assert_eq!(too_long.len(), 2049);
    for target in [
        "javascript:alert(1)",
        "JavaScript://example.com/%0aalert(1)",
        "ftp://example.com/file",
        "/relative/path",
        "example.com/no-scheme",
        "https://exa mple.com/",
        "https://example.com/a b",
        " https://example.com/",
        "https://example.com/\n",
        "http://",
        "",
        too_long.as_str(),
    ] {
        let (status, err) =
            post_url(&app, &json!({"user_id": user_id, "original_url": target})).await;
        assert_eq!(status, 422, "{target:?}: {err}");
        assert!(
            err["details"]["original_url"].is_string(),
            "{target:?}: {err}"
        );
    }
    // Exactly 2048 bytes is fine.
    let longest = format!("https://example.com/{}", "a".repeat(2048 - 20));
    assert_eq!(longest.len(), 2048);
    let (status, url) = post_url(&app, &json!({"user_id": user_id, "original_url": longest})).await;
    assert_eq!(status, 201, "{url}");
    assert_eq!(url["original_url"], longest.as_str());
}

/// RFC 9110 section 4.2.1: an http(s) URI with an empty host is invalid, and a recipient
/// must reject it. WHATWG parsing would quietly read the first path segment as the host,
/// so the stored (and redirected-to) bytes would not mean what they seem.
#[tokio::test]
async fn create_url_returns_422_for_an_empty_authority() {
    let app = spawn_app().await;
    let user_id = new_user_id(&app).await;
    for target in ["https:///path-only", "http:///example.com/x"] {
        let (status, err) =
            post_url(&app, &json!({"user_id": user_id, "original_url": target})).await;
        assert_eq!(status, 422, "{target:?}: {err}");
    }
}

#[tokio::test]
async fn create_url_returns_404_for_an_unknown_user() {
    let app = spawn_app().await;
    let (status, err) = post_url(
        &app,
        &json!({"user_id": 9_000_000_000_000_i64, "original_url": "https://example.com/"}),
    )
    .await;
    assert_eq!(status, 404, "{err}");
    assert!(err["error"].is_string(), "{err}");
}

#[tokio::test]
async fn create_url_returns_422_naming_each_wrongly_typed_or_missing_field() {
    let app = spawn_app().await;
    let user_id = new_user_id(&app).await;
    let (status, err) = post_url(
        &app,
        &json!({"user_id": user_id.to_string(), "original_url": 123, "title": false, "short_code": 7}),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert!(err["error"].is_string(), "{err}");
    for field in ["user_id", "original_url", "title", "short_code"] {
        assert!(err["details"][field].is_string(), "{field}: {err}");
    }

    let (status, err) = post_url(&app, &json!({"title": "x"})).await;
    assert_eq!(status, 422, "{err}");
    assert!(err["details"]["user_id"].is_string(), "{err}");
    assert!(err["details"]["original_url"].is_string(), "{err}");

    let (status, err) = post_url(
        &app,
        &json!({"user_id": user_id, "original_url": "https://example.com/", "colour": "red"}),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert!(err["details"]["colour"].is_string(), "{err}");

    for bad_id in [json!(0), json!(-3), json!(1.5), json!(null)] {
        let (status, err) = post_url(
            &app,
            &json!({"user_id": bad_id, "original_url": "https://example.com/"}),
        )
        .await;
        assert_eq!(status, 422, "{bad_id}: {err}");
        assert!(err["details"]["user_id"].is_string(), "{bad_id}: {err}");
    }
}

#[tokio::test]
async fn list_urls_filters_by_user_and_by_active_state_in_id_order() {
    let app = spawn_app().await;
    let user_id = new_user_id(&app).await;
    let other = new_user_id(&app).await;
    let mut mine = Vec::new();
    for i in 0..3 {
        let u = app
            .create_url_for(user_id, &format!("https://example.com/{i}"))
            .await;
        mine.push(u["id"].as_i64().expect("id"));
    }
    app.create_url_for(other, "https://example.com/other").await;
    let resp = app
        .put_json(&format!("/urls/{}", mine[1]), &json!({"is_active": false}))
        .await;
    assert_eq!(resp.status(), 200);

    let (status, list) = get_json(&app, &format!("/urls?user_id={user_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&list), mine);
    assert!(list
        .as_array()
        .expect("array")
        .iter()
        .all(|u| u["user_id"] == user_id));

    let (_, active) = get_json(&app, &format!("/urls?user_id={user_id}&is_active=true")).await;
    assert_eq!(ids(&active), [mine[0], mine[2]]);
    let (_, inactive) = get_json(&app, &format!("/urls?is_active=false&user_id={user_id}")).await;
    assert_eq!(ids(&inactive), [mine[1]]);

    let (status, all_inactive) = get_json(&app, "/urls?is_active=false&per_page=1000").await;
    assert_eq!(status, 200);
    let all_inactive = all_inactive.as_array().expect("array");
    assert!(all_inactive.iter().all(|u| u["is_active"] == false));
    let got = ids(&Value::Array(all_inactive.clone()));
    assert!(got.windows(2).all(|w| w[0] < w[1]), "ordered by id");

    let (status, none) = get_json(&app, "/urls?user_id=9000000000000").await;
    assert_eq!(status, 200);
    assert_eq!(none, json!([]));
}

#[tokio::test]
async fn list_urls_paginates_20_by_default_in_id_order() {
    let app = spawn_app().await;
    let user_id = new_user_id(&app).await;
    let mut mine = Vec::new();
    for i in 0..25 {
        let u = app
            .create_url_for(user_id, &format!("https://example.com/p/{i}"))
            .await;
        mine.push(u["id"].as_i64().expect("id"));
    }
    let (_, first) = get_json(&app, &format!("/urls?user_id={user_id}")).await;
    assert_eq!(ids(&first), mine[..20]);
    let (_, page1) = get_json(&app, &format!("/urls?user_id={user_id}&page=1")).await;
    assert_eq!(ids(&page1), mine[..20]);
    let (_, page2) = get_json(&app, &format!("/urls?user_id={user_id}&page=2")).await;
    assert_eq!(ids(&page2), mine[20..]);
    let (_, p3) = get_json(&app, &format!("/urls?page=3&per_page=10&user_id={user_id}")).await;
    assert_eq!(ids(&p3), mine[20..]);
    let (_, p2) = get_json(&app, &format!("/urls?page=2&per_page=10&user_id={user_id}")).await;
    assert_eq!(ids(&p2), mine[10..20]);
    let (status, past) =
        get_json(&app, &format!("/urls?page=4&per_page=10&user_id={user_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(past, json!([]));
    let (_, big) = get_json(&app, &format!("/urls?per_page=1000&user_id={user_id}")).await;
    assert_eq!(ids(&big), mine);

    // Unfiltered pages are in id order too.
    let (_, any) = get_json(&app, "/urls?per_page=50").await;
    let any = ids(&any);
    assert!(any.len() <= 50);
    assert!(any.windows(2).all(|w| w[0] < w[1]), "{any:?}");
}

#[tokio::test]
async fn list_urls_returns_422_for_bad_query_parameters() {
    let app = spawn_app().await;
    for (query, param) in [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page=99999999999999999999", "page"),
        ("per_page=0", "per_page"),
        ("per_page=1001", "per_page"),
        ("per_page=1.5", "per_page"),
        ("user_id=x", "user_id"),
        ("user_id=0", "user_id"),
        ("is_active=maybe", "is_active"),
        ("is_active=", "is_active"),
    ] {
        let resp = app.get(&format!("/urls?{query}")).await;
        assert_eq!(resp.status(), 422, "{query}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/json",
            "{query}"
        );
        let err: Value = resp.json().await.expect("JSON");
        assert!(err["details"][param].is_string(), "{query}: {err}");
    }
}

#[tokio::test]
async fn get_url_returns_200_with_the_url_and_404_when_unknown() {
    let app = spawn_app().await;
    let created = app.create_url().await;
    let id = created["id"].as_i64().expect("id");
    let (status, got) = get_json(&app, &format!("/urls/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got, created);

    let (status, err) = get_json(&app, "/urls/9000000000000").await;
    assert_eq!(status, 404, "{err}");
    assert!(err["error"].is_string());
    for bad in ["abc", "0", "-1", "99999999999999999999"] {
        let resp = app.get(&format!("/urls/{bad}")).await;
        assert!(
            resp.status() == 404 || resp.status() == 422,
            "{bad}: {}",
            resp.status()
        );
        assert_eq!(resp.headers()["content-type"], "application/json", "{bad}");
    }
}

#[tokio::test]
async fn update_url_changes_fields_moves_updated_at_and_keeps_created_at() {
    let app = spawn_app().await;
    let created = app.create_url().await;
    let id = created["id"].as_i64().expect("id");
    // Age the row so a moved updated_at is visible at one-second resolution.
    db().await
        .execute(
            "UPDATE urls SET created_at = created_at - interval '1 hour', \
             updated_at = updated_at - interval '1 hour' WHERE id = $1",
            &[&id],
        )
        .await
        .expect("age the row");
    let (_, before) = get_json(&app, &format!("/urls/{id}")).await;

    let target = "https://example.net/new?a=1&b=%20";
    let resp = app
        .put_json(
            &format!("/urls/{id}"),
            &json!({"title": "New title", "is_active": false, "original_url": target}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let after: Value = resp.json().await.expect("JSON");
    assert_eq!(after["id"], id);
    assert_eq!(after["title"], "New title");
    assert_eq!(after["is_active"], false);
    assert_eq!(after["original_url"], target);
    assert_eq!(after["short_code"], created["short_code"]);
    assert_eq!(after["user_id"], created["user_id"]);
    assert_eq!(
        after["created_at"], before["created_at"],
        "created_at stays"
    );
    let (old, new) = (
        before["updated_at"].as_str().expect("ts"),
        after["updated_at"].as_str().expect("ts"),
    );
    assert!(is_timestamp(&after["updated_at"]));
    assert!(new > old, "updated_at moved: {old} -> {new}");

    // The change is what GET serves now, too.
    let (_, got) = get_json(&app, &format!("/urls/{id}")).await;
    assert_eq!(got, after);

    // A single field changes only that field; updated_at never goes back.
    let resp = app
        .put_json(&format!("/urls/{id}"), &json!({"is_active": true}))
        .await;
    assert_eq!(resp.status(), 200);
    let again: Value = resp.json().await.expect("JSON");
    assert_eq!(again["is_active"], true);
    assert_eq!(again["title"], "New title");
    assert_eq!(again["original_url"], target);
    assert_eq!(again["created_at"], before["created_at"]);
    assert!(again["updated_at"].as_str().expect("ts") >= new);
}

#[tokio::test]
async fn update_url_returns_404_for_an_unknown_url() {
    let app = spawn_app().await;
    let resp = app
        .put_json("/urls/9000000000000", &json!({"title": "x"}))
        .await;
    assert_eq!(resp.status(), 404);
    let err: Value = resp.json().await.expect("JSON");
    assert!(err["error"].is_string());
}

#[tokio::test]
async fn update_url_returns_422_for_an_empty_or_invalid_body() {
    let app = spawn_app().await;
    let created = app.create_url().await;
    let path = format!("/urls/{}", created["id"]);
    for (body, field) in [
        (json!({}), "body"),
        (json!({"is_active": "no"}), "is_active"),
        (json!({"title": 5}), "title"),
        (
            json!({"original_url": "javascript:alert(1)"}),
            "original_url",
        ),
        (
            json!({"original_url": "ftp://example.com/"}),
            "original_url",
        ),
        (json!({"short_code": "abcdef"}), "short_code"),
        (json!({"user_id": 1}), "user_id"),
    ] {
        let resp = app.put_json(&path, &body).await;
        assert_eq!(resp.status(), 422, "{body}");
        let err: Value = resp.json().await.expect("JSON");
        assert!(err["details"][field].is_string(), "{body}: {err}");
    }
    // Nothing changed.
    let (_, got) = get_json(&app, &path).await;
    assert_eq!(got, created);
}

#[tokio::test]
async fn delete_url_returns_204_then_404() {
    let app = spawn_app().await;
    let created = app.create_url().await;
    let id = created["id"].as_i64().expect("id");
    let code = created["short_code"].as_str().expect("code");
    let resp = app.delete(&format!("/urls/{id}")).await;
    assert_eq!(resp.status(), 204);
    assert!(resp.bytes().await.expect("body").is_empty());
    let (status, _) = get_json(&app, &format!("/urls/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(app.delete(&format!("/urls/{id}")).await.status(), 404);
    assert_eq!(app.get(&format!("/{code}")).await.status(), 404);
    let (_, list) = get_json(&app, &format!("/urls?user_id={}", created["user_id"])).await;
    assert_eq!(list, json!([]));
}
