//! The binary: allocator, configuration, logging, runtime, and the subcommands.

use anyhow::Context;
use clap::Parser;
use shortener::config::{Cli, Command};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.config.log_level).with_context(|| {
        format!(
            "LOG_LEVEL={:?} is not a valid level or tracing directive",
            cli.config.log_level
        )
    })?;
    // Logs go through a background writer: no blocking stdout write on a runtime thread.
    // The writer thread flushes whenever it has drained the queue, so the buffer turns a
    // write(2) per line into one per burst (PERF.md#what-was-tried) without delaying a
    // line when the server is quiet.
    let stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    // 32,768 lines (~1 MiB of queue slots, allocated up front) absorb about a second
    // of a stalled stdout at full load; past that, lines are dropped, never waited on.
    let (writer, _flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(32 * 1024)
        .finish(stdout);
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(writer.clone())
        .with_current_span(false)
        .init();

    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if cli.config.worker_threads > 0 {
        rt.worker_threads(cli.config.worker_threads);
    }
    let rt = rt.build().context("starting the tokio runtime")?;
    let result = rt.block_on(run(cli, writer));
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "exiting on error");
    }
    result
}

async fn run(
    cli: Cli,
    log_writer: tracing_appender::non_blocking::NonBlocking,
) -> anyhow::Result<()> {
    let cfg = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let mut client = shortener::db::migrate::connect(&cfg).await?;
            let applied = shortener::db::migrate::run(&mut client).await?;
            tracing::info!(applied, "migrations up to date");
        }
        Command::Seed(args) => {
            let mut client = shortener::db::migrate::connect(&cfg).await?;
            shortener::db::seed::run(&mut client, &args).await?;
        }
        Command::Serve => {
            tracing::info!(config = ?cfg, version = env!("CARGO_PKG_VERSION"), "starting");
            let app = shortener::App::build(cfg)
                .await?
                .with_access_log(shortener::access_log::AccessLog::new(log_writer));
            tracing::info!(addr = %app.local_addr(), metrics = ?app.metrics_addr(), "listening");
            app.run(shutdown_signal()).await?;
        }
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "signal received"),
        () = term => tracing::info!(signal = "SIGTERM", "signal received"),
    }
}
