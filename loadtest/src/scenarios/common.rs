//! What every scenario shares: the run context, the checked request helper and
//! the body-shape checks.
//!
//! Every request goes through [`call`], which names it by its route template,
//! sets the status it expects, and turns any mismatch (transport error, wrong
//! status, body of the wrong shape) into a goose failure with `set_failure`,
//! so a wrong answer is counted as an error, never as a success. The failure's
//! tag is stable (`GET /urls/{id}: expected 200, got 503`) so goose's error
//! summary groups failures instead of listing each URL; the request itself (its
//! URL), the response headers and the body go to goose's `--debug-log`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use goose::goose::GooseResponse;
use goose::metrics::GooseRequestMetric;
use goose::prelude::*;
use reqwest::header::{HeaderMap, LOCATION};
use serde_json::Value;

use crate::clicks::Ledger;
use crate::data::{excerpt, Dataset};

// === Context ===

/// State shared by every goose user of a run: read-only but for counters.
pub struct Ctx {
    /// The HTTP client every goose user uses: redirects are not followed, so a
    /// redirect is measured as the service's 302 and not as the target site.
    pub client: reqwest::Client,
    /// What the target holds (seeded or discovered).
    pub data: Dataset,
    /// Tag for everything this run creates (unique emails).
    pub run_tag: String,
    /// Share of redirects that must miss (unknown or inactive code), 0..=1.
    pub unknown_share: f64,
    /// GETs sent to each link of `data` and the 302s they got: the click check.
    pub clicks: Ledger,
    /// Serial numbers for unique emails.
    serial: AtomicU64,
}

impl Ctx {
    pub fn new(
        client: reqwest::Client,
        data: Dataset,
        run_tag: String,
        unknown_share: f64,
    ) -> Self {
        Ctx {
            client,
            clicks: Ledger::new(data.links.iter().map(|l| l.id)),
            data,
            run_tag,
            unknown_share,
            serial: AtomicU64::new(0),
        }
    }

    /// A number no other request of this run has used.
    pub fn next_serial(&self) -> u64 {
        self.serial.fetch_add(1, Ordering::Relaxed)
    }
}

/// The client every goose user is given: no redirects, no cookies, goose's
/// `--timeout` (60 s by default, as goose's own client).
///
/// # Errors
/// When reqwest cannot build a client (no TLS backend, for instance).
pub fn build_client(timeout: Option<&str>) -> Result<reqwest::Client, String> {
    let seconds = match timeout {
        None => 60.0,
        Some(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0 && s.is_finite())
            .ok_or_else(|| format!("--timeout {text:?} is not a positive number of seconds"))?,
    };
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs_f64(seconds))
        .user_agent(concat!(
            "url-shortener-loadtest/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

/// Wraps an `async fn(&Ctx, &mut GooseUser) -> TransactionResult` as a named
/// goose transaction that shares `ctx`.
#[macro_export]
macro_rules! tx {
    ($ctx:expr, $name:expr, $f:path) => {{
        let ctx = ::std::sync::Arc::clone(&$ctx);
        let function: ::goose::goose::TransactionFunction =
            ::std::sync::Arc::new(move |user: &mut ::goose::goose::GooseUser| {
                let ctx = ::std::sync::Arc::clone(&ctx);
                Box::pin(async move { $f(&ctx, user).await })
            });
        ::goose::goose::Transaction::new(function).set_name($name)
    }};
}

/// The `on_start` step of every scenario: hand the user the shared
/// no-redirect client. goose 0.19's `GooseClientBuilder` has no redirect
/// setting, so the client is set on the user (`GooseUser::client` is public;
/// clones of a reqwest client share one connection pool).
pub async fn use_run_client(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    user.client = ctx.client.clone();
    Ok(())
}

// === Requests ===

/// A response that passed its status check.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    /// goose's record of the request, for `set_failure` after a later check.
    pub metric: GooseRequestMetric,
}

/// Sends `method path` (with `body` as JSON), recorded under `name`, and
/// checks the status is `expect`.
///
/// # Errors
/// A goose failure (already recorded) on a transport error or another status.
pub async fn call(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    body: Option<&Value>,
    expect: u16,
) -> Result<Reply, Box<TransactionError>> {
    let mut builder = user.get_request_builder(&method, path)?;
    if let Some(body) = body {
        builder = builder.json(body);
    }
    let request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(name)
        .expect_status_code(expect)
        .set_request_builder(builder)
        .build();
    let GooseResponse { request, response } = user.request(request).await?;
    let mut metric = request;
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            let tag = format!("{name}: {}", transport_error(&e));
            let detail = format!("{}: {e}", metric.raw.url);
            return Err(fail(user, tag, &mut metric, None, &detail));
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = match response.text().await {
        Ok(body) => body,
        Err(e) => {
            let tag = format!("{name}: reading the body failed");
            let detail = format!("{}: {e}", metric.raw.url);
            return Err(fail(user, tag, &mut metric, Some(&headers), &detail));
        }
    };
    if status != expect {
        let tag = format!(
            "{name}: expected {expect}, got {status}{}",
            error_hint(&body)
        );
        return Err(fail(user, tag, &mut metric, Some(&headers), &body));
    }
    Ok(Reply {
        status,
        headers,
        body,
        metric,
    })
}

/// [`call`], then parse the body as JSON and check it with `shape`.
///
/// # Errors
/// A goose failure (already recorded) as for [`call`], or when the body is not
/// JSON or not of the expected shape.
pub async fn call_json(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    body: Option<&Value>,
    expect: u16,
    shape: fn(&Value) -> Result<(), String>,
) -> Result<Value, Box<TransactionError>> {
    let mut reply = call(user, method, path, name, body, expect).await?;
    check_json(user, name, &mut reply, shape)
}

/// Parses `reply`'s body and checks it with `shape`.
///
/// # Errors
/// A goose failure (recorded here) when it does not parse or fit.
pub fn check_json(
    user: &mut GooseUser,
    name: &str,
    reply: &mut Reply,
    shape: fn(&Value) -> Result<(), String>,
) -> Result<Value, Box<TransactionError>> {
    let value: Value = match serde_json::from_str(&reply.body) {
        Ok(value) => value,
        Err(_) => {
            let tag = format!("{name}: {} body is not JSON", reply.status);
            return Err(fail(
                user,
                tag,
                &mut reply.metric,
                Some(&reply.headers),
                &reply.body,
            ));
        }
    };
    if let Err(why) = shape(&value) {
        let tag = format!("{name}: {} body has the wrong shape: {why}", reply.status);
        return Err(fail(
            user,
            tag,
            &mut reply.metric,
            Some(&reply.headers),
            &reply.body,
        ));
    }
    if !is_json(&reply.headers) {
        let tag = format!("{name}: Content-Type is not application/json");
        return Err(fail(
            user,
            tag,
            &mut reply.metric,
            Some(&reply.headers),
            &reply.body,
        ));
    }
    Ok(value)
}

/// Records a failure after a check that [`call`] could not do itself (a field
/// that does not match what was sent, a wrong `Location`).
pub fn mismatch(
    user: &mut GooseUser,
    name: &str,
    reply: &mut Reply,
    why: &str,
) -> Box<TransactionError> {
    let tag = format!("{name}: {why}");
    fail(
        user,
        tag,
        &mut reply.metric,
        Some(&reply.headers),
        &reply.body,
    )
}

/// Checks a redirect: 302 to exactly `target`.
pub fn check_location(
    user: &mut GooseUser,
    name: &str,
    reply: &mut Reply,
    target: &str,
) -> TransactionResult {
    match reply.headers.get(LOCATION).map(|v| v.to_str()) {
        Some(Ok(location)) if location == target => Ok(()),
        Some(_) => Err(mismatch(
            user,
            name,
            reply,
            "Location is not the link's original_url",
        )),
        None => Err(mismatch(user, name, reply, "302 without a Location header")),
    }
}

/// `set_failure` with the URL and body in its debug record; returns its error.
fn fail(
    user: &mut GooseUser,
    tag: String,
    metric: &mut GooseRequestMetric,
    headers: Option<&HeaderMap>,
    body: &str,
) -> Box<TransactionError> {
    let detail = format!("{} -> {}", metric.raw.url, excerpt(body));
    match user.set_failure(&tag, metric, headers, Some(&detail)) {
        Err(e) => e,
        // set_failure always returns an error; keep one if that ever changes.
        Ok(()) => Box::new(TransactionError::Custom(tag)),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// A short, stable description of a transport error for the failure tag.
fn transport_error(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

/// ` (<error>)` from a JSON error body, so the summary says why (`database
/// unavailable`); empty otherwise. Kept short: the summary groups by tag.
pub fn error_hint(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .map(|e| format!(" ({})", e.chars().take(60).collect::<String>()))
        .unwrap_or_default()
}

// === Shapes ===

#[derive(Clone, Copy)]
enum Kind {
    Int,
    IntOrNull,
    Str,
    Bool,
    Object,
    Timestamp,
}

fn field(value: &Value, name: &str, kind: Kind) -> Result<(), String> {
    let v = value.get(name).ok_or_else(|| format!("no {name:?}"))?;
    let ok = match kind {
        Kind::Int => v.is_i64(),
        Kind::IntOrNull => v.is_i64() || v.is_null(),
        Kind::Str => v.is_string(),
        Kind::Bool => v.is_boolean(),
        Kind::Object => v.is_object(),
        Kind::Timestamp => v.as_str().is_some_and(is_timestamp),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is {v}"))
    }
}

fn fields(value: &Value, spec: &[(&str, Kind)]) -> Result<(), String> {
    if !value.is_object() {
        return Err("not an object".to_string());
    }
    spec.iter()
        .try_for_each(|&(name, kind)| field(value, name, kind))
}

/// `YYYY-MM-DDTHH:MM:SS`, the API's timestamp format.
pub fn is_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// `{"status":"ok"}`.
pub fn health(value: &Value) -> Result<(), String> {
    match value.get("status").and_then(Value::as_str) {
        Some("ok") => Ok(()),
        _ => Err("status is not \"ok\"".to_string()),
    }
}

/// A user object.
pub fn user(value: &Value) -> Result<(), String> {
    fields(
        value,
        &[
            ("id", Kind::Int),
            ("username", Kind::Str),
            ("email", Kind::Str),
            ("created_at", Kind::Timestamp),
        ],
    )
}

/// A URL object.
pub fn url(value: &Value) -> Result<(), String> {
    fields(
        value,
        &[
            ("id", Kind::Int),
            ("user_id", Kind::Int),
            ("short_code", Kind::Str),
            ("original_url", Kind::Str),
            ("title", Kind::Str),
            ("is_active", Kind::Bool),
            ("created_at", Kind::Timestamp),
            ("updated_at", Kind::Timestamp),
        ],
    )
}

/// An event object.
pub fn event(value: &Value) -> Result<(), String> {
    fields(
        value,
        &[
            ("id", Kind::Int),
            ("url_id", Kind::IntOrNull),
            ("user_id", Kind::IntOrNull),
            ("event_type", Kind::Str),
            ("timestamp", Kind::Timestamp),
            ("details", Kind::Object),
        ],
    )
}

/// An error body: `{"error": "...", ...}`.
pub fn error(value: &Value) -> Result<(), String> {
    fields(value, &[("error", Kind::Str)])
}

fn array_of(value: &Value, item: fn(&Value) -> Result<(), String>) -> Result<(), String> {
    let items = value.as_array().ok_or("not an array")?;
    items
        .iter()
        .enumerate()
        .try_for_each(|(i, v)| item(v).map_err(|e| format!("item {i}: {e}")))
}

/// An array of users.
pub fn users(value: &Value) -> Result<(), String> {
    array_of(value, user)
}

/// An array of URLs.
pub fn urls(value: &Value) -> Result<(), String> {
    array_of(value, url)
}

/// An array of events.
pub fn events(value: &Value) -> Result<(), String> {
    array_of(value, event)
}

/// The integer `key` of an object already checked by a shape.
pub fn int(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or_default()
}

/// The string `key` of an object already checked by a shape.
pub fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn a_url() -> Value {
        json!({"id": 1, "user_id": 2, "short_code": "J1O697", "original_url": "https://seeded.app/a",
               "title": "", "is_active": true, "created_at": "2025-09-28T22:57:23",
               "updated_at": "2025-12-26T09:40:16"})
    }

    #[test]
    fn timestamps_follow_the_api_format() {
        assert!(is_timestamp("2025-09-28T22:57:23"));
        assert!(!is_timestamp("2025-09-28 22:57:23"));
        assert!(!is_timestamp("2025-09-28T22:57:23Z"));
        assert!(!is_timestamp("2025-9-28T22:57:23"));
    }

    #[test]
    fn a_well_formed_url_passes_and_each_defect_is_named() {
        assert_eq!(url(&a_url()), Ok(()));
        let mut missing = a_url();
        missing.as_object_mut().map(|o| o.remove("title"));
        assert_eq!(url(&missing), Err("no \"title\"".to_string()));
        let mut wrong = a_url();
        wrong["is_active"] = json!("true");
        assert_eq!(url(&wrong), Err("\"is_active\" is \"true\"".to_string()));
        let mut string_id = a_url();
        string_id["user_id"] = json!("2");
        assert!(url(&string_id).is_err());
        assert!(url(&json!([])).is_err());
    }

    #[test]
    fn users_and_events_are_checked() {
        let u = json!({"id": 1, "username": "clearlagoon83", "email": "c@relay.cloud",
                       "created_at": "2025-07-18T23:45:12"});
        assert_eq!(user(&u), Ok(()));
        assert_eq!(users(&json!([u, u])), Ok(()));
        assert!(users(&json!([u, {"id": 2}]))
            .expect_err("must be refused")
            .starts_with("item 1"));
        let e = json!({"id": 1, "url_id": null, "user_id": 3, "event_type": "user_created",
                       "timestamp": "2025-07-18T23:45:12", "details": {}});
        assert_eq!(event(&e), Ok(()));
        let mut bad = e.clone();
        bad["details"] = json!("{}");
        assert!(event(&bad).is_err());
        assert_eq!(events(&json!([])), Ok(()));
        assert!(events(&json!({})).is_err());
    }

    #[test]
    fn health_and_error_bodies() {
        assert_eq!(health(&json!({"status": "ok"})), Ok(()));
        assert!(health(&json!({"status": "error"})).is_err());
        assert_eq!(error(&json!({"error": "not found", "details": {}})), Ok(()));
        assert!(error(&json!({"message": "not found"})).is_err());
    }

    #[test]
    fn error_hints_are_short_and_only_from_json_errors() {
        assert_eq!(
            error_hint(r#"{"error":"database unavailable"}"#),
            " (database unavailable)"
        );
        assert_eq!(error_hint("<html>bad gateway</html>"), "");
        assert_eq!(
            error_hint(&format!(r#"{{"error":"{}"}}"#, "x".repeat(200))).len(),
            63
        );
    }

    #[test]
    fn the_run_client_builds_and_refuses_bad_timeouts() {
        assert!(build_client(None).is_ok());
        assert!(build_client(Some("2.5")).is_ok());
        assert!(build_client(Some("soon")).is_err());
        assert!(build_client(Some("0")).is_err());
    }
}
