//! `loadtest`: goose load tests for the URL shortener.
//!
//! Parses goose's command line plus ours, prepares the data (and the click
//! check's baseline), registers the scenarios, runs, checks the clicks, and exits
//! non-zero naming each broken threshold or lost click. The transactions live in
//! `scenarios/`; see README.md for how to run each one.

use std::process::ExitCode;
use std::sync::Arc;

use goose::config::GooseConfiguration;
use goose::prelude::*;
use loadtest::cli::{self, Wait};
use loadtest::data::Dataset;
use loadtest::scenarios::common::{build_client, Ctx};
use loadtest::scenarios::{cold, mix, redirect, write};
use loadtest::{bodies, run};

#[tokio::main]
async fn main() -> ExitCode {
    let (config, options) = match cli::parse(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    let host = match (&config.host, cli::needs_target(&config)) {
        (Some(host), true) => Some(host.clone()),
        (None, true) => {
            eprintln!("loadtest: {}", cli::NO_HOST);
            return ExitCode::from(2);
        }
        (_, false) => None,
    };
    let client = match build_client(config.timeout.as_deref()) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::from(2);
        }
    };
    let run_tag = bodies::run_tag(&mut rand::rng());
    let data = match &host {
        Some(host) => {
            let selects = |name: &str| cli::selects(&config, name);
            match run::prepare(&client, host, &options, &run_tag, selects).await {
                Ok(data) => data,
                Err(e) => {
                    eprintln!("loadtest: {e:#}");
                    return ExitCode::from(2);
                }
            }
        }
        None => Dataset::new(Vec::new(), Vec::new(), 1.0, 0),
    };
    if options.setup_only {
        return ExitCode::SUCCESS;
    }
    let baseline = match &host {
        Some(host) => {
            let selects = |name: &str| cli::selects(&config, name);
            match run::click_baseline(&client, host, &options, &data, selects).await {
                Ok(baseline) => baseline,
                Err(e) => {
                    eprintln!("loadtest: {e:#}");
                    return ExitCode::from(2);
                }
            }
        }
        None => None,
    };
    let ctx = Arc::new(Ctx::new(
        client,
        data,
        run_tag,
        options.unknown_percent / 100.0,
    ));
    let limits = options.limits();
    match attack(config, &ctx, options.wait_ms) {
        Ok(attack) => {
            let outcome = attack.execute().await;
            let clicks =
                run::check_clicks(&ctx, host.as_deref(), baseline.as_ref(), &options, &outcome)
                    .await;
            run::judge(outcome, &limits, clicks.as_ref())
        }
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::from(2)
        }
    }
}

/// The scenarios, selected by goose's `--scenarios` (default `mix`).
fn attack(
    config: GooseConfiguration,
    ctx: &Arc<Ctx>,
    wait: Option<Wait>,
) -> Result<GooseAttack, GooseError> {
    let paced = |scenario: Scenario| match wait {
        Some(Wait { min, max }) => scenario.set_wait_time(min, max),
        None => Ok(scenario),
    };
    Ok(GooseAttack::initialize_with_config(config)?
        .register_scenario(paced(mix::scenario(ctx)?)?)
        .register_scenario(paced(redirect::scenario(ctx)?)?)
        .register_scenario(paced(write::scenario(ctx)?)?)
        .register_scenario(paced(cold::scenario(ctx)?)?))
}
