//! The access log's fast path: one JSON line per request, written straight to the
//! non-blocking stdout writer in the same shape as the tracing JSON lines, without
//! going through tracing's field visitors and serde (which cost ~40 % of a cached
//! redirect's instructions under callgrind; PERF.md#what-was-tried).
//!
//! Without a writer (tests that build an `App` directly) lines go through `tracing`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use http::{HeaderValue, Method, StatusCode};

/// Where access lines go.
#[derive(Clone)]
pub struct AccessLog {
    writer: tracing_appender::non_blocking::NonBlocking,
}

impl AccessLog {
    pub fn new(writer: tracing_appender::non_blocking::NonBlocking) -> Self {
        AccessLog { writer }
    }

    /// Writes one line; a full or closed writer drops it (the writer counts that).
    pub fn write(
        &self,
        method: &Method,
        route: &str,
        status: StatusCode,
        elapsed: Duration,
        rid: &HeaderValue,
    ) {
        let line = format_line(&chrono::Utc::now(), method, route, status, elapsed, rid);
        let mut w = self.writer.clone();
        let _ = w.write_all(line.as_bytes());
    }
}

thread_local! {
    /// (unix second, "YYYY-MM-DDTHH:MM:SS" of it): chrono's formatter runs once a second.
    static SECOND: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
}

/// Appends the decimal digits of `n`, zero-padded to `width`.
fn push_num(out: &mut String, n: u64, width: usize) {
    push_digits(out, n, 10, width);
}

/// Appends `n` in `radix` (2 to 16, lower-case), zero-padded to `width`, without the
/// `fmt` machinery (PERF.md#what-was-tried).
pub(crate) fn push_digits(out: &mut String, mut n: u64, radix: u64, width: usize) {
    let mut buf = [b'0'; 64];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            break;
        }
    }
    let start = i.min(buf.len() - width.min(buf.len()));
    // Only ASCII digits were written, so this is valid UTF-8.
    out.push_str(std::str::from_utf8(&buf[start..]).unwrap_or("0"));
}

/// The line, as tracing-subscriber's JSON format would write the same event.
/// PERF: no `fmt` machinery on this path (it was a quarter of a cached redirect's
/// instructions under callgrind); PERF.md#what-was-tried.
pub fn format_line(
    now: &chrono::DateTime<chrono::Utc>,
    method: &Method,
    route: &str,
    status: StatusCode,
    elapsed: Duration,
    rid: &HeaderValue,
) -> String {
    let mut s = String::with_capacity(256);
    s.push_str(r#"{"timestamp":""#);
    let secs = now.timestamp();
    SECOND.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.0 != secs {
            *cell = (secs, now.format("%Y-%m-%dT%H:%M:%S").to_string());
        }
        s.push_str(&cell.1);
    });
    s.push('.');
    push_num(&mut s, u64::from(now.timestamp_subsec_micros()), 6);
    s.push_str(r#"Z","level":"INFO","fields":{"message":"request","method":""#);
    escape_into(&mut s, method.as_str());
    s.push_str(r#"","route":""#);
    escape_into(&mut s, route);
    s.push_str(r#"","status":"#);
    push_num(&mut s, u64::from(status.as_u16()), 1);
    s.push_str(r#","latency_ms":"#);
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    push_num(&mut s, micros / 1000, 1);
    s.push('.');
    push_num(&mut s, micros % 1000, 3);
    s.push_str(r#","request_id":""#);
    escape_into(&mut s, rid.to_str().unwrap_or_default());
    s.push_str("\"},\"target\":\"shortener::router\"}\n");
    s
}

/// JSON string escaping for the few characters header values and routes can hold.
fn escape_into(out: &mut String, s: &str) {
    // Almost always nothing to escape: one scan and one copy.
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_in_any_radix_with_padding() {
        let mut s = String::new();
        push_digits(&mut s, 0, 10, 1);
        s.push(' ');
        push_digits(&mut s, 42, 10, 6);
        s.push(' ');
        push_digits(&mut s, 0xdead_beef, 16, 1);
        s.push(' ');
        push_digits(&mut s, u64::MAX, 2, 1);
        assert_eq!(s, format!("0 000042 deadbeef {:b}", u64::MAX));
    }

    #[test]
    fn a_line_is_one_json_object_with_the_tracing_shape() {
        let now = chrono::Utc::now();
        let rid = HeaderValue::from_static(r#"ab"c\d"#);
        let line = format_line(
            &now,
            &Method::GET,
            "/{code}",
            StatusCode::FOUND,
            Duration::from_micros(1500),
            &rid,
        );
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).expect("valid JSON");
        let ts = v["timestamp"].as_str().expect("timestamp");
        assert_eq!(ts, now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "shortener::router");
        assert_eq!(v["fields"]["message"], "request");
        assert_eq!(v["fields"]["route"], "/{code}");
        assert_eq!(v["fields"]["status"], 302);
        assert_eq!(v["fields"]["latency_ms"], 1.5);
        let slow = format_line(
            &now,
            &Method::GET,
            "/x",
            StatusCode::OK,
            Duration::from_micros(2_000_007),
            &rid,
        );
        let v: serde_json::Value = serde_json::from_str(slow.trim_end()).expect("valid JSON");
        assert_eq!(v["fields"]["latency_ms"], 2000.007);
        assert_eq!(v["fields"]["request_id"], r#"ab"c\d"#);
        assert!(v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
