//! `faultproxy`: a TCP proxy whose mode (pass, delay <ms>, refuse, hang) is
//! switched at run time through a control endpoint. See `loadtest::proxy`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use loadtest::proxy::{self, Mode};

/// Forward TCP to an upstream, injecting delay or refusal on command.
///
/// Switch the mode with: curl -X PUT --data 'delay 250' http://CONTROL/mode
/// (modes: pass, delay <ms>, refuse, hang); read it with GET /mode.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to accept connections on (port 0 picks a free port)
    #[arg(long)]
    listen: SocketAddr,
    /// Upstream to forward to, host:port
    #[arg(long)]
    upstream: String,
    /// Address of the HTTP control endpoint
    #[arg(long, default_value = "127.0.0.1:15480")]
    control: SocketAddr,
    /// Mode at start
    #[arg(long, default_value = "pass", value_parser = |s: &str| s.parse::<Mode>())]
    mode: Mode,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let (listener, control) = match tokio::try_join!(
        tokio::net::TcpListener::bind(args.listen),
        tokio::net::TcpListener::bind(args.control)
    ) {
        Ok(both) => both,
        Err(e) => {
            eprintln!(
                "faultproxy: binding {} or {}: {e}",
                args.listen, args.control
            );
            return ExitCode::from(2);
        }
    };
    let shown = |l: &tokio::net::TcpListener, a: SocketAddr| {
        l.local_addr()
            .map_or_else(|_| a.to_string(), |a| a.to_string())
    };
    // Harnesses read this line to learn the ports.
    println!(
        "faultproxy: listening on {}, forwarding to {}, control on {}, mode {}",
        shown(&listener, args.listen),
        args.upstream,
        shown(&control, args.control),
        args.mode
    );
    let (mode_tx, mode_rx) = tokio::sync::watch::channel(args.mode);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tokio::spawn(proxy::serve_control(
        control,
        mode_tx,
        stopped(stop_rx.clone()),
    ));
    let signal = tokio::spawn(async move {
        loadtest::http::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let result = proxy::run(listener, args.upstream, mode_rx, stopped(stop_rx)).await;
    signal.abort();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faultproxy: {e}");
            ExitCode::FAILURE
        }
    }
}
