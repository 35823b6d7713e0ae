//! Pass/fail limits judged once a run has finished.
//!
//! [`evaluate`] is pure: it takes [`Limits`] and the run's [`Figures`] and
//! names every limit that was broken. [`Figures::from_metrics`] is the only
//! code here that reads goose's `GooseMetrics`; it aggregates all requests the
//! way goose's report's "Aggregated" row does (every request's response-time
//! buckets merged, failures over all requests).
//!
//! goose 0.19 also has `--threshold` rules of its own (judged mid-run, and able
//! to stop the run); those still work and are reported by `main`, but these
//! limits are judged only at the end, so a run that goes bad is still measured
//! to its end, which is what the alert check wants.

use std::fmt;

use goose::metrics::{GooseMetrics, GooseRequestMetricTimingData};

/// Limits given on the command line; `None` means "not checked".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// Highest acceptable 95th percentile response time, in milliseconds.
    pub max_p95_ms: Option<f64>,
    /// Highest acceptable 99th percentile response time, in milliseconds.
    pub max_p99_ms: Option<f64>,
    /// Highest acceptable share of failed requests, in percent (0..=100).
    pub max_error_rate_pct: Option<f64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.max_p95_ms.is_some() || self.max_p99_ms.is_some() || self.max_error_rate_pct.is_some()
    }
}

/// What a run measured, over all requests together.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// Requests made, successful or failed.
    pub requests: u64,
    /// Requests counted as failed (wrong status, wrong body, transport error).
    pub failures: u64,
    /// 95th percentile response time, milliseconds.
    pub p95_ms: f64,
    /// 99th percentile response time, milliseconds.
    pub p99_ms: f64,
    /// Length of the measured part of the run, seconds.
    pub duration_s: u64,
}

impl Figures {
    /// Failed requests as a percent of all requests; 0 without requests.
    pub fn error_rate_pct(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failures as f64 * 100.0 / self.requests as f64
        }
    }

    /// Requests per second over the measured duration; 0 for a run under a second.
    pub fn requests_per_second(&self) -> f64 {
        if self.duration_s == 0 {
            0.0
        } else {
            self.requests as f64 / self.duration_s as f64
        }
    }

    /// The aggregate figures of a finished goose run.
    pub fn from_metrics(metrics: &GooseMetrics) -> Self {
        let mut requests = 0u64;
        let mut failures = 0u64;
        let mut times = GooseRequestMetricTimingData::default();
        for aggregate in metrics.requests.values() {
            requests += (aggregate.success_count + aggregate.fail_count) as u64;
            failures += aggregate.fail_count as u64;
            merge_timing(&mut times, &aggregate.raw_data);
        }
        Figures {
            requests,
            failures,
            p95_ms: times.percentile_us(0.95) as f64 / 1000.0,
            p99_ms: times.percentile_us(0.99) as f64 / 1000.0,
            duration_s: metrics.duration as u64,
        }
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests in {} s ({:.1} req/s), {} failed ({:.2}%), p95 {:.1} ms, p99 {:.1} ms",
            self.requests,
            self.duration_s,
            self.requests_per_second(),
            self.failures,
            self.error_rate_pct(),
            self.p95_ms,
            self.p99_ms
        )
    }
}

/// Adds `other`'s response times to `into`. goose's own merge is crate-private;
/// its buckets, counters and extremes are public, and adding bucket counts is
/// exactly what its merge does.
pub fn merge_timing(into: &mut GooseRequestMetricTimingData, other: &GooseRequestMetricTimingData) {
    if other.counter == 0 {
        return;
    }
    for (&bucket, &count) in other.times_us.iter() {
        let before = into.times_us.get(&bucket).copied().unwrap_or(0);
        into.times_us.insert(bucket, before + count);
    }
    if into.counter == 0 || other.minimum_time_us < into.minimum_time_us {
        into.minimum_time_us = other.minimum_time_us;
    }
    into.maximum_time_us = into.maximum_time_us.max(other.maximum_time_us);
    into.total_time_us += other.total_time_us;
    into.counter += other.counter;
}

/// One broken limit: which flag, its limit and what was observed.
#[derive(Clone, Debug, PartialEq)]
pub struct Breach {
    /// The command-line flag that set the limit, such as `--max-p95-ms`.
    pub flag: &'static str,
    /// The limit as given.
    pub limit: f64,
    /// What the run measured, in the limit's unit; NaN when nothing was measured.
    pub observed: f64,
    /// The unit of both numbers, for messages.
    pub unit: &'static str,
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.observed.is_nan() {
            write!(
                f,
                "{} {}{}: no requests were made, so it can not pass",
                self.flag, self.limit, self.unit
            )
        } else {
            write!(
                f,
                "{} {}{}: observed {:.2}{}",
                self.flag, self.limit, self.unit, self.observed, self.unit
            )
        }
    }
}

/// Every limit in `limits` that `figures` break, in flag order. A limit is
/// inclusive (observed == limit passes). A run that made no request breaks every
/// limit that is set: a CI job must not pass a load test that never loaded.
pub fn evaluate(limits: &Limits, figures: &Figures) -> Vec<Breach> {
    let checks = [
        ("--max-p95-ms", limits.max_p95_ms, figures.p95_ms, " ms"),
        ("--max-p99-ms", limits.max_p99_ms, figures.p99_ms, " ms"),
        (
            "--max-error-rate",
            limits.max_error_rate_pct,
            figures.error_rate_pct(),
            "%",
        ),
    ];
    checks
        .into_iter()
        .filter_map(|(flag, limit, observed, unit)| {
            let limit = limit?;
            if figures.requests == 0 {
                return Some(Breach {
                    flag,
                    limit,
                    observed: f64::NAN,
                    unit,
                });
            }
            (observed > limit).then_some(Breach {
                flag,
                limit,
                observed,
                unit,
            })
        })
        .collect()
}

/// Parses an error-rate limit: a percent, `1`, `0.5` or `1%`, from 0 to 100.
///
/// # Errors
/// A message naming what is wrong when the text is not such a percent.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%').trim();
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a percent; give one such as 1 or 0.5%"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("{text:?} is not between 0 and 100 percent"));
    }
    Ok(value)
}

/// Parses a response-time limit in milliseconds: a positive number, `500` or `500ms`.
///
/// # Errors
/// A message naming what is wrong when the text is not a positive number.
pub fn parse_millis(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches("ms").trim();
    match number.parse::<f64>() {
        Ok(value) if value > 0.0 && value.is_finite() => Ok(value),
        _ => Err(format!(
            "{text:?} is not a positive number of milliseconds, such as 500"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(requests: u64, failures: u64, p95_ms: f64, p99_ms: f64) -> Figures {
        Figures {
            requests,
            failures,
            p95_ms,
            p99_ms,
            duration_s: 10,
        }
    }

    fn all_limits() -> Limits {
        Limits {
            max_p95_ms: Some(500.0),
            max_p99_ms: Some(1000.0),
            max_error_rate_pct: Some(1.0),
        }
    }

    #[test]
    fn no_limits_never_breach() {
        assert!(evaluate(&Limits::default(), &figures(0, 0, 0.0, 0.0)).is_empty());
        assert!(evaluate(&Limits::default(), &figures(10, 10, 9e9, 9e9)).is_empty());
    }

    #[test]
    fn a_run_within_every_limit_passes() {
        assert!(evaluate(&all_limits(), &figures(1000, 5, 120.0, 400.0)).is_empty());
    }

    #[test]
    fn limits_are_inclusive() {
        assert!(evaluate(&all_limits(), &figures(100, 1, 500.0, 1000.0)).is_empty());
    }

    #[test]
    fn each_broken_limit_is_named_with_what_was_observed() {
        let breaches = evaluate(&all_limits(), &figures(200, 10, 650.0, 1500.0));
        let flags: Vec<_> = breaches.iter().map(|b| b.flag).collect();
        assert_eq!(flags, ["--max-p95-ms", "--max-p99-ms", "--max-error-rate"]);
        assert_eq!(breaches[2].observed, 5.0);
        assert_eq!(
            breaches[0].to_string(),
            "--max-p95-ms 500 ms: observed 650.00 ms"
        );
        assert_eq!(
            breaches[2].to_string(),
            "--max-error-rate 1%: observed 5.00%"
        );
    }

    #[test]
    fn only_the_broken_limit_is_named() {
        let breaches = evaluate(&all_limits(), &figures(1000, 0, 100.0, 1200.0));
        assert_eq!(breaches.len(), 1);
        assert_eq!(breaches[0].flag, "--max-p99-ms");
    }

    #[test]
    fn a_run_without_requests_breaks_every_limit_that_is_set() {
        let limits = Limits {
            max_error_rate_pct: Some(1.0),
            ..Limits::default()
        };
        let breaches = evaluate(&limits, &figures(0, 0, 0.0, 0.0));
        assert_eq!(breaches.len(), 1);
        assert!(breaches[0].to_string().contains("no requests were made"));
    }

    #[test]
    fn zero_error_rate_limit_fails_on_one_failure() {
        let limits = Limits {
            max_error_rate_pct: Some(0.0),
            ..Limits::default()
        };
        assert!(evaluate(&limits, &figures(1000, 0, 1.0, 1.0)).is_empty());
        assert_eq!(evaluate(&limits, &figures(1000, 1, 1.0, 1.0)).len(), 1);
    }

    #[test]
    fn error_rate_and_throughput_handle_empty_runs() {
        let empty = Figures::default();
        assert_eq!(empty.error_rate_pct(), 0.0);
        assert_eq!(empty.requests_per_second(), 0.0);
        assert_eq!(figures(250, 5, 0.0, 0.0).requests_per_second(), 25.0);
    }

    #[test]
    fn parse_percent_accepts_plain_and_suffixed_numbers() {
        assert_eq!(parse_percent("1"), Ok(1.0));
        assert_eq!(parse_percent("0.5%"), Ok(0.5));
        assert_eq!(parse_percent(" 100 % "), Ok(100.0));
        assert!(parse_percent("101").is_err());
        assert!(parse_percent("-1").is_err());
        assert!(parse_percent("one").is_err());
    }

    #[test]
    fn parse_millis_accepts_plain_and_ms_numbers() {
        assert_eq!(parse_millis("500"), Ok(500.0));
        assert_eq!(parse_millis("1.5ms"), Ok(1.5));
        assert!(parse_millis("0").is_err());
        assert!(parse_millis("1s").is_err());
        assert!(parse_millis("NaN").is_err());
    }

    fn timing(times_ms: &[u64]) -> GooseRequestMetricTimingData {
        // Built through the public fields only, as goose's report does: one
        // bucket per distinct time (times under goose's exact range would land
        // in their own buckets anyway; these are whole milliseconds).
        let mut data = GooseRequestMetricTimingData::default();
        for &ms in times_ms {
            let one = GooseRequestMetricTimingData {
                times_us: {
                    let mut b = goose::metrics::TimeBuckets::new();
                    b.insert(ms * 1000, 1);
                    b
                },
                minimum_time_us: ms * 1000,
                maximum_time_us: ms * 1000,
                total_time_us: ms * 1000,
                counter: 1,
            };
            merge_timing(&mut data, &one);
        }
        data
    }

    #[test]
    fn merged_timings_keep_counts_and_extremes() {
        let mut all = timing(&[10, 20]);
        merge_timing(&mut all, &timing(&[5, 1000]));
        merge_timing(&mut all, &GooseRequestMetricTimingData::default());
        assert_eq!(all.counter, 4);
        assert_eq!(all.minimum_time_us, 5_000);
        assert_eq!(all.maximum_time_us, 1_000_000);
        assert_eq!(all.total_time_us, 1_035_000);
        // The slowest of four requests is the 99th percentile.
        assert_eq!(all.percentile_us(0.99), 1_000_000);
    }
}
