//! The fault proxy over real sockets: pass, delay, hang, refuse and back,
//! switched through its HTTP control endpoint while a connection is open.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use loadtest::proxy::{self, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that echoes everything back.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `msg` and reads it back; how long that took.
async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Duration {
    let started = Instant::now();
    stream.write_all(msg).await.expect("write");
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut back))
        .await
        .expect("echo within 5 s")
        .expect("read");
    assert_eq!(back, msg);
    started.elapsed()
}

async fn set_mode(client: &reqwest::Client, control: &str, mode: &str) {
    let response = client
        .put(format!("{control}/mode"))
        .body(mode.to_string())
        .send()
        .await
        .expect("control");
    assert_eq!(response.status().as_u16(), 200, "{mode}");
}

#[tokio::test]
async fn proxy_passes_delays_hangs_refuses_and_recovers_on_command() {
    let upstream = echo_server().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let proxy_addr = listener.local_addr().expect("proxy addr");
    let control_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind control");
    let control = format!(
        "http://{}",
        control_listener.local_addr().expect("control addr")
    );
    let (mode_tx, mode_rx) = tokio::sync::watch::channel(Mode::Pass);
    tokio::spawn(proxy::serve_control(
        control_listener,
        mode_tx,
        std::future::pending(),
    ));
    tokio::spawn(proxy::run(
        listener,
        upstream.to_string(),
        mode_rx,
        std::future::pending(),
    ));
    let client = reqwest::Client::new();

    // pass
    let mut conn = TcpStream::connect(proxy_addr).await.expect("connect");
    assert!(round_trip(&mut conn, b"ping").await < Duration::from_millis(150));

    // delay: the open connection's round trips gain the delay.
    set_mode(&client, &control, "delay 200").await;
    let mode = client
        .get(format!("{control}/mode"))
        .send()
        .await
        .expect("get mode");
    assert_eq!(mode.text().await.expect("mode body").trim(), "delay 200");
    let slow = round_trip(&mut conn, b"slow").await;
    assert!(slow >= Duration::from_millis(200), "{slow:?}");
    assert!(slow < Duration::from_secs(2), "{slow:?}");

    // hang: nothing comes back until the mode changes.
    set_mode(&client, &control, "hang").await;
    conn.write_all(b"held").await.expect("write while hung");
    let mut back = [0u8; 4];
    let waited = tokio::time::timeout(Duration::from_millis(300), conn.read_exact(&mut back)).await;
    assert!(waited.is_err(), "data passed while hung");
    set_mode(&client, &control, "pass").await;
    tokio::time::timeout(Duration::from_secs(2), conn.read_exact(&mut back))
        .await
        .expect("released after hang")
        .expect("read after hang");
    assert_eq!(&back, b"held");

    // refuse: the open connection is closed, new ones are refused.
    set_mode(&client, &control, "refuse").await;
    let mut rest = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut rest))
        .await
        .expect("closed within 2 s");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match TcpStream::connect(proxy_addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ if Instant::now() > deadline => panic!("connections still accepted in refuse"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }

    // back to pass: the proxy listens again on the same address.
    set_mode(&client, &control, "pass").await;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut conn = loop {
        match TcpStream::connect(proxy_addr).await {
            Ok(conn) => break conn,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("not listening again after refuse: {e}"),
        }
    };
    assert!(round_trip(&mut conn, b"back").await < Duration::from_millis(150));

    let bad = client
        .put(format!("{control}/mode"))
        .body("slower")
        .send()
        .await
        .expect("control");
    assert_eq!(bad.status().as_u16(), 400);
}
