//! Valkey behind Sentinel: the service finds the master through the Sentinels and
//! follows a failover by itself, without a restart and without a failed request.
//! `make test` starts the group (scripts/services.sh sentinel-start test) and passes
//! it in VALKEY_SENTINELS / VALKEY_SENTINEL_MASTER.

use std::time::{Duration, Instant};

use crate::helpers::*;

fn sentinels() -> Option<(Vec<String>, String)> {
    let list = std::env::var("VALKEY_SENTINELS")
        .ok()
        .filter(|s| !s.is_empty())?;
    let master = std::env::var("VALKEY_SENTINEL_MASTER").unwrap_or_else(|_| "mymaster".into());
    Some((
        list.split(',').map(|s| s.trim().to_owned()).collect(),
        master,
    ))
}

async fn master_addr(sentinel: &str, master: &str) -> Option<(String, u16)> {
    let client = redis::Client::open(format!("redis://{sentinel}/")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let (host, port): (String, u16) = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master)
        .query_async(&mut conn)
        .await
        .ok()?;
    Some((host, port))
}

#[tokio::test]
async fn the_cache_follows_a_sentinel_failover_without_a_failed_request() {
    let Some((nodes, master)) = sentinels() else {
        // `make test` always sets it; a bare `cargo test` may not have a group running.
        eprintln!("VALKEY_SENTINELS is not set: skipping (make test runs this)");
        return;
    };
    let mut cfg = test_config();
    cfg.valkey_sentinels = Some(nodes.join(","));
    cfg.valkey_sentinel_master = master.clone();
    cfg.redis_url = Some("redis://127.0.0.1:1/".into()); // must not be used
    let app = spawn_app_with(cfg).await;

    let url = app.create_url().await;
    let path = format!("/urls/{}", url["id"]);
    assert_eq!(app.get(&path).await.headers()["x-cache"], "MISS");
    eventually(
        "a HIT through the Sentinel-discovered master",
        Duration::from_secs(5),
        || async { app.get(&path).await.headers()["x-cache"] == "HIT" },
    )
    .await;

    // Stop the master; Sentinel promotes the replica.
    let (host, port) = master_addr(&nodes[0], &master)
        .await
        .expect("sentinel answers");
    let old = (host.clone(), port);
    if let Ok(client) = redis::Client::open(format!("redis://{host}:{port}/")) {
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN")
                .arg("NOSAVE")
                .query_async(&mut conn)
                .await;
        }
    }

    // Every request keeps succeeding while the failover happens, and caching resumes
    // on the new master without a restart.
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut requests = 0;
    let mut promoted = false;
    loop {
        let fresh = app.create_url().await; // asserts 201 itself
        let fresh_path = format!("/urls/{}", fresh["id"]);
        let first = app.get(&fresh_path).await;
        assert_eq!(first.status(), 200, "a request failed during the failover");
        let code = fresh["short_code"].as_str().expect("code");
        let redirect = app.get(&format!("/{code}")).await;
        assert_eq!(
            redirect.status(),
            302,
            "a redirect failed during the failover"
        );
        requests += 3;
        if !promoted {
            promoted = master_addr(&nodes[1 % nodes.len()], &master)
                .await
                .is_some_and(|a| a != old);
        }
        if promoted {
            let second = app.get(&fresh_path).await;
            assert_eq!(second.status(), 200);
            if second.headers()["x-cache"] == "HIT" {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "caching did not resume after the failover (promoted: {promoted})"
        );
    }
    eprintln!("failover followed; {requests} requests, none failed");
}
