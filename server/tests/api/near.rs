//! The near cache across replicas: two server instances share one Valkey; a write
//! through one must stop the other serving the old answer within milliseconds, and a
//! replica that loses the invalidation link must stop using its near cache.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Waits until `app` serves `code` with the given target from its near cache (the
/// in-process layer, not just Valkey).
async fn warm(app: &TestApp, code: &str, target: &str) {
    eventually(
        "the code is served from the near cache",
        Duration::from_secs(5),
        || async {
            let r = app.get(&format!("/{code}")).await;
            let near = app.state.cache.near().expect("near cache enabled");
            r.status() == 302
                && r.headers()["x-cache"] == "HIT"
                && location(&r).as_deref() == Some(target)
                && near.is_live()
                && near
                    .get(code)
                    .flatten()
                    .is_some_and(|t| t.location == target)
        },
    )
    .await;
}

#[tokio::test]
async fn a_write_through_one_replica_is_not_served_stale_by_another() {
    let a = spawn_app().await;
    let b = spawn_app().await;
    let url = a.create_url().await;
    let (id, code) = (
        url["id"].as_i64().expect("id"),
        url["short_code"].as_str().expect("code").to_owned(),
    );
    warm(&b, &code, url["original_url"].as_str().expect("target")).await;

    // Change the target through A: B must follow at once (its near cache is invalidated
    // by the published message, not by the 30 s TTL).
    let resp = a
        .put_json(
            &format!("/urls/{id}"),
            &json!({"original_url": "https://example.org/moved"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let changed = Instant::now();
    eventually(
        "B serves the new target",
        Duration::from_secs(1),
        || async {
            location(&b.get(&format!("/{code}")).await).as_deref()
                == Some("https://example.org/moved")
        },
    )
    .await;
    eprintln!("B followed the write in {:?}", changed.elapsed());

    // Deactivate through A: B answers 404.
    warm(&b, &code, "https://example.org/moved").await;
    let resp = a
        .put_json(&format!("/urls/{id}"), &json!({"is_active": false}))
        .await;
    assert_eq!(resp.status(), 200);
    eventually(
        "B stops redirecting a deactivated code",
        Duration::from_secs(1),
        || async { b.get(&format!("/{code}")).await.status() == 404 },
    )
    .await;

    // Delete through A after B cached it again as active.
    assert_eq!(
        a.put_json(&format!("/urls/{id}"), &json!({"is_active": true}))
            .await
            .status(),
        200
    );
    warm(&b, &code, "https://example.org/moved").await;
    assert_eq!(a.delete(&format!("/urls/{id}")).await.status(), 204);
    eventually(
        "B forgets a deleted code",
        Duration::from_secs(1),
        || async { b.get(&format!("/{code}")).await.status() == 404 },
    )
    .await;
}

#[tokio::test]
async fn a_replica_that_loses_the_invalidation_link_drops_its_near_cache() {
    let mut valkey = OwnValkey::start(free_port()).await;
    let mut cfg = test_config();
    cfg.redis_url = Some(valkey.url().into());
    let a = spawn_app_with(cfg.clone()).await;
    let b = spawn_app_with(cfg).await;
    let url = a.create_url().await;
    let (id, code) = (
        url["id"].as_i64().expect("id"),
        url["short_code"].as_str().expect("code").to_owned(),
    );
    warm(&b, &code, url["original_url"].as_str().expect("target")).await;

    // With Valkey gone, A's write cannot be published: B must not keep serving the old
    // target from memory.
    valkey.stop();
    let near = b.state.cache.near().expect("near cache enabled");
    eventually(
        "B notices the lost link",
        Duration::from_secs(5),
        || async { !near.is_live() },
    )
    .await;
    assert!(
        near.get(&code).is_none(),
        "the near cache was dropped with the link"
    );
    let resp = a
        .put_json(
            &format!("/urls/{id}"),
            &json!({"original_url": "https://example.org/while-down"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let r = b.get(&format!("/{code}")).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        location(&r).as_deref(),
        Some("https://example.org/while-down")
    );

    // Valkey back: B caches again by itself.
    let _valkey = OwnValkey::start(valkey.port).await;
    warm(&b, &code, "https://example.org/while-down").await;
}
