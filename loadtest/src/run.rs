//! The steps around a goose run: preparing its data, and judging its result.
//! Kept out of `main.rs`, which only wires these and registers scenarios.

use std::process::ExitCode;

use anyhow::bail;
use goose::metrics::GooseMetrics;
use goose::GooseError;

use crate::cli::Options;
use crate::data::{self, Dataset};
use crate::thresholds::{evaluate, Figures, Limits};

/// Seeds (when asked) and discovers the target's data, and checks that the
/// selected scenarios have what they need.
///
/// # Errors
/// When the target cannot be reached or seeded, or a selected scenario would
/// have nothing to work on.
pub async fn prepare(
    client: &reqwest::Client,
    host: &str,
    options: &Options,
    run_tag: &str,
    selects: impl Fn(&str) -> bool,
) -> anyhow::Result<Dataset> {
    if options.seed_users > 0 || options.seed_urls > 0 {
        let existing = if options.seed_users == 0 {
            // URLs need owners: use the target's users.
            data::discover(client, host, data::PAGE_SIZE).await?.0
        } else {
            Vec::new()
        };
        let existing: Vec<i64> = existing.iter().map(|u| u.id).collect();
        let seeded = data::seed(
            client,
            host,
            options.seed_users,
            options.seed_urls,
            &existing,
            run_tag,
            options.seed_concurrency,
        )
        .await?;
        eprintln!(
            "loadtest: seeded {} users and {} urls (run tag {run_tag})",
            seeded.users, seeded.urls
        );
    }
    let (users, urls) = data::discover(client, host, options.discover_limit).await?;
    let dataset = Dataset::new(users, urls, options.zipf_exponent, options.data_seed);
    eprintln!("loadtest: target holds {}", dataset.summary());
    const SEED_HINT: &str = "seed some with --seed-users 200 --seed-urls 2000, or load the demo data with `server seed`";
    if selects("redirect") && dataset.links.is_empty() {
        bail!(
            "the redirect scenario needs active short links and the target has none; {SEED_HINT}"
        );
    }
    if selects("cold") && (dataset.url_ids.is_empty() || dataset.user_ids.is_empty()) {
        bail!(
            "the cold scenario needs users and urls to read and the target has none; {SEED_HINT}"
        );
    }
    Ok(dataset)
}

/// Prints the run's figures and verdict; the process's exit code: 0 when every
/// limit (ours and goose's `--threshold`s) held, 1 when one broke, 2 when goose
/// itself failed.
pub fn judge(outcome: Result<GooseMetrics, GooseError>, limits: &Limits) -> ExitCode {
    let (metrics, goose_failed) = match outcome {
        Ok(metrics) => (metrics, Vec::new()),
        Err(GooseError::ThresholdsFailed { failed, metrics }) => (*metrics.0, failed),
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::from(2);
        }
    };
    let figures = Figures::from_metrics(&metrics);
    println!("loadtest: {figures}");
    let breaches = evaluate(limits, &figures);
    for failed in &goose_failed {
        eprintln!(
            "loadtest: FAIL --threshold {}: observed {}",
            failed.rule, failed.observed
        );
    }
    for breach in &breaches {
        eprintln!("loadtest: FAIL {breach}");
    }
    if goose_failed.is_empty() && breaches.is_empty() {
        if limits.any() || !metrics.thresholds.is_empty() {
            println!("loadtest: every threshold held");
        }
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
