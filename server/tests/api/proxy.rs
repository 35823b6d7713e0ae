//! A TCP proxy in front of PostgreSQL that a test steers: pass traffic, hold the
//! answer to a COMMIT (the transaction commits, its client does not hear so), or
//! hang everything. Lets a test stop the server at an exact point of a write
//! without sleeping.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// A connection that sends a COMMIT gets no answer until the mode is Pass again.
    HoldCommitAnswers,
    /// Nothing flows in either direction until the mode is Pass again.
    Hang,
    /// Open connections are cut and new ones closed at once: PostgreSQL is gone.
    Refuse,
}

pub struct PgProxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    commits: watch::Receiver<u64>,
    held: watch::Receiver<u64>,
    refused: watch::Receiver<u64>,
}

impl PgProxy {
    pub async fn start(upstream_port: u16) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let (commits_tx, commits) = watch::channel(0u64);
        let (held_tx, held) = watch::channel(0u64);
        let (refused_tx, refused) = watch::channel(0u64);
        let counters = Arc::new(Counters {
            commits: commits_tx,
            held: held_tx,
        });
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *mode_rx.borrow() == Mode::Refuse {
                    drop(client);
                    refused_tx.send_modify(|c| *c += 1);
                    continue;
                }
                let (mode_rx, counters) = (mode_rx.clone(), Arc::clone(&counters));
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)).await {
                        pump_pair(client, server, mode_rx, counters).await;
                    }
                });
            }
        });
        PgProxy {
            port,
            mode,
            commits,
            held,
            refused,
        }
    }

    pub fn set(&self, mode: Mode) {
        let _ = self.mode.send(mode);
    }

    /// Waits until `n` COMMITs in all have gone through to PostgreSQL.
    pub async fn commits_sent(&self, n: u64) {
        let mut rx = self.commits.clone();
        let _ = rx.wait_for(|c| *c >= n).await;
    }

    /// Waits until `n` messages in all have been held by `Mode::Hang` on their way to
    /// PostgreSQL (each is a statement some task now waits on).
    pub async fn messages_held(&self, n: u64) {
        let mut rx = self.held.clone();
        let _ = rx.wait_for(|c| *c >= n).await;
    }

    /// Waits until `n` connections in all have been refused (`Mode::Refuse`).
    pub async fn connections_refused(&self, n: u64) {
        let mut rx = self.refused.clone();
        let _ = rx.wait_for(|c| *c >= n).await;
    }

    /// A DATABASE_URL for this binary's database through the proxy.
    pub fn database_url(&self) -> String {
        let mut cfg: tokio_postgres::Config =
            crate::helpers::database_url().parse().expect("url parses");
        cfg.port(self.port);
        let user = cfg.get_user().unwrap_or("postgres").to_owned();
        let db = cfg.get_dbname().unwrap_or("postgres").to_owned();
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }
}

/// The port of this binary's database.
pub fn database_port() -> u16 {
    let cfg: tokio_postgres::Config = crate::helpers::database_url().parse().expect("url parses");
    cfg.get_ports().first().copied().unwrap_or(5432)
}

struct Counters {
    commits: watch::Sender<u64>,
    held: watch::Sender<u64>,
}

async fn pump_pair(
    client: TcpStream,
    server: TcpStream,
    mode: watch::Receiver<Mode>,
    counters: Arc<Counters>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // Set once this connection has sent a COMMIT while answers are being held.
    let (held_tx, held_rx) = watch::channel(false);
    let up = {
        let mut mode = mode.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if *mode.borrow() == Mode::Hang {
                    counters.held.send_modify(|c| *c += 1);
                    let _ = mode.wait_for(|m| *m != Mode::Hang).await;
                }
                let chunk = &buf[..n];
                let is_commit = chunk.windows(7).any(|w| w == b"COMMIT\0");
                if is_commit && *mode.borrow() == Mode::HoldCommitAnswers {
                    let _ = held_tx.send(true);
                }
                if sw.write_all(chunk).await.is_err() {
                    break;
                }
                if is_commit {
                    counters.commits.send_modify(|c| *c += 1);
                }
            }
        }
    };
    let down = {
        let mut mode = mode.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match sr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let _ = mode.wait_for(|m| *m != Mode::Hang).await;
                if *held_rx.borrow() {
                    let _ = mode.wait_for(|m| *m == Mode::Pass).await;
                }
                if cw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    };
    // Refuse cuts the connection whatever it is doing.
    let mut refused = mode.clone();
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = refused.wait_for(|m| *m == Mode::Refuse) => {}
    }
}
