//! `webhook_sink`: records the notifications Alertmanager sends (webhook or
//! Discord bodies) to a JSONL file and answers 204. See `loadtest::sink`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Record POSTed webhook notifications to a JSONL file, answering 204.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the one chosen is printed)
    #[arg(long, default_value = "127.0.0.1:9099")]
    listen: SocketAddr,
    /// JSONL file to append one line per notification to
    #[arg(long, default_value = "webhook-sink.jsonl")]
    out: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let sink = match loadtest::sink::Sink::open(&args.out).await {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("webhook_sink: opening {}: {e}", args.out.display());
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("webhook_sink: listening on {}: {e}", args.listen);
            return ExitCode::from(2);
        }
    };
    let local = listener
        .local_addr()
        .map_or_else(|_| args.listen.to_string(), |a| a.to_string());
    // Harnesses read this line to learn the port.
    println!(
        "webhook_sink: listening on {local}, recording to {}",
        args.out.display()
    );
    loadtest::sink::serve(listener, sink, loadtest::http::shutdown_signal()).await;
    ExitCode::SUCCESS
}
