//! One request end to end through the service, in process, without a network socket
//! for HTTP: a hyper client and hyper's server connection talk over an in-memory
//! pipe (`tokio::io::duplex`), and the server side calls `shortener::router::handle`
//! with the `AppState` of a real `App` (metrics recorder, access log, event queue).
//!
//! - `e2e/health`: the request path with no dependency at all (floor of the stack).
//! - `e2e/not_found`: an implausible short code (router, error mapping, metrics).
//! - `e2e/redirect_cached`: `GET /{code}` for a code already in the cache, when
//!   BENCH_DATABASE_URL and BENCH_REDIS_URL point at a seeded database and a Valkey
//!   (`make bench` passes the perf profile's when it is running; `make perf` seeds it).
//!   With the near cache (and its invalidation link up) the warmed codes are served
//!   from process memory; without it, the lookup is one Valkey round trip on loopback.
//!
//! A single-threaded runtime, so the figure is CPU per request, not scheduling luck.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use shortener::config::Config;
use shortener::state::State;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .noise_threshold(0.05)
}

/// The app's state, built as `serve` builds it (its listeners bound on port 0 and unused).
async fn app_state(cfg: Config) -> State {
    let app = shortener::App::build(cfg)
        .await
        .expect("building the app: a bench setup failure");
    let st = app.state();
    // The App (its listeners and event writer) must outlive the bench.
    std::mem::forget(app);
    st
}

/// A client connected to `router::handle` over an in-memory pipe.
async fn connect(st: State) -> SendRequest<Empty<Bytes>> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let svc = service_fn(move |req| {
        let st = State::clone(&st);
        async move { Ok::<_, Infallible>(shortener::router::handle(req, &st).await) }
    });
    tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(server_io), svc)
            .await;
    });
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client_io))
        .await
        .expect("in-memory handshake cannot fail");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

async fn get(sender: &mut SendRequest<Empty<Bytes>>, path: &str) -> u16 {
    let req = http::Request::get(path)
        .header(http::header::HOST, "bench")
        .header(http::header::USER_AGENT, "criterion/0.8")
        .body(Empty::new())
        .expect("a static request is valid");
    let resp = sender.send_request(req).await.expect("in-memory request");
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

fn bench_path(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    st: &State,
    paths: &[String],
) {
    let mut sender = rt.block_on(connect(State::clone(st)));
    let mut i = 0usize;
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    i = (i + 1) % paths.len();
                    black_box(get(&mut sender, &paths[i]).await);
                }
                start.elapsed()
            })
        })
    });
}

fn e2e(c: &mut Criterion) {
    // The access log line is formatted as in production (JSON), into a sink.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .with_current_span(false)
        .try_init();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime always builds");

    let db = std::env::var("BENCH_DATABASE_URL").ok();
    let redis = std::env::var("BENCH_REDIS_URL").ok();
    let with_services = db.is_some() && redis.is_some();
    let mut cfg = Config::with_urls(
        db.as_deref()
            .unwrap_or("postgres://postgres@127.0.0.1:1/none"),
        redis.as_deref().unwrap_or("redis://127.0.0.1:1/"),
    );
    cfg.host = [127, 0, 0, 1].into();
    cfg.port = 0;
    cfg.cache_enabled = with_services;
    // A distinct prefix: the bench's cache entries never mix with a running server's.
    cfg.cache_key_prefix = "bench:".into();
    let st = rt.block_on(app_state(cfg));

    bench_path(c, &rt, "e2e/health", &st, &["/health".to_owned()]);
    bench_path(c, &rt, "e2e/not_found", &st, &["/not.a.code".to_owned()]);

    if !with_services {
        eprintln!("e2e/redirect_cached skipped: set BENCH_DATABASE_URL and BENCH_REDIS_URL (make bench does when the perf services run)");
        return;
    }
    // Warm: the first 2,000 seeded codes; keep those that redirect (10 % are inactive).
    let paths: Vec<String> = rt.block_on(async {
        let mut sender = connect(State::clone(&st)).await;
        let mut ok = Vec::new();
        for id in 1..=2000u64 {
            let p = format!("/{}", shortener::db::seed::seed_code(id));
            if get(&mut sender, &p).await == 302 {
                ok.push(p);
            }
        }
        // put_link is fire-and-forget: let the SETs land before measuring hits.
        tokio::time::sleep(Duration::from_millis(300)).await;
        ok
    });
    if paths.is_empty() {
        eprintln!("e2e/redirect_cached skipped: no seeded code redirects (run `make perf` or seed the perf database)");
        return;
    }
    bench_path(c, &rt, "e2e/redirect_cached", &st, &paths);

    // === NEAR-CACHE SLOT ===
    // With the near cache, `e2e/redirect_cached` is served from process memory after
    // the warm-up above; add `e2e/redirect_near_cache_disabled` here (same codes, the
    // near cache turned off through its config field) to keep the Valkey-hit figure.
}

criterion_group! {
    name = benches;
    config = config();
    targets = e2e
}
criterion_main!(benches);
