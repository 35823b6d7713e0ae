//! The command line: goose 0.19's own options, unchanged, plus ours.
//!
//! goose 0.19 parses its options with clap, and `GooseConfiguration` derives
//! `clap::Args`, so ours are added to goose's own `clap::Command` (its help
//! template, `-h`/`--help` and all) and both are read back from one set of
//! matches. `--help` therefore lists every option, goose's and ours, and a
//! typo in either is a clap error. Each of our options can also come from an
//! environment variable (`LOADTEST_*`), for CI jobs.

use clap::{Args, CommandFactory, FromArgMatches};
use goose::config::{GooseConfiguration, Scenarios};

use crate::thresholds::{parse_millis, parse_percent, Limits};

/// The scenario a run uses when `--scenarios` is not given.
pub const DEFAULT_SCENARIO: &str = "mix";

// Our options, after goose's in `--help`. (No doc comment: clap would take
// it as the command's description.)
#[derive(Args, Clone, Debug, PartialEq)]
pub struct Options {
    /// Fail the run when the p95 response time of all requests is over MS
    ///
    /// Judged after the run on the metrics goose returns; the process exits 1
    /// and names each broken limit. A request's time counts whether it
    /// succeeded or not.
    #[arg(
        help_heading = "Thresholds (exit 1 when broken)",
        long,
        value_name = "MS",
        env = "LOADTEST_MAX_P95_MS",
        value_parser = parse_millis
    )]
    pub max_p95_ms: Option<f64>,

    /// Fail the run when the p99 response time of all requests is over MS
    #[arg(
        help_heading = "Thresholds (exit 1 when broken)",
        long,
        value_name = "MS",
        env = "LOADTEST_MAX_P99_MS",
        value_parser = parse_millis
    )]
    pub max_p99_ms: Option<f64>,

    /// Fail the run when more than PERCENT of requests failed (e.g. 1 or 0.5%)
    ///
    /// A request fails on a transport error, an unexpected status code or a
    /// response body of the wrong shape.
    #[arg(
        help_heading = "Thresholds (exit 1 when broken)",
        long,
        value_name = "PERCENT",
        env = "LOADTEST_MAX_ERROR_RATE",
        value_parser = parse_percent
    )]
    pub max_error_rate: Option<f64>,

    /// Create N users through the API before the run
    #[arg(
        help_heading = "Test data",
        long,
        value_name = "N",
        env = "LOADTEST_SEED_USERS",
        default_value_t = 0
    )]
    pub seed_users: usize,

    /// Create N URLs through the API before the run, spread over the seeded users
    /// (or the target's existing users when --seed-users is 0)
    #[arg(
        help_heading = "Test data",
        long,
        value_name = "N",
        env = "LOADTEST_SEED_URLS",
        default_value_t = 0
    )]
    pub seed_urls: usize,

    /// Seed (and discover) the data, print what the target holds, and exit
    #[arg(help_heading = "Test data", long)]
    pub setup_only: bool,

    /// Read at most N users and N URLs from the list endpoints before the run
    ///
    /// The redirect, cold and mix scenarios draw codes and ids from them.
    #[arg(
        help_heading = "Test data",
        long,
        value_name = "N",
        env = "LOADTEST_DISCOVER_LIMIT",
        default_value_t = 100_000
    )]
    pub discover_limit: usize,

    /// Requests in flight while seeding
    #[arg(
        help_heading = "Test data",
        long,
        value_name = "N",
        default_value_t = 16
    )]
    pub seed_concurrency: usize,

    /// Skew of link popularity in the redirect scenario: rank k is clicked with
    /// weight 1/(k+1)^S (0 is uniform)
    #[arg(
        help_heading = "Scenario tuning",
        long,
        value_name = "S",
        env = "LOADTEST_ZIPF_EXPONENT",
        default_value_t = 1.0
    )]
    pub zipf_exponent: f64,

    /// Share of redirects, in percent, that ask for unknown or inactive codes
    /// and must get a 404
    #[arg(
        help_heading = "Scenario tuning",
        long,
        value_name = "PERCENT",
        env = "LOADTEST_UNKNOWN_PERCENT",
        default_value_t = 5.0,
        value_parser = parse_percent
    )]
    pub unknown_percent: f64,

    /// Seed for ranking link popularity: the same data and seed rank the same on
    /// every load generator
    #[arg(
        help_heading = "Scenario tuning",
        long,
        value_name = "N",
        default_value_t = 42
    )]
    pub data_seed: u64,

    /// Think time between a goose user's transactions, in milliseconds, drawn
    /// uniformly from MIN to MAX (e.g. 1000-3000, as a locust `between(1, 3)`).
    /// Without it users send back to back, which measures throughput.
    #[arg(
        help_heading = "Scenario tuning",
        long,
        value_name = "MIN-MAX",
        env = "LOADTEST_WAIT_MS",
        value_parser = parse_wait
    )]
    pub wait_ms: Option<Wait>,

    /// After a run of the redirect scenario, check that each link's clicks
    /// (GET /urls/{id}/stats) grew by exactly its 302s; on by default
    ///
    /// The stats of every link the scenario may click are read before the load
    /// starts, and those of the links clicked are read again after it until they
    /// match or --check-clicks-wait runs out; the process then exits 1 naming
    /// each link and its difference. A GET that got no answer may or may not
    /// count. Other traffic on the same links during the run breaks the check.
    /// Turn it off with --no-check-clicks, --check-clicks=false or
    /// LOADTEST_CHECK_CLICKS=false.
    #[arg(
        help_heading = "Click check (exit 1 when a click is lost)",
        long,
        value_name = "BOOL",
        env = "LOADTEST_CHECK_CLICKS",
        num_args = 0..=1,
        require_equals = true,
        default_value_t = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        overrides_with = "no_check_clicks"
    )]
    pub check_clicks: bool,

    /// Skip the click check
    #[arg(
        help_heading = "Click check (exit 1 when a click is lost)",
        long,
        overrides_with = "check_clicks"
    )]
    pub no_check_clicks: bool,

    /// How long the click check waits, after the run, for the links' counts
    /// to catch up (they lag by up to the server's CLICKS_FLUSH_INTERVAL_MS)
    #[arg(
        help_heading = "Click check (exit 1 when a click is lost)",
        long,
        value_name = "SECONDS",
        env = "LOADTEST_CHECK_CLICKS_WAIT",
        default_value_t = 10
    )]
    pub check_clicks_wait: u64,
}

/// A think-time range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    pub min: std::time::Duration,
    pub max: std::time::Duration,
}

/// Parses `MIN-MAX` (or a single `N`) milliseconds into a [`Wait`].
///
/// # Errors
/// A message naming the problem when it is not such a range.
pub fn parse_wait(text: &str) -> Result<Wait, String> {
    let bad = || format!("{text:?} is not MIN-MAX milliseconds, such as 1000-3000");
    let (min, max) = match text.split_once('-') {
        Some((min, max)) => (min.trim(), max.trim()),
        None => (text.trim(), text.trim()),
    };
    let min: u64 = min.parse().map_err(|_| bad())?;
    let max: u64 = max.parse().map_err(|_| bad())?;
    if min > max {
        return Err(format!("{text:?}: MIN is larger than MAX"));
    }
    Ok(Wait {
        min: std::time::Duration::from_millis(min),
        max: std::time::Duration::from_millis(max),
    })
}

impl Options {
    /// Whether the click check is on: `--check-clicks` (the default) and no
    /// `--no-check-clicks` after it.
    pub fn clicks_checked(&self) -> bool {
        self.check_clicks && !self.no_check_clicks
    }

    /// The pass/fail limits given.
    pub fn limits(&self) -> Limits {
        Limits {
            max_p95_ms: self.max_p95_ms,
            max_p99_ms: self.max_p99_ms,
            max_error_rate_pct: self.max_error_rate,
        }
    }
}

const ABOUT: &str = "URL-shortener load tests on Goose 0.19 (goose's options, then ours)";

const AFTER_HELP: &str = "\
Scenarios (pick with --scenarios; default mix): mix, redirect, write, cold.

Examples:
  loadtest -H http://127.0.0.1:5000 -u 50 -r 10 -t 2m
  loadtest -H http://127.0.0.1:5000 --scenarios redirect \\
      --seed-users 200 --seed-urls 2000 -u 100 -r 20 -t 5m \\
      --max-p95-ms 50 --max-error-rate 0.5 --report-file redirect.html
  loadtest -H http://<node>:30080 --scenarios cold -u 200 -r 20 -t 10m \\
      --max-p99-ms 1000

After a run of the redirect scenario, the click check (on by default;
--no-check-clicks) compares each clicked link's GET /urls/{id}/stats with
the 302s it answered.

Exit status: 0 when every threshold held; 1 when one broke or a click was
lost (each is named); 2 on a usage or setup error.
Goose's options: https://book.goose.rs/getting-started/runtime-options.html";

/// goose's command with our options added.
pub fn command() -> clap::Command {
    Options::augment_args(GooseConfiguration::command())
        .about(ABOUT)
        .after_help(AFTER_HELP)
        .after_long_help(AFTER_HELP)
}

/// Parses `args` (the program name first).
///
/// # Errors
/// clap's error, which also carries `--help` output; `clap::Error::exit`
/// prints it and exits with the right status.
pub fn parse<I, T>(args: I) -> Result<(GooseConfiguration, Options), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    let mut goose = GooseConfiguration::from_arg_matches(&matches)?;
    let options = Options::from_arg_matches(&matches)?;
    if goose.scenarios.is_none() {
        goose.scenarios = Some(Scenarios {
            active: vec![DEFAULT_SCENARIO.to_string()],
        });
    }
    Ok((goose, options))
}

/// Whether this invocation sends load (as opposed to listing scenarios,
/// printing the version or rendering an old report), so it needs `--host`.
pub fn needs_target(goose: &GooseConfiguration) -> bool {
    !(goose.list || goose.scenarios_list || goose.version || goose.render_report.is_some())
}

/// The error for a missing `--host`: there is deliberately no default target.
pub const NO_HOST: &str = "no target: name it with --host, e.g. --host http://127.0.0.1:5000 \
     (a local server) or --host http://<node>:30080 (the cluster's NodePort; port 80 through the ingress). \
     There is no default, so a load test never hits something by accident.";

/// The scenario names selected by `--scenarios` (always set after [`parse`]).
pub fn selected(goose: &GooseConfiguration) -> Vec<String> {
    goose
        .scenarios
        .as_ref()
        .map(|s| s.active.clone())
        .unwrap_or_default()
}

/// Whether `--scenarios` selects `name`: exactly, or through a `*` wildcard
/// (counted as selecting everything, to be safe).
pub fn selects(goose: &GooseConfiguration, name: &str) -> bool {
    selected(goose)
        .iter()
        .any(|pattern| pattern == name || pattern.contains('*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(args: &[&str]) -> (GooseConfiguration, Options) {
        match parse(std::iter::once("loadtest").chain(args.iter().copied())) {
            Ok(parsed) => parsed,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn goose_and_our_options_parse_together() {
        let (goose, ours) = parse_ok(&[
            "--host",
            "http://127.0.0.1:5000",
            "-u",
            "20",
            "--increase-rate",
            "5",
            "--run-time",
            "30s",
            "--max-p95-ms",
            "500",
            "--max-error-rate",
            "1%",
            "--seed-urls",
            "200",
            "--scenarios",
            "redirect",
        ]);
        assert_eq!(goose.host.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(goose.users, Some(20));
        assert_eq!(goose.increase_rate.as_deref(), Some("5"));
        assert_eq!(goose.run_time.as_deref(), Some("30s"));
        assert_eq!(selected(&goose), ["redirect"]);
        assert_eq!(ours.max_p95_ms, Some(500.0));
        assert_eq!(ours.max_p99_ms, None);
        assert_eq!(ours.max_error_rate, Some(1.0));
        assert_eq!(ours.seed_urls, 200);
        assert_eq!(ours.seed_users, 0);
        assert!(ours.limits().any());
    }

    #[test]
    fn mix_is_the_default_scenario_and_there_is_no_default_host() {
        let (goose, ours) = parse_ok(&[]);
        assert_eq!(goose.host, None);
        assert!(needs_target(&goose));
        assert_eq!(selected(&goose), ["mix"]);
        assert!(!ours.limits().any());
    }

    #[test]
    fn listing_scenarios_needs_no_target() {
        let (goose, _) = parse_ok(&["--list"]);
        assert!(!needs_target(&goose));
    }

    #[test]
    fn wildcards_select_every_scenario() {
        let (goose, _) = parse_ok(&["--scenarios", "mix,cold"]);
        assert!(selects(&goose, "cold"));
        assert!(!selects(&goose, "redirect"));
        let (goose, _) = parse_ok(&["--scenarios", "*"]);
        assert!(selects(&goose, "redirect"));
    }

    #[test]
    fn bad_threshold_values_are_refused_by_name() {
        let args = ["loadtest", "--max-error-rate", "150"];
        let err = parse(args).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--max-error-rate"), "{err}");
        let err = parse(["loadtest", "--max-p99-ms", "fast"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("milliseconds"), "{err}");
    }

    #[test]
    fn wait_ranges_parse() {
        let ms = std::time::Duration::from_millis;
        assert_eq!(
            parse_wait("1000-3000"),
            Ok(Wait {
                min: ms(1000),
                max: ms(3000)
            })
        );
        assert_eq!(
            parse_wait("500"),
            Ok(Wait {
                min: ms(500),
                max: ms(500)
            })
        );
        assert!(parse_wait("3000-1000").is_err());
        assert!(parse_wait("1s-3s").is_err());
    }

    #[test]
    fn the_click_check_is_on_by_default_and_the_last_flag_wins() {
        let on = |args: &[&str]| parse_ok(args).1.clicks_checked();
        assert!(on(&[]));
        assert!(on(&["--check-clicks"]));
        assert!(!on(&["--no-check-clicks"]));
        assert!(!on(&["--check-clicks=false"]));
        assert!(on(&["--check-clicks=true"]));
        assert!(!on(&["--check-clicks", "--no-check-clicks"]));
        assert!(on(&["--no-check-clicks", "--check-clicks"]));
        // A bare flag does not swallow the next argument.
        let (goose, ours) = parse_ok(&["--check-clicks", "--scenarios", "redirect"]);
        assert!(ours.clicks_checked());
        assert_eq!(selected(&goose), ["redirect"]);
        assert_eq!(ours.check_clicks_wait, 10);
        assert_eq!(
            parse_ok(&["--check-clicks-wait", "30"]).1.check_clicks_wait,
            30
        );
    }

    #[test]
    fn unknown_options_are_refused() {
        assert!(parse(["loadtest", "--max-p95", "5"]).is_err());
    }

    #[test]
    fn help_lists_goose_options_and_ours() {
        let help = command().render_long_help().to_string();
        for flag in [
            "--host",
            "--users",
            "--increase-rate",
            "--run-time",
            "--report-file",
            "--scenarios",
            "--max-p95-ms",
            "--max-p99-ms",
            "--max-error-rate",
            "--seed-users",
            "--seed-urls",
            "LOADTEST_MAX_P95_MS",
            "--check-clicks",
            "--no-check-clicks",
            "LOADTEST_CHECK_CLICKS",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
    }
}
