//! The steps around a goose run: preparing its data (and the click check's
//! baseline), and judging its result (and the clicks). Kept out of `main.rs`,
//! which only wires these and registers scenarios.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use goose::metrics::GooseMetrics;
use goose::GooseError;

use crate::cli::Options;
use crate::clicks::{self, Verdict};
use crate::data::{self, Dataset};
use crate::scenarios::common::Ctx;
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

/// The click check's baseline: the clicks of every link the run may click, read
/// before the load starts. `None` when the check is off or `redirect` is not
/// among the selected scenarios.
///
/// # Errors
/// When a link's stats cannot be read (the message says how to turn the check off).
pub async fn click_baseline(
    client: &reqwest::Client,
    host: &str,
    options: &Options,
    data: &Dataset,
    selects: impl Fn(&str) -> bool,
) -> anyhow::Result<Option<HashMap<i64, u64>>> {
    if !options.clicks_checked() || !selects("redirect") {
        return Ok(None);
    }
    let ids: Vec<i64> = data.links.iter().map(|l| l.id).collect();
    let started = std::time::Instant::now();
    let baseline = clicks::baseline(client, host, &ids, options.seed_concurrency).await?;
    eprintln!(
        "loadtest: click check: read the clicks of {} links in {:.1} s",
        baseline.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(Some(baseline))
}

/// After the run: the click check's verdict, when it has a baseline and goose
/// ran (an outcome with metrics).
pub async fn check_clicks(
    ctx: &Ctx,
    host: Option<&str>,
    baseline: Option<&HashMap<i64, u64>>,
    options: &Options,
    outcome: &Result<GooseMetrics, GooseError>,
) -> Option<Verdict> {
    let ran = matches!(outcome, Ok(_) | Err(GooseError::ThresholdsFailed { .. }));
    match (host, baseline) {
        (Some(host), Some(baseline)) if ran => Some(
            clicks::verify(
                &ctx.client,
                host,
                &ctx.clicks,
                baseline,
                Duration::from_secs(options.check_clicks_wait),
                options.seed_concurrency,
            )
            .await,
        ),
        _ => None,
    }
}

/// Prints the run's figures and verdict; the process's exit code: 0 when every
/// limit (ours and goose's `--threshold`s) held and no click was lost (when
/// checked), 1 when one broke, 2 when goose itself failed.
pub fn judge(
    outcome: Result<GooseMetrics, GooseError>,
    limits: &Limits,
    clicks: Option<&Verdict>,
) -> ExitCode {
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
    let clicks_ok = match clicks {
        Some(verdict) if verdict.passed() => {
            println!("loadtest: {verdict}");
            true
        }
        Some(verdict) => {
            eprintln!("loadtest: FAIL {verdict}");
            false
        }
        None => true,
    };
    if goose_failed.is_empty() && breaches.is_empty() && clicks_ok {
        if limits.any() || !metrics.thresholds.is_empty() {
            println!("loadtest: every threshold held");
        }
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
