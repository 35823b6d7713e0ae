//! Issue #11: clicks counted exactly from rollups (across replicas, once per click),
//! raw clicks in day partitions with retention, bots told apart, the analytics API,
//! and the move of old redirect rows out of `events`.

use std::time::Duration;

use serde_json::{json, Value};
use shortener::clicks::agent::Classifier;
use shortener::clicks::rollup::{self, Hourly, LinkClick};
use shortener::clicks::{backfill, maintenance};
use shortener::db::Db;

use crate::helpers::*;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

async fn click(app: &TestApp, code: &str, ua: &str, referrer: Option<&str>) {
    let mut req = app
        .client
        .get(app.url(&format!("/{code}")))
        .header("user-agent", ua);
    if let Some(r) = referrer {
        req = req.header("referer", r);
    }
    assert_eq!(req.send().await.expect("GET").status(), 302);
}

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.expect("JSON")
}

async fn stats(app: &TestApp, id: i64) -> Value {
    let resp = app.get(&format!("/urls/{id}/stats")).await;
    assert_eq!(resp.status(), 200);
    json_of(resp).await
}

/// Fetches until `done` holds (10 s at most); returns the last answer.
async fn until<F, Fut>(what: &str, mut fetch: F, done: impl Fn(&Value) -> bool) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = fetch().await;
        if done(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}; last answer: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Until the link's stats say `clicks` (the cache TTL is 1 s in tests).
async fn wait_for_clicks(app: &TestApp, id: i64, clicks: i64) -> Value {
    until(
        &format!("stats of url {id} reach {clicks}"),
        || stats(app, id),
        |s| s["clicks"] == clicks,
    )
    .await
}

#[tokio::test]
async fn stats_equal_the_redirects_served_by_two_replicas_exactly() {
    let a = spawn_app().await;
    let b = spawn_app().await;
    let url = a.create_url().await;
    let (id, code) = (
        url["id"].as_i64().expect("id"),
        url["short_code"].as_str().expect("code").to_owned(),
    );
    assert_eq!(
        stats(&a, id).await,
        json!({"url_id": id, "clicks": 0, "human_clicks": 0, "bot_clicks": 0, "last_clicked_at": null})
    );
    let (humans, bots) = (60, 15);
    let mut tasks = Vec::new();
    for i in 0..humans + bots {
        let app = if i % 2 == 0 {
            a.client.clone()
        } else {
            b.client.clone()
        };
        let base = if i % 2 == 0 { a.url("") } else { b.url("") };
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            let ua = if i < humans { CHROME } else { GOOGLEBOT };
            let r = app
                .get(format!("{base}/{code}"))
                .header("user-agent", ua)
                .send()
                .await
                .expect("GET");
            assert_eq!(r.status(), 302);
        }));
    }
    // HEAD is never a click.
    assert_eq!(a.head(&format!("/{code}")).await.status(), 302);
    for t in tasks {
        t.await.expect("task");
    }
    let s = wait_for_clicks(&a, id, humans + bots).await;
    assert_eq!(s["human_clicks"], humans);
    assert_eq!(s["bot_clicks"], bots);
    assert!(s["last_clicked_at"].is_string());
    // Exactly: the rows themselves, and still so after more flushes went by.
    let db = db().await;
    let sum = || async {
        db.query_one(
            "SELECT sum(clicks)::int8 FROM click_link_hourly WHERE url_id = $1",
            &[&id],
        )
        .await
        .expect("sum")
        .get::<_, i64>(0)
    };
    assert_eq!(sum().await, humans + bots);
    let raw: i64 = db
        .query_one("SELECT count(*) FROM clicks WHERE url_id = $1", &[&id])
        .await
        .expect("count")
        .get(0);
    assert_eq!(raw, humans + bots, "one raw click each");
    click(&a, &code, CHROME, None).await;
    wait_for_clicks(&b, id, humans + bots + 1).await;
    assert_eq!(sum().await, humans + bots + 1);
}

#[tokio::test]
async fn a_flush_applied_twice_under_one_batch_id_is_counted_once() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let id = url["id"].as_i64().expect("id");
    let user_id = url["user_id"].as_i64().expect("user");
    let classifier = Classifier::new(10);
    let agent = classifier.classify(Some(CHROME));
    let code: std::sync::Arc<str> = std::sync::Arc::from("x");
    let mut hourly = Hourly::default();
    for _ in 0..3 {
        hourly.add_link(
            &LinkClick {
                id: None,
                at: chrono::Utc::now(),
                url_id: id,
                user_id,
                code: &code,
                agent: &agent,
                referrer: None,
                user_agent: Some(CHROME),
            },
            false,
        );
    }
    let db = Db::new(&test_config()).expect("pool");
    let batch: i64 = rand::random();
    let mut client = db.get().await.expect("connection");
    assert!(rollup::apply(&mut client, batch, Some(&hourly), None)
        .await
        .expect("first"));
    // The retry of a flush whose COMMIT went through but whose answer was lost.
    assert!(!rollup::apply(&mut client, batch, Some(&hourly), None)
        .await
        .expect("retry"));
    let n: i64 = db
        .get()
        .await
        .expect("connection")
        .query_one(
            "SELECT sum(clicks)::int8 FROM click_link_hourly WHERE url_id = $1",
            &[&id],
        )
        .await
        .expect("sum")
        .get(0);
    assert_eq!(n, 3);
}

#[tokio::test]
async fn partitions_are_created_ahead_and_dropped_whole_when_they_age_out() {
    let mut cfg = test_config();
    cfg.database_url = Some(separate_database("partitions").await.into());
    let db = Db::new(&cfg).expect("pool");
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2030, 1, d).expect("date");
    let parts = || async {
        let rows = db
            .get()
            .await
            .expect("connection")
            .query(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = 'clicks'::regclass ORDER BY 1",
                &[],
            )
            .await
            .expect("partitions");
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    let round = maintenance::run_once(&db, 3, day(10)).await.expect("round");
    assert!(round.ran);
    assert_eq!(
        parts().await,
        [
            "clicks_20300110",
            "clicks_20300111",
            "clicks_20300112",
            "clicks_20300113"
        ]
    );
    // A click of the 11th lands in its partition.
    db.get()
        .await
        .expect("connection")
        .execute(
            "INSERT INTO clicks (clicked_at, url_id, user_id, short_code, is_bot) \
             VALUES ('2030-01-11 12:00', 1, 1, 'abc', false)",
            &[],
        )
        .await
        .expect("a click of the 11th");
    // Four days later, with three days kept: the 10th and 11th go, whole.
    let round = maintenance::run_once(&db, 3, day(14)).await.expect("round");
    assert_eq!(round.dropped, [day(10), day(11)]);
    assert_eq!(
        parts().await,
        [
            "clicks_20300112",
            "clicks_20300113",
            "clicks_20300114",
            "clicks_20300115",
            "clicks_20300116",
            "clicks_20300117"
        ]
    );
    let left: i64 = db
        .get()
        .await
        .expect("connection")
        .query_one("SELECT count(*) FROM clicks", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "the aged-out click went with its partition");
    // Raw clicks off: every partition goes.
    maintenance::run_once(&db, 0, day(14)).await.expect("round");
    assert!(parts().await.is_empty());
}

#[tokio::test]
async fn bots_browsers_devices_and_referrers_are_told_apart() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let (id, code) = (
        url["id"].as_i64().expect("id"),
        url["short_code"].as_str().expect("code").to_owned(),
    );
    click(
        &app,
        &code,
        CHROME,
        Some("https://www.google.com/search?q=x"),
    )
    .await;
    click(
        &app,
        &code,
        CHROME,
        Some("https://news.ycombinator.com/item?id=1"),
    )
    .await;
    click(&app, &code, IPHONE, Some("https://www.google.com/")).await;
    click(&app, &code, GOOGLEBOT, None).await;
    let s = wait_for_clicks(&app, id, 4).await;
    assert_eq!(
        (s["human_clicks"].clone(), s["bot_clicks"].clone()),
        (json!(3), json!(1))
    );
    let get = |q: String| {
        let app = &app;
        async move {
            let resp = app.get(&format!("/analytics?url_id={id}&{q}")).await;
            assert_eq!(resp.status(), 200, "{q}");
            json_of(resp).await
        }
    };
    let breakdowns = until(
        "the breakdowns are written",
        || get("group_by=referrers".into()),
        |b| b["total"] == 3,
    )
    .await;
    assert_eq!(
        breakdowns["data"],
        json!([{"value": "google.com", "clicks": 2}, {"value": "news.ycombinator.com", "clicks": 1}])
    );
    let devices = get("group_by=devices&exclude_bots=false".into()).await;
    assert_eq!(
        devices["data"],
        json!([{"value": "desktop", "clicks": 2}, {"value": "bot", "clicks": 1}, {"value": "mobile", "clicks": 1}])
    );
    let browsers = get("group_by=browsers".into()).await;
    assert_eq!(
        browsers["data"],
        json!([{"value": "Chrome", "clicks": 2}, {"value": "Safari", "clicks": 1}])
    );
    let os = get("group_by=os&limit=1".into()).await;
    assert_eq!(os["data"].as_array().map(Vec::len), Some(1));
    // A user's top links.
    let user = url["user_id"].as_i64().expect("user");
    let other = app.create_url_for(user, "https://example.com/other").await;
    click(
        &app,
        other["short_code"].as_str().expect("code"),
        CHROME,
        None,
    )
    .await;
    let top = until(
        "the user's top links",
        || async {
            json_of(
                app.get(&format!("/analytics?user_id={user}&group_by=top_urls"))
                    .await,
            )
            .await
        },
        |t| t["total"] == 4,
    )
    .await;
    assert_eq!(
        top["data"][0],
        json!({"url_id": id, "short_code": code, "clicks": 3})
    );
    assert_eq!(top["data"][1]["clicks"], 1);
}

#[tokio::test]
async fn time_series_follow_the_time_zone_and_include_empty_buckets() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let id = url["id"].as_i64().expect("id");
    let user = url["user_id"].as_i64().expect("user");
    // Rollup rows as the writer leaves them: 23:30 UTC on the 1st is the 2nd in Paris.
    db().await
        .execute(
            "INSERT INTO click_link_hourly (url_id, hour, user_id, clicks, bot_clicks, last_at) VALUES \
             ($1, '2026-07-01 10:00+00', $2, 5, 1, '2026-07-01 10:59+00'), \
             ($1, '2026-07-01 23:00+00', $2, 7, 0, '2026-07-01 23:30+00'), \
             ($1, '2026-07-04 08:00+00', $2, 2, 2, '2026-07-04 08:01+00')",
            &[&id, &user],
        )
        .await
        .expect("rollups");
    let series = |q: &str| {
        let app = &app;
        let q = q.to_owned();
        async move {
            let resp = app.get(&format!("/analytics?url_id={id}&{q}")).await;
            assert_eq!(resp.status(), 200, "{q}");
            json_of(resp).await
        }
    };
    let utc = series("start=2026-07-01&end=2026-07-05&granularity=day").await;
    assert_eq!(
        utc["data"],
        json!([
            {"bucket": "2026-07-01T00:00:00+00:00", "clicks": 11},
            {"bucket": "2026-07-02T00:00:00+00:00", "clicks": 0},
            {"bucket": "2026-07-03T00:00:00+00:00", "clicks": 0},
            {"bucket": "2026-07-04T00:00:00+00:00", "clicks": 0}
        ])
    );
    let paris = series(
        "start=2026-07-01&end=2026-07-05&granularity=day&timezone=Europe/Paris&exclude_bots=false",
    )
    .await;
    assert_eq!(
        paris["data"],
        json!([
            {"bucket": "2026-07-01T00:00:00+02:00", "clicks": 5},
            {"bucket": "2026-07-02T00:00:00+02:00", "clicks": 7},
            {"bucket": "2026-07-03T00:00:00+02:00", "clicks": 0},
            {"bucket": "2026-07-04T00:00:00+02:00", "clicks": 2}
        ])
    );
    assert_eq!(paris["total"], 14);
    let hours = series("start=2026-07-01T09:00:00Z&end=2026-07-01T12:00:00Z").await;
    assert_eq!(hours["granularity"], "hour");
    assert_eq!(
        hours["data"].as_array().map(|d| d
            .iter()
            .map(|b| b["clicks"].as_i64().unwrap_or(-1))
            .collect::<Vec<_>>()),
        Some(vec![0, 4, 0])
    );
    // Errors name their parameter.
    for (q, field) in [
        ("timezone=Nowhere/Atlantis", "timezone"),
        ("start=2020-01-01&granularity=hour", "granularity"),
        ("start=2026-07-05&end=2026-07-01", "end"),
        ("interval=fortnight", "interval"),
        ("group_by=top_urls", "group_by"),
    ] {
        let resp = app.get(&format!("/analytics?url_id={id}&{q}")).await;
        assert_eq!(resp.status(), 422, "{q}");
        assert!(json_of(resp).await["details"][field].is_string(), "{q}");
    }
    assert_eq!(app.get("/analytics?url_id=999999999").await.status(), 404);
    assert_eq!(app.get("/analytics").await.status(), 422);
}

#[tokio::test]
async fn the_summary_counts_clicks_and_hits_on_unknown_and_inactive_codes() {
    let app = spawn_app().await;
    let before = json_of(app.get("/analytics/summary").await).await;
    let url = app.create_url().await;
    let (id, code) = (
        url["id"].as_i64().expect("id"),
        url["short_code"].as_str().expect("code").to_owned(),
    );
    click(&app, &code, CHROME, None).await;
    let unknown = unique_code();
    let resp = app
        .client
        .get(app.url(&format!("/{unknown}")))
        .header("user-agent", CHROME)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 404);
    wait_for_clicks(&app, id, 1).await;
    app.put_json(&format!("/urls/{id}"), &json!({"is_active": false}))
        .await;
    let resp = app
        .client
        .get(app.url(&format!("/{code}")))
        .header("user-agent", CHROME)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 404);
    eventually("the summary moves", Duration::from_secs(10), || {
        let app = &app;
        let before = &before;
        async move {
            let now = json_of(app.get("/analytics/summary").await).await;
            let d = |k: &str| now[k].as_i64().unwrap_or(0) - before[k].as_i64().unwrap_or(0);
            // Other tests click too: at least ours.
            d("clicks") >= 1
                && d("unknown_code_hits") >= 1
                && d("inactive_code_hits") >= 1
                && now["clicks"]
                    == now["human_clicks"].as_i64().unwrap_or(0)
                        + now["bot_clicks"].as_i64().unwrap_or(0)
        }
    })
    .await;
}

#[tokio::test]
async fn old_redirect_rows_move_out_of_events_keeping_their_ids_and_counts() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let (id, user) = (
        url["id"].as_i64().expect("id"),
        url["user_id"].as_i64().expect("user"),
    );
    let db = db().await;
    // As the old version wrote them: one today, one 400 days ago (past retention).
    let ids: Vec<i64> = db
        .query(
            "INSERT INTO events (url_id, user_id, event_type, \"timestamp\", details) VALUES \
             ($1, $2, 'redirect', (now() AT TIME ZONE 'UTC') - interval '1 minute', \
              '{\"short_code\": \"old1\", \"user_agent\": \"curl/8.0\", \"referrer\": \"https://t.co/x\"}'), \
             ($1, $2, 'redirect', (now() AT TIME ZONE 'UTC') - interval '400 days', \
              '{\"short_code\": \"old1\", \"user_agent\": \"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\"}') \
             RETURNING id",
            &[&id, &user],
        )
        .await
        .expect("old rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let pool = Db::new(&test_config()).expect("pool");
    let classifier = Classifier::new(10);
    eventually(
        "the redirect rows left events",
        Duration::from_secs(20),
        || {
            let (db, pool, classifier) = (&db, &pool, &classifier);
            async move {
                let _ = backfill::run_batch(pool, classifier, 30, 1000).await;
                let left: i64 = db
                    .query_one(
                        "SELECT count(*) FROM events WHERE url_id = $1 AND event_type = 'redirect'",
                        &[&id],
                    )
                    .await
                    .expect("count")
                    .get(0);
                left == 0
            }
        },
    )
    .await;
    let s = wait_for_clicks(&app, id, 2).await;
    assert_eq!(
        (s["human_clicks"].clone(), s["bot_clicks"].clone()),
        (json!(1), json!(1))
    );
    // The recent one is a raw click with its old id; the old one only counts.
    let raw: Vec<i64> = db
        .query("SELECT id FROM clicks WHERE url_id = $1", &[&id])
        .await
        .expect("raw")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(raw, [ids[0]]);
    let listed = json_of(
        app.get(&format!("/events?url_id={id}&event_type=redirect"))
            .await,
    )
    .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["id"], ids[0]);
    assert_eq!(
        listed[0]["details"],
        json!({"short_code": "old1", "user_agent": "curl/8.0", "referrer": "https://t.co/x"})
    );
}

#[tokio::test]
async fn the_event_list_interleaves_clicks_with_mutation_events_by_id() {
    let app = spawn_app().await;
    let url = app.create_url().await;
    let (id, code) = (
        url["id"].as_i64().expect("id"),
        url["short_code"].as_str().expect("code").to_owned(),
    );
    click(&app, &code, CHROME, Some("https://example.org/")).await;
    wait_for_clicks(&app, id, 1).await;
    app.put_json(&format!("/urls/{id}"), &json!({"title": "new"}))
        .await;
    let list = until(
        "three events",
        || async { json_of(app.get(&format!("/events?url_id={id}")).await).await },
        |l| l.as_array().map(Vec::len) == Some(3),
    )
    .await;
    let types: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(types, ["created", "redirect", "updated"]);
    assert_eq!(
        list[1]["details"],
        json!({"short_code": code, "referrer": "https://example.org/", "user_agent": CHROME})
    );
    let user = url["user_id"].as_i64().expect("user");
    let by_user = json_of(
        app.get(&format!("/events?user_id={user}&event_type=redirect"))
            .await,
    )
    .await;
    assert_eq!(by_user.as_array().map(Vec::len), Some(1));
}
