//! The analytics query: scope, range, time zone, granularity, grouping. Parsed and
//! checked here (every problem a 422 naming its parameter), resolved against the
//! clock into UTC bounds and local buckets.

use chrono::Offset;
use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

use crate::error::{Error, FieldErrors, Result};

/// Whose clicks: one link's, or all of one user's links'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Url(i64),
    User(i64),
}

impl Scope {
    pub fn id(self) -> i64 {
        match self {
            Scope::Url(id) | Scope::User(id) => id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
    Month,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Month => "month",
        }
    }

    /// The longest range a series may cover at this granularity.
    fn max_span(self) -> Duration {
        match self {
            Granularity::Hour => Duration::days(366),
            Granularity::Day => Duration::days(3660),
            Granularity::Month => Duration::days(36_600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Timeseries,
    Referrers,
    Browsers,
    Os,
    Devices,
    TopUrls,
}

impl GroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Timeseries => "timeseries",
            GroupBy::Referrers => "referrers",
            GroupBy::Browsers => "browsers",
            GroupBy::Os => "os",
            GroupBy::Devices => "devices",
            GroupBy::TopUrls => "top_urls",
        }
    }

    /// The rollup dimension of a breakdown.
    pub fn dimension(self) -> Option<&'static str> {
        match self {
            GroupBy::Referrers => Some("referrer"),
            GroupBy::Browsers => Some("browser"),
            GroupBy::Os => Some("os"),
            GroupBy::Devices => Some("device"),
            GroupBy::Timeseries | GroupBy::TopUrls => None,
        }
    }
}

/// The range as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The last this long, up to now.
    Last(Duration),
    /// From the scope's first click to now.
    All,
    /// [start, end); end defaults to now.
    Between(DateTime<Utc>, Option<DateTime<Utc>>),
}

pub const LIMIT_DEFAULT: i64 = 10;
pub const LIMIT_MAX: i64 = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsQuery {
    /// `None` for the service-wide summary.
    pub scope: Option<Scope>,
    pub range: Range,
    pub tz: Tz,
    pub granularity: Option<Granularity>,
    pub group_by: GroupBy,
    pub exclude_bots: bool,
    pub limit: i64,
}

/// The resolved range: UTC bounds and the granularity to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub granularity: Granularity,
}

impl Window {
    /// The whole UTC days the range touches (the daily breakdowns' unit).
    pub fn utc_days(&self) -> (NaiveDate, NaiveDate) {
        let last = (self.end - Duration::microseconds(1)).max(self.start);
        (self.start.date_naive(), last.date_naive())
    }
}

impl AnalyticsQuery {
    /// Parses `GET /analytics` (`summary`: the service-wide form, no scope).
    ///
    /// # Errors
    /// A 422 naming every parameter that is wrong.
    pub fn parse(pairs: &[(String, String)], summary: bool) -> Result<Self> {
        let mut errors = FieldErrors::new();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let id = |k: &str, errors: &mut FieldErrors| -> Option<i64> {
            let v = get(k)?;
            match v.parse::<i64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    errors.insert(k.into(), "must be a positive integer".into());
                    None
                }
            }
        };
        let scope = if summary {
            None
        } else {
            match (id("url_id", &mut errors), id("user_id", &mut errors)) {
                (Some(u), None) => Some(Scope::Url(u)),
                (None, Some(u)) => Some(Scope::User(u)),
                _ if errors.is_empty() => {
                    errors.insert(
                        "url_id".into(),
                        "send exactly one of url_id and user_id".into(),
                    );
                    None
                }
                _ => None,
            }
        };
        let tz = match get("timezone") {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().unwrap_or_else(|_| {
                errors.insert(
                    "timezone".into(),
                    format!("{name:?} is not an IANA time zone (like Europe/Paris or UTC)"),
                );
                Tz::UTC
            }),
        };
        let granularity = match get("granularity") {
            None => None,
            Some("hour") => Some(Granularity::Hour),
            Some("day") => Some(Granularity::Day),
            Some("month") => Some(Granularity::Month),
            Some(_) => {
                errors.insert("granularity".into(), "must be hour, day or month".into());
                None
            }
        };
        let group_by = match get("group_by").unwrap_or("timeseries") {
            "timeseries" => GroupBy::Timeseries,
            "referrers" => GroupBy::Referrers,
            "browsers" => GroupBy::Browsers,
            "os" => GroupBy::Os,
            "devices" => GroupBy::Devices,
            "top_urls" => GroupBy::TopUrls,
            _ => {
                errors.insert(
                    "group_by".into(),
                    "must be timeseries, referrers, browsers, os, devices or top_urls".into(),
                );
                GroupBy::Timeseries
            }
        };
        if group_by == GroupBy::TopUrls && !matches!(scope, Some(Scope::User(_))) && !summary {
            errors
                .entry("group_by".into())
                .or_insert_with(|| "top_urls needs user_id".into());
        }
        let exclude_bots = match get("exclude_bots") {
            None | Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(_) => {
                errors.insert("exclude_bots".into(), "must be true or false".into());
                true
            }
        };
        let limit = match get("limit") {
            None => LIMIT_DEFAULT,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (1..=LIMIT_MAX).contains(&n) => n,
                _ => {
                    errors.insert(
                        "limit".into(),
                        format!("must be an integer from 1 to {LIMIT_MAX}"),
                    );
                    LIMIT_DEFAULT
                }
            },
        };
        let instant = |k: &str, errors: &mut FieldErrors| -> Option<DateTime<Utc>> {
            let v = get(k)?;
            let parsed = parse_instant(v, tz);
            if parsed.is_none() {
                errors.insert(
                    k.into(),
                    "must be ISO-8601: 2026-01-31, 2026-01-31T12:00:00 (in timezone) or 2026-01-31T12:00:00Z".into(),
                );
            }
            parsed
        };
        let (start, end) = (instant("start", &mut errors), instant("end", &mut errors));
        let range = match (get("interval"), start, end) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                errors.insert(
                    "interval".into(),
                    "send either interval or start/end, not both".into(),
                );
                Range::All
            }
            (Some(i), None, None) => match i {
                "24h" => Range::Last(Duration::hours(24)),
                "7d" => Range::Last(Duration::days(7)),
                "30d" => Range::Last(Duration::days(30)),
                "90d" => Range::Last(Duration::days(90)),
                "1y" => Range::Last(Duration::days(365)),
                "all" => Range::All,
                _ => {
                    errors.insert(
                        "interval".into(),
                        "must be 24h, 7d, 30d, 90d, 1y or all".into(),
                    );
                    Range::All
                }
            },
            (None, Some(s), e) => Range::Between(s, e),
            (None, None, Some(_)) => {
                errors.insert("start".into(), "is required with end".into());
                Range::All
            }
            (None, None, None) => Range::Last(Duration::days(30)),
        };
        if let Range::Between(s, Some(e)) = range {
            if e <= s {
                errors.insert("end".into(), "must be after start".into());
            }
        }
        if errors.is_empty() {
            Ok(AnalyticsQuery {
                scope,
                range,
                tz,
                granularity,
                group_by,
                exclude_bots,
                limit,
            })
        } else {
            Err(Error::Invalid(errors))
        }
    }

    /// The UTC window and granularity, given the clock and (for `interval=all`) the
    /// scope's first click.
    ///
    /// # Errors
    /// A range too long for the asked granularity: 422 naming `granularity`; a start
    /// in the future: 422 naming `start`.
    pub fn window(&self, now: DateTime<Utc>, first: Option<DateTime<Utc>>) -> Result<Window> {
        let (start, end) = match self.range {
            Range::Last(d) => (now - d, now),
            Range::All => (first.unwrap_or(now - Duration::days(1)).min(now), now),
            Range::Between(s, e) => (s, e.unwrap_or(now)),
        };
        if start >= end {
            return Err(Error::field(
                "start",
                "must be before end (and not in the future)",
            ));
        }
        let span = end - start;
        let granularity = self.granularity.unwrap_or(if span <= Duration::hours(48) {
            Granularity::Hour
        } else if span <= Duration::days(92) {
            Granularity::Day
        } else {
            Granularity::Month
        });
        if span > granularity.max_span() {
            return Err(Error::field(
                "granularity",
                format!(
                    "a {} series covers at most {} days; choose a coarser granularity or a shorter range",
                    granularity.as_str(),
                    granularity.max_span().num_days()
                ),
            ));
        }
        Ok(Window {
            start,
            end,
            granularity,
        })
    }

    /// A canonical form for the cache key.
    pub fn cache_field(&self) -> String {
        format!(
            "{:?}|{:?}|{}|{:?}|{}|{}|{}",
            self.scope,
            self.range,
            self.tz.name(),
            self.granularity,
            self.group_by.as_str(),
            self.exclude_bots,
            self.limit
        )
    }
}

/// ISO-8601: an instant with an offset or `Z`, or a local date or date-time in `tz`.
fn parse_instant(v: &str, tz: Tz) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M"))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(NaiveTime::MIN))
        })?;
    local_to_utc(naive, tz)
}

/// A local time in `tz` as UTC; a time skipped by a DST change moves forward an hour.
pub fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(naive + Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

/// The local start of the bucket holding `t`.
pub fn floor(t: NaiveDateTime, g: Granularity) -> NaiveDateTime {
    let d = t.date();
    match g {
        Granularity::Hour => d.and_hms_opt(t.hour(), 0, 0).unwrap_or(t),
        Granularity::Day => d.and_time(NaiveTime::MIN),
        Granularity::Month => d.with_day(1).unwrap_or(d).and_time(NaiveTime::MIN),
    }
}

fn step(t: NaiveDateTime, g: Granularity) -> NaiveDateTime {
    match g {
        Granularity::Hour => t + Duration::hours(1),
        Granularity::Day => t + Duration::days(1),
        Granularity::Month => {
            let (y, m) = if t.month() == 12 {
                (t.year() + 1, 1)
            } else {
                (t.year(), t.month() + 1)
            };
            NaiveDate::from_ymd_opt(y, m, 1)
                .map_or(t + Duration::days(31), |d| d.and_time(NaiveTime::MIN))
        }
    }
}

/// Every local bucket start of the window in `tz`, empty ones included, in order.
pub fn buckets(w: &Window, tz: Tz) -> Vec<NaiveDateTime> {
    let mut out = Vec::new();
    let mut t = floor(w.start.with_timezone(&tz).naive_local(), w.granularity);
    let end = w.end.with_timezone(&tz).naive_local();
    while t < end {
        // A local hour that a DST change skips holds no clicks: no bucket for it.
        if tz.from_local_datetime(&t).earliest().is_some() {
            out.push(t);
        }
        t = step(t, w.granularity);
    }
    out
}

/// Sums hourly counts into the window's local buckets (empty ones as 0), in one pass:
/// `hours` ascend, and so do their local buckets. Returns (bucket start, clicks, bots).
pub fn bucketed(
    w: &Window,
    tz: Tz,
    hours: &[(DateTime<Utc>, i64, i64)],
) -> Vec<(NaiveDateTime, i64, i64)> {
    let mut out: Vec<(NaiveDateTime, i64, i64)> =
        buckets(w, tz).into_iter().map(|b| (b, 0, 0)).collect();
    let mut i = 0;
    for (hour, clicks, bots) in hours {
        let b = floor(hour.with_timezone(&tz).naive_local(), w.granularity);
        while i < out.len() && out[i].0 < b {
            i += 1;
        }
        if let Some(slot) = out.get_mut(i).filter(|s| s.0 == b) {
            slot.1 += clicks;
            slot.2 += bots;
        }
    }
    out
}

/// A local bucket start as ISO-8601 with its offset (`2026-03-29T03:00:00+02:00`).
/// Written by hand: chrono's `format` parses its pattern on every call, which was
/// most of a year-of-hours answer's time (8,761 labels).
pub fn bucket_label(t: NaiveDateTime, tz: Tz) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(25);
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if let Some(z) = tz.from_local_datetime(&t).earliest() {
        let secs = z.offset().fix().local_minus_utc();
        let (sign, secs) = if secs < 0 { ('-', -secs) } else { ('+', secs) };
        let _ = write!(s, "{sign}{:02}:{:02}", secs / 3600, secs % 3600 / 60);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<AnalyticsQuery> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(s.as_bytes())
            .into_owned()
            .collect();
        AnalyticsQuery::parse(&pairs, false)
    }

    fn field(e: Error) -> String {
        match e {
            Error::Invalid(d) => d.keys().cloned().collect::<Vec<_>>().join(","),
            other => panic!("expected 422, got {other:?}"),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn exactly_one_scope_is_required() {
        assert_eq!(field(q("").expect_err("no scope")), "url_id");
        assert_eq!(field(q("url_id=1&user_id=2").expect_err("both")), "url_id");
        assert_eq!(q("user_id=2").expect("ok").scope, Some(Scope::User(2)));
    }

    #[test]
    fn bad_parameters_are_named() {
        assert_eq!(
            field(q("url_id=1&timezone=Mars/Olympus").expect_err("tz")),
            "timezone"
        );
        assert_eq!(
            field(q("url_id=1&granularity=week").expect_err("g")),
            "granularity"
        );
        assert_eq!(
            field(q("url_id=1&group_by=cities").expect_err("gb")),
            "group_by"
        );
        assert_eq!(
            field(q("url_id=1&group_by=top_urls").expect_err("top")),
            "group_by"
        );
        assert_eq!(field(q("url_id=1&interval=2w").expect_err("i")), "interval");
        assert_eq!(
            field(q("url_id=1&start=yesterday").expect_err("s")),
            "start"
        );
        assert_eq!(
            field(q("url_id=1&start=2026-02-01&end=2026-01-01").expect_err("order")),
            "end"
        );
        assert_eq!(
            field(q("url_id=1&interval=7d&start=2026-01-01").expect_err("both")),
            "interval"
        );
        assert_eq!(field(q("url_id=1&limit=0").expect_err("limit")), "limit");
    }

    #[test]
    fn a_range_too_long_for_its_granularity_is_refused() {
        let now = utc("2026-12-01T10:00:00Z");
        let w = q("url_id=1&interval=1y&granularity=hour")
            .expect("ok")
            .window(now, None);
        assert!(w.is_ok(), "a year of hours is allowed");
        let e = q("url_id=1&start=2020-01-01&granularity=hour")
            .expect("ok")
            .window(now, None)
            .expect_err("too long");
        assert_eq!(field(e), "granularity");
    }

    #[test]
    fn the_granularity_follows_the_range_when_not_given() {
        let now = utc("2026-12-01T10:00:00Z");
        let g = |s: &str| q(s).expect("ok").window(now, None).expect("w").granularity;
        assert_eq!(g("url_id=1&interval=24h"), Granularity::Hour);
        assert_eq!(g("url_id=1&interval=30d"), Granularity::Day);
        assert_eq!(g("url_id=1&interval=1y"), Granularity::Month);
    }

    #[test]
    fn local_dates_are_read_in_the_time_zone() {
        let a = q("url_id=1&start=2026-07-01&end=2026-07-02&timezone=Europe/Paris").expect("ok");
        assert_eq!(
            a.range,
            Range::Between(
                utc("2026-06-30T22:00:00Z"),
                Some(utc("2026-07-01T22:00:00Z"))
            )
        );
        let b = q("url_id=1&start=2026-07-01T00:00:00Z").expect("ok");
        assert_eq!(b.range, Range::Between(utc("2026-07-01T00:00:00Z"), None));
    }

    #[test]
    fn buckets_cover_the_window_in_local_time_with_empty_ones() {
        let tz: Tz = "Europe/Paris".parse().expect("tz");
        let w = Window {
            start: utc("2026-03-28T23:00:00Z"),
            end: utc("2026-03-29T23:00:00Z"),
            granularity: Granularity::Hour,
        };
        let b = buckets(&w, tz);
        // The spring-forward day has 23 local hours; 02:00 does not exist.
        assert_eq!(b.len(), 24, "{b:?}");
        assert_eq!(bucket_label(b[0], tz), "2026-03-29T00:00:00+01:00");
        assert_eq!(bucket_label(b[2], tz), "2026-03-29T03:00:00+02:00");
        assert_eq!(bucket_label(b[23], tz), "2026-03-30T00:00:00+02:00");
        let ny: Tz = "America/St_Johns".parse().expect("tz");
        assert_eq!(
            bucket_label(b[0], ny),
            "2026-03-29T00:00:00-02:30",
            "half-hour offsets and negative signs"
        );
        let m = Window {
            start: utc("2026-01-15T00:00:00Z"),
            end: utc("2026-04-02T00:00:00Z"),
            granularity: Granularity::Month,
        };
        let months: Vec<String> = buckets(&m, Tz::UTC).iter().map(|t| t.to_string()).collect();
        assert_eq!(months.len(), 4, "{months:?}");
    }
}
