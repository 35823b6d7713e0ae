//! The ceiling: the fastest this stack can answer a redirect on this machine. A bare
//! hyper 1.x server that answers `GET /{code}` with a 302 and a `Location` from an
//! in-memory map: no database, no cache, no metrics, no logs. Same allocator
//! (mimalloc), release profile (the workspace's), runtime (multi-thread tokio,
//! WORKER_THREADS) and connection settings (TCP_NODELAY, HTTP/1.1 keep-alive, a
//! header-read timeout) as `url-shortener serve` (server/src/main.rs, server.rs).
//!
//! Usage: `ceiling [--port 5101] [--codes FILE | --seed-urls N]`
//! - `--codes FILE`: `code<TAB>target` lines (what `scripts/perf.sh` dumps from the
//!   seeded database, so both servers answer the same codes with the same targets);
//! - `--seed-urls N`: the codes `url-shortener seed` gives ids `1..=N`.
//!
//! Not here: anything the real service does besides the lookup.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

static NO_SHARED_CACHE: HeaderValue = HeaderValue::from_static("private, max-age=0");
static JSON: HeaderValue = HeaderValue::from_static("application/json");

type Map = HashMap<String, HeaderValue>;

struct Args {
    port: u16,
    codes: Option<std::path::PathBuf>,
    seed_urls: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        port: 5101,
        codes: None,
        seed_urls: 100_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => args.port = value()?.parse().context("--port: not a port")?,
            "--codes" => args.codes = Some(value()?.into()),
            "--seed-urls" => {
                args.seed_urls = value()?.parse().context("--seed-urls: not a number")?
            }
            "-h" | "--help" => {
                println!("ceiling [--port 5101] [--codes FILE | --seed-urls N]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; see --help"),
        }
    }
    Ok(args)
}

fn build_map(args: &Args) -> anyhow::Result<Map> {
    let pairs = match &args.codes {
        Some(path) => benches::load_codes(path)?,
        None => benches::seed_codes(args.seed_urls),
    };
    pairs
        .into_iter()
        .map(|(code, target)| {
            let v = HeaderValue::from_str(&target)
                .with_context(|| format!("target of {code} is not a header value"))?;
            Ok((code, v))
        })
        .collect()
}

fn answer(map: &Map, path: &str) -> Response<Full<Bytes>> {
    let code = path.strip_prefix('/').unwrap_or(path);
    match map.get(code) {
        Some(target) => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::FOUND;
            let h = resp.headers_mut();
            h.insert(header::LOCATION, target.clone());
            h.insert(header::CACHE_CONTROL, NO_SHARED_CACHE.clone());
            resp
        }
        None => {
            let mut resp = Response::new(Full::new(Bytes::from_static(
                br#"{"error":"short code not found"}"#,
            )));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, JSON.clone());
            resp
        }
    }
}

async fn serve(listener: TcpListener, map: Arc<Map>) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true)
        // The server's defaults for HTTP1_PIPELINE_FLUSH (off) and TCP_NODELAY (on).
        .pipeline_flush(false);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ceiling: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let map = Arc::clone(&map);
        let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let resp = answer(&map, req.uri().path());
            async move { Ok::<_, Infallible>(resp) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let map = Arc::new(build_map(&args)?);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    // The same knob as the server's WORKER_THREADS (0 = one per core).
    let workers: usize = std::env::var("WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if workers > 0 {
        rt.worker_threads(workers);
    }
    let rt = rt.build().context("starting the tokio runtime")?;
    rt.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        eprintln!("ceiling: {} codes, listening on {addr}", map.len());
        tokio::select! {
            () = serve(listener, map) => {}
            r = tokio::signal::ctrl_c() => { r.context("waiting for SIGINT")?; }
        }
        Ok(())
    })
}
