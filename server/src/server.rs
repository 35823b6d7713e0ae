//! The accept loop: a connection cap, HTTP/1.1 with keep-alive and a header-read
//! timeout, and a graceful drain raced against a deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::response::{Request, Response};
use crate::state::State;

/// What a listener serves: the API, or only `/metrics` (METRICS_PORT).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    Api,
    MetricsOnly,
}

async fn respond(req: Request, st: State, serves: Serves) -> Response {
    match serves {
        Serves::Api => crate::router::handle(req, &st).await,
        Serves::MetricsOnly if req.uri().path() == "/metrics" => {
            crate::handlers::health::metrics(&st)
        }
        Serves::MetricsOnly => crate::error::Error::NotFound("route").into_response(),
    }
}

/// Accepts connections until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish, up to `drain` long.
pub async fn serve(
    listener: TcpListener,
    st: State,
    serves: Serves,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(st.cfg.max_connections as usize));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(st.cfg.header_read_timeout_seconds))
        .keep_alive(true)
        .pipeline_flush(st.cfg.http1_pipeline_flush);
    tokio::pin!(shutdown);
    loop {
        // Past the connection cap, stop accepting (the kernel backlog queues) rather
        // than take on work we cannot serve.
        let permit = tokio::select! {
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            res = listener.accept() => match res {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if st.cfg.tcp_nodelay {
            let _ = stream.set_nodelay(true);
        }
        let st = Arc::clone(&st);
        let svc = service_fn(move |req| {
            let st = Arc::clone(&st);
            async move { Ok::<_, std::convert::Infallible>(respond(req, st, serves).await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!(deadline_s = drain.as_secs(), "drain deadline passed; closing remaining connections"),
    }
}
