//! Criterion benches for the pure pieces of the hot paths: the router's match,
//! short-code generation, JSON encoding, cache keys and values, the redirect-event
//! encoder. No I/O; the end-to-end redirect is in `e2e.rs`.
//!
//! Budget: `make bench` runs the whole suite in well under 3 minutes (short warm-up
//! and measurement windows below); `scripts/bench-compare.sh` compares runs.

use std::hint::black_box;
use std::time::Duration;

use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::Method;
use shortener::clicks::agent::{referrer_host, Classifier};
use shortener::clicks::rollup::{Daily, Hourly, LinkClick};
use shortener::domain::{Link, Url};

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .noise_threshold(0.03)
}

fn router(c: &mut Criterion) {
    let mut g = c.benchmark_group("router");
    let cases = [
        ("redirect", Method::GET, "/Ab3xY9q"),
        ("redirect_legacy", Method::GET, "/urls/Ab3xY9q/redirect"),
        ("get_url", Method::GET, "/urls/123456"),
        ("list_users", Method::GET, "/users"),
        ("wrong_method", Method::POST, "/health"),
        ("unmatched", Method::GET, "/a/b/c/d"),
    ];
    for (name, method, path) in cases {
        g.bench_function(name, |b| {
            b.iter(|| shortener::router::route(black_box(&method), black_box(path), true))
        });
    }
    g.finish();
}

fn codes(c: &mut Criterion) {
    let mut g = c.benchmark_group("codes");
    g.bench_function("generate_code", |b| {
        b.iter(shortener::domain::generate_code)
    });
    g.bench_function("is_plausible_code", |b| {
        b.iter(|| shortener::domain::is_plausible_code(black_box("Ab3xY9q")))
    });
    g.finish();
}

fn url(id: i64) -> Url {
    let at = NaiveDate::from_ymd_opt(2025, 9, 19)
        .and_then(|d| d.and_hms_opt(22, 25, 5))
        .unwrap_or_default();
    Url {
        id,
        user_id: 4242,
        short_code: shortener::db::seed::seed_code(id as u64),
        original_url: format!("https://relay.cloud/amber/harvest/{id}"),
        title: "Launch plan meadow".into(),
        is_active: true,
        created_at: at,
        updated_at: at,
    }
}

fn json(c: &mut Criterion) {
    let mut g = c.benchmark_group("json");
    let one = url(123_456);
    let page: Vec<Url> = (1..=20).map(url).collect();
    g.bench_function("url", |b| b.iter(|| serde_json::to_vec(black_box(&one))));
    g.throughput(Throughput::Elements(20));
    g.bench_function("url_page_20", |b| {
        b.iter(|| serde_json::to_vec(black_box(&page)))
    });
    g.finish();
}

fn cache(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache");
    // BENCH-STANDIN: the equivalent of the private Cache::key (see benches/src/lib.rs).
    g.bench_function("key_id", |b| {
        b.iter(|| benches::cache_key(black_box("us:"), black_box("url"), black_box(123_456_i64)))
    });
    g.bench_function("key_code", |b| {
        b.iter(|| benches::cache_key(black_box("us:"), black_box("code"), black_box("Ab3xY9q")))
    });
    let link = Link {
        url_id: 123_456,
        user_id: 4242,
        is_active: true,
        target: "https://relay.cloud/amber/harvest/123456".into(),
    };
    let encoded = shortener::cache::encode_link(&link);
    g.bench_function("link_encode", |b| {
        b.iter(|| shortener::cache::encode_link(black_box(&link)))
    });
    g.bench_function("link_decode", |b| {
        b.iter(|| shortener::cache::decode_link(black_box(&encoded)))
    });
    g.finish();
}

// === near cache ===

/// `shortener::near::NearCache`, filled as the server fills it: every seeded code of a
/// 100,000-URL database, live (invalidation link up).
fn near_cache(c: &mut Criterion) {
    use shortener::near::{NearCache, Target};
    const N: u64 = 100_000;
    let near = NearCache::new(N as usize, Duration::from_secs(30));
    near.set_live(true);
    let codes: Vec<String> = (1..=N).map(shortener::db::seed::seed_code).collect();
    for (i, code) in codes.iter().enumerate() {
        let link = Link {
            url_id: i as i64 + 1,
            user_id: 4242,
            is_active: true,
            target: format!("https://relay.cloud/amber/harvest/{}", i + 1),
        };
        near.insert(code, Target::from_link(code, &link), near.epoch());
    }
    let mut g = c.benchmark_group("near_cache");
    let mut i = 0usize;
    g.bench_function("hit", |b| {
        b.iter(|| {
            i = (i + 7919) % codes.len();
            near.get(black_box(&codes[i]))
        })
    });
    g.bench_function("miss", |b| b.iter(|| near.get(black_box("zzzzzz9"))));
    g.bench_function("insert", |b| {
        b.iter(|| {
            i = (i + 7919) % codes.len();
            near.insert(&codes[i], None, near.epoch())
        })
    });
    g.finish();
}

/// The click writer's per-click work: classifying the user agent (cached, and the
/// first time), and folding the click into a flush's rollups.
fn clicks(c: &mut Criterion) {
    let mut g = c.benchmark_group("clicks");
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
    let referrer = "https://news.example.com/item?id=42";
    let classifier = Classifier::new(10_000);
    g.bench_function("classify_cached", |b| {
        b.iter(|| classifier.classify(black_box(Some(ua))))
    });
    g.bench_function("classify_uncached", |b| {
        b.iter(|| Classifier::new(1).classify(black_box(Some(ua))))
    });
    g.bench_function("referrer_host", |b| {
        b.iter(|| referrer_host(black_box(Some(referrer))))
    });
    const N: usize = 1000;
    let agent = classifier.classify(Some(ua));
    let code: std::sync::Arc<str> = std::sync::Arc::from("Ab3xY9q");
    let at = chrono::Utc::now();
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("rollup_1000", |b| {
        b.iter(|| {
            let (mut hourly, mut daily) = (Hourly::default(), Daily::default());
            for i in 0..N as i64 {
                let click = LinkClick {
                    id: None,
                    at,
                    url_id: i % 100,
                    user_id: 7,
                    code: &code,
                    agent: &agent,
                    referrer: Some(referrer),
                    user_agent: Some(ua),
                };
                hourly.add_link(&click, false);
                daily.add(&click, std::sync::Arc::from("news.example.com"));
            }
            black_box((hourly.clicks(), daily.clicks()))
        })
    });
    g.finish();
}

criterion_group! {
    name = hot;
    config = config();
    targets = router, codes, json, cache, near_cache, clicks
}
criterion_main!(hot);
