//! The fault proxy: a TCP proxy (put between the server and PostgreSQL) whose
//! behaviour is switched at run time, without restarting anything:
//!
//! - `pass`: forward both ways untouched;
//! - `delay <ms>`: every chunk from the upstream reaches the client `<ms>`
//!   later (a delay line: latency, not a bandwidth cap), so each query round
//!   trip gains about `<ms>`;
//! - `refuse`: close every open connection and stop listening, so new
//!   connections are refused (ECONNREFUSED) until the mode changes;
//! - `hang`: keep connections open but forward nothing either way (a black
//!   hole: clients wait for their own timeouts).
//!
//! The mode is set through a small HTTP control endpoint ([`control`]):
//! `GET /mode` reads it, `PUT /mode` (or `POST`) with a body such as
//! `delay 250` sets it.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::http::{self, Body};

// === Mode ===

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Delay(Duration),
    Refuse,
    Hang,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let mode = match words.as_slice() {
            ["pass"] => Mode::Pass,
            ["refuse"] => Mode::Refuse,
            ["hang"] => Mode::Hang,
            ["delay", ms] => {
                let ms = ms.strip_suffix("ms").unwrap_or(ms);
                let ms: u64 = ms.parse().map_err(|_| {
                    format!("delay {ms:?}: give whole milliseconds, as in `delay 250`")
                })?;
                Mode::Delay(Duration::from_millis(ms))
            }
            ["delay"] => return Err("delay needs milliseconds, as in `delay 250`".to_string()),
            ["pass" | "refuse" | "hang" | "delay", ..] => {
                return Err(format!(
                    "{:?}: unexpected words after the mode",
                    text.trim()
                ))
            }
            _ => {
                return Err(format!(
                    "{:?} is not a mode; use pass, delay <ms>, refuse or hang",
                    text.trim()
                ))
            }
        };
        Ok(mode)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Pass => f.write_str("pass"),
            Mode::Delay(d) => write!(f, "delay {}", d.as_millis()),
            Mode::Refuse => f.write_str("refuse"),
            Mode::Hang => f.write_str("hang"),
        }
    }
}

// === Proxy ===

/// Accepts on `listener` and forwards each connection to `upstream`, as the
/// current value of `mode` says, until `shutdown`.
///
/// In `refuse` mode the listening socket is closed and bound again, on the
/// same address, when the mode changes back.
///
/// # Errors
/// When the listening address cannot be bound again after a `refuse`.
pub async fn run(
    listener: TcpListener,
    upstream: String,
    mut mode: watch::Receiver<Mode>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let mut listener = Some(listener);
    tokio::pin!(shutdown);
    loop {
        let current = *mode.borrow_and_update();
        if current == Mode::Refuse {
            listener = None;
            tokio::select! {
                changed = mode.changed() => if changed.is_err() { return Ok(()) },
                () = &mut shutdown => return Ok(()),
            }
            continue;
        }
        let active = match &mut listener {
            Some(active) => active,
            None => listener.insert(rebind(addr).await?),
        };
        tokio::select! {
            accepted = active.accept() => {
                if let Ok((client, _)) = accepted {
                    tokio::spawn(connection(client, upstream.clone(), mode.clone()));
                }
            }
            changed = mode.changed() => if changed.is_err() { return Ok(()) },
            () = &mut shutdown => return Ok(()),
        }
    }
}

/// Binds `addr` again, retrying briefly (a closed socket can take a moment).
async fn rebind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("rebind failed")))
}

/// One proxied connection: ends when both directions end, or at once when
/// the mode becomes `refuse` (dropping both sockets closes them).
async fn connection(client: TcpStream, upstream: String, mode: watch::Receiver<Mode>) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        // The client sees its connection closed, as with a dead upstream.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let both = async {
        let _ = tokio::join!(
            pump(client_read, server_write, mode.clone(), false),
            pump(server_read, client_write, mode.clone(), true),
        );
    };
    tokio::select! {
        () = both => {}
        () = until_refuse(mode.clone()) => {}
    }
}

async fn until_refuse(mut mode: watch::Receiver<Mode>) {
    loop {
        if *mode.borrow_and_update() == Mode::Refuse {
            return;
        }
        if mode.changed().await.is_err() {
            // The proxy is going away; the connection ends with the process.
            std::future::pending::<()>().await;
        }
    }
}

/// Copies `from` to `to`. With `delayed`, each chunk is held until the delay
/// in force when it was read has passed; chunks keep their order. In `hang`,
/// nothing is read until the mode changes.
async fn pump<R, W>(mut from: R, mut to: W, mut mode: watch::Receiver<Mode>, delayed: bool)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Bounded: a slow writer slows the reader instead of buffering without end.
    let (queue, mut pending) = mpsc::channel::<(Instant, Bytes)>(256);
    let writer = async move {
        while let Some((due, chunk)) = pending.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // The reader saw end of stream: pass the half-close on.
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            while *mode.borrow_and_update() == Mode::Hang {
                if mode.changed().await.is_err() {
                    return;
                }
            }
            let n = tokio::select! {
                read = from.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                // A switch to hang must stop a reader that is waiting for data.
                changed = mode.changed() => {
                    if changed.is_err() { return }
                    continue;
                }
            };
            let delay = match *mode.borrow() {
                Mode::Delay(d) if delayed => d,
                _ => Duration::ZERO,
            };
            let chunk = Bytes::copy_from_slice(&buf[..n]);
            if queue.send((Instant::now() + delay, chunk)).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}

// === Control endpoint ===

/// Answers one control request: `GET /mode`, `PUT|POST /mode`, `GET /health`.
pub async fn control(mode: watch::Sender<Mode>, req: Request<Incoming>) -> Response<Body> {
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/health") => http::text(StatusCode::OK, "ok\n"),
        (Method::GET, "/mode") => http::text(StatusCode::OK, format!("{}\n", *mode.borrow())),
        (Method::PUT | Method::POST, "/mode") => {
            let body = match http::read_body(req).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            match String::from_utf8_lossy(&body).parse::<Mode>() {
                Ok(new) => {
                    mode.send_replace(new);
                    http::text(StatusCode::OK, format!("{new}\n"))
                }
                Err(why) => http::text(StatusCode::BAD_REQUEST, format!("{why}\n")),
            }
        }
        (_, "/mode") => http::text(StatusCode::METHOD_NOT_ALLOWED, "GET or PUT /mode\n"),
        _ => http::text(StatusCode::NOT_FOUND, "try GET or PUT /mode\n"),
    }
}

/// Serves the control endpoint on `listener` until `shutdown`.
pub async fn serve_control(
    listener: TcpListener,
    mode: watch::Sender<Mode>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    http::serve(listener, move |req| control(mode.clone(), req), shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_back() {
        for text in ["pass", "refuse", "hang", "delay 250"] {
            let mode: Mode = text.parse().expect(text);
            assert_eq!(mode.to_string(), text);
        }
        assert_eq!(
            "delay 40ms".parse(),
            Ok(Mode::Delay(Duration::from_millis(40)))
        );
        assert_eq!("  pass\n".parse(), Ok(Mode::Pass));
    }

    #[test]
    fn bad_modes_are_refused_with_a_reason() {
        assert!("delay"
            .parse::<Mode>()
            .expect_err("must be refused")
            .contains("milliseconds"));
        assert!("slow"
            .parse::<Mode>()
            .expect_err("must be refused")
            .contains("not a mode"));
        assert!("delay soon"
            .parse::<Mode>()
            .expect_err("must be refused")
            .contains("milliseconds"));
        assert!("pass now"
            .parse::<Mode>()
            .expect_err("must be refused")
            .contains("unexpected"));
        assert!("drop".parse::<Mode>().is_err());
    }
}
