//! The routing table: one `match` on (method, path segments). Specific arms come
//! before general ones, so `/users` is never taken for a short code. Metrics and logs
//! carry the route template, never the raw path.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Method, StatusCode};

use crate::access_log::push_digits;
use crate::error::{Error, Result};
use crate::handlers::{analytics, events, health, redirect, urls, users};
use crate::metrics as m;
use crate::response::{Request, Response, X_REQUEST_ID};
use crate::state::{AppState, State};

/// Up to `N` non-empty path segments; `None` when there are more (no route has more).
pub fn segments<const N: usize>(path: &str) -> Option<([&str; N], usize)> {
    let mut out = [""; N];
    let mut n = 0;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        if n == N {
            return None;
        }
        out[n] = seg;
        n += 1;
    }
    Some((out, n))
}

/// What a request asks for; borrowed from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Health,
    Ready,
    Metrics,
    ListUsers,
    CreateUser,
    BulkUsers,
    GetUser(&'a str),
    UpdateUser(&'a str),
    DeleteUser(&'a str),
    ListUrls,
    CreateUrl,
    GetUrl(&'a str),
    UpdateUrl(&'a str),
    DeleteUrl(&'a str),
    UrlStats(&'a str),
    Analytics,
    AnalyticsSummary,
    ListEvents,
    CreateEvent,
    Redirect(&'a str),
    /// A known path with the wrong method; the value is the `Allow` header.
    WrongMethod(&'static str),
    NotFound,
}

/// The routing table. Returns the route template (for metrics and logs) and the route.
pub fn route<'a>(method: &Method, path: &'a str, metrics_here: bool) -> (&'static str, Route<'a>) {
    use Route::*;
    let Some((segs, n)) = segments::<3>(path) else {
        return ("unmatched", NotFound);
    };
    match (method, &segs[..n]) {
        (&Method::GET, ["health"]) => ("/health", Health),
        (_, ["health"]) => ("/health", WrongMethod("GET")),
        (&Method::GET, ["ready"]) => ("/ready", Ready),
        (_, ["ready"]) => ("/ready", WrongMethod("GET")),
        // With METRICS_PORT set, /metrics lives on that port only.
        (&Method::GET, ["metrics"]) if metrics_here => ("/metrics", Metrics),

        (&Method::GET, ["users"]) => ("/users", ListUsers),
        (&Method::POST, ["users"]) => ("/users", CreateUser),
        (_, ["users"]) => ("/users", WrongMethod("GET, POST")),
        (&Method::POST, ["users", "bulk"]) => ("/users/bulk", BulkUsers),
        (_, ["users", "bulk"]) => ("/users/bulk", WrongMethod("POST")),
        (&Method::GET, ["users", id]) => ("/users/{id}", GetUser(id)),
        (&Method::PUT, ["users", id]) => ("/users/{id}", UpdateUser(id)),
        (&Method::DELETE, ["users", id]) => ("/users/{id}", DeleteUser(id)),
        (_, ["users", _]) => ("/users/{id}", WrongMethod("GET, PUT, DELETE")),

        (&Method::GET, ["urls"]) => ("/urls", ListUrls),
        (&Method::POST, ["urls"]) => ("/urls", CreateUrl),
        (_, ["urls"]) => ("/urls", WrongMethod("GET, POST")),
        (&Method::GET | &Method::HEAD, ["urls", code, "redirect"]) => {
            ("/urls/{code}/redirect", Redirect(code))
        }
        (_, ["urls", _, "redirect"]) => ("/urls/{code}/redirect", WrongMethod("GET, HEAD")),
        (&Method::GET, ["urls", id, "stats"]) => ("/urls/{id}/stats", UrlStats(id)),
        (_, ["urls", _, "stats"]) => ("/urls/{id}/stats", WrongMethod("GET")),
        (&Method::GET, ["urls", id]) => ("/urls/{id}", GetUrl(id)),
        (&Method::PUT, ["urls", id]) => ("/urls/{id}", UpdateUrl(id)),
        (&Method::DELETE, ["urls", id]) => ("/urls/{id}", DeleteUrl(id)),
        (_, ["urls", _]) => ("/urls/{id}", WrongMethod("GET, PUT, DELETE")),

        (&Method::GET, ["analytics"]) => ("/analytics", Analytics),
        (_, ["analytics"]) => ("/analytics", WrongMethod("GET")),
        (&Method::GET, ["analytics", "summary"]) => ("/analytics/summary", AnalyticsSummary),
        (_, ["analytics", "summary"]) => ("/analytics/summary", WrongMethod("GET")),

        (&Method::GET, ["events"]) => ("/events", ListEvents),
        (&Method::POST, ["events"]) => ("/events", CreateEvent),
        (_, ["events"]) => ("/events", WrongMethod("GET, POST")),

        (&Method::GET | &Method::HEAD, [code]) => ("/{code}", Redirect(code)),
        (_, [_]) => ("/{code}", WrongMethod("GET, HEAD")),
        _ => ("unmatched", NotFound),
    }
}

/// Runs the handler of a request's route.
async fn dispatch(route: Route<'_>, req: Request, st: &State) -> Result<Response> {
    match route {
        Route::Health => Ok(health::live()),
        Route::Ready => Ok(health::ready(st)),
        Route::Metrics => Ok(health::metrics(st)),
        Route::ListUsers => users::list(&req, st).await,
        Route::CreateUser => users::create(req, st).await,
        Route::BulkUsers => users::bulk(req, st).await,
        Route::GetUser(id) => users::get(id, st).await,
        Route::UpdateUser(id) => users::update(id, req, st).await,
        Route::DeleteUser(id) => users::delete(id, st).await,
        Route::ListUrls => urls::list(&req, st).await,
        Route::CreateUrl => urls::create(req, st).await,
        Route::GetUrl(id) => urls::get(id, st).await,
        Route::UpdateUrl(id) => urls::update(id, req, st).await,
        Route::DeleteUrl(id) => urls::delete(id, st).await,
        Route::UrlStats(id) => analytics::stats(id, st).await,
        Route::Analytics => analytics::query(&req, st).await,
        Route::AnalyticsSummary => analytics::summary(&req, st).await,
        Route::ListEvents => events::list(&req, st).await,
        Route::CreateEvent => events::create(req, st).await,
        Route::Redirect(code) => redirect::follow(code, &req, st).await,
        Route::WrongMethod(allow) => Err(Error::MethodNotAllowed(allow)),
        Route::NotFound => Err(Error::NotFound("route")),
    }
}

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);

/// The request id: the caller's `X-Request-Id` when it is sane, else a fresh one,
/// `{pid:08x}-{sequence:x}`.
fn request_id(req: &Request) -> HeaderValue {
    if let Some(v) = req.headers().get(&X_REQUEST_ID) {
        if !v.is_empty() && v.len() <= 128 && v.to_str().is_ok() {
            return v.clone();
        }
    }
    // PERF: digits by hand, no `format!` per request (PERF.md#what-was-tried).
    static PID_PREFIX: OnceLock<String> = OnceLock::new();
    let prefix = PID_PREFIX.get_or_init(|| format!("{:08x}-", std::process::id()));
    let mut id = String::with_capacity(prefix.len() + 16);
    id.push_str(prefix);
    push_digits(&mut id, REQUEST_SEQ.fetch_add(1, Ordering::Relaxed), 16, 1);
    // Hex digits and a dash are always a valid header value.
    HeaderValue::from_maybe_shared(Bytes::from(id))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// What a request that has not answered yet owes the metrics and the log. If its
/// future is dropped (hyper does that when the client disconnects), `Drop` settles
/// it: the in-flight gauge comes down, and the request is counted and logged as 499
/// (nginx's "client closed request").
struct Pending<'a> {
    st: &'a AppState,
    method: Method,
    route: &'static str,
    start: Instant,
    /// `Some` until the request is answered.
    rid: Option<HeaderValue>,
}

/// The status recorded for a request whose client went away first.
const CLIENT_CLOSED: u16 = 499;

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(rid) = self.rid.take() {
            let status = StatusCode::from_u16(CLIENT_CLOSED).unwrap_or(StatusCode::BAD_REQUEST);
            m::request_cancelled();
            settle(
                self.st,
                &self.method,
                self.route,
                status,
                self.start.elapsed(),
                &rid,
            );
        }
    }
}

/// Metrics and the access line, once per request, however it ended.
fn settle(
    st: &AppState,
    method: &Method,
    route: &'static str,
    status: StatusCode,
    elapsed: Duration,
    rid: &HeaderValue,
) {
    m::request(method, route, status, elapsed);
    m::in_flight(-1.0);
    if st.cfg.access_log && tracing::level_filters::LevelFilter::current() >= tracing::Level::INFO {
        if let Some(log) = st.access.get() {
            log.write(method, route, status, elapsed, rid);
        } else {
            tracing::info!(
                method = %method,
                route,
                status = status.as_u16(),
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                request_id = rid.to_str().unwrap_or_default(),
                "request"
            );
        }
    }
}

/// A 5xx's cause goes to the log with what matches it to its access line.
fn log_failure(e: &Error, method: &Method, route: &'static str, rid: &HeaderValue) {
    let request_id = rid.to_str().unwrap_or_default();
    match e {
        Error::Internal(cause) => tracing::error!(
            request_id,
            route,
            method = %method,
            error = format!("{cause:#}"),
            "internal error"
        ),
        Error::Unavailable(cause) | Error::Retryable(cause) => tracing::warn!(
            request_id,
            route,
            method = %method,
            error = %cause,
            status = e.status().as_u16(),
            "dependency unavailable"
        ),
        _ => {}
    }
}

/// Handles one request end to end: dispatch, error mapping (exactly once), metrics,
/// the access-log line. A panicking handler becomes a 500, not a dropped connection.
pub async fn handle(req: Request, st: &State) -> Response {
    let start = Instant::now();
    m::in_flight(1.0);
    let method = req.method().clone();
    // The Uri is reference-counted: cloning it keeps the route's borrow alive while
    // the request itself moves into the handler.
    let uri = req.uri().clone();
    let (template, route) = route(&method, uri.path(), st.cfg.metrics_port.is_none());
    let mut pending = Pending {
        st,
        method,
        route: template,
        start,
        rid: Some(request_id(&req)),
    };
    let result = match AssertUnwindSafe(dispatch(route, req, st))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(_) => Err(Error::internal("handler panicked")),
    };
    let rid = pending
        .rid
        .take()
        .unwrap_or_else(|| HeaderValue::from_static("unknown"));
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            log_failure(&e, &pending.method, template, &rid);
            e.into_response()
        }
    };
    settle(
        st,
        &pending.method,
        template,
        resp.status(),
        start.elapsed(),
        &rid,
    );
    resp.headers_mut().insert(X_REQUEST_ID.clone(), rid);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_skip_empty_parts_and_cap_the_count() {
        let (s, n) = segments::<3>("/urls/abc/redirect").expect("three");
        assert_eq!(&s[..n], ["urls", "abc", "redirect"]);
        let (s, n) = segments::<3>("/users/").expect("one");
        assert_eq!(&s[..n], ["users"]);
        let (_, n) = segments::<3>("/").expect("none");
        assert_eq!(n, 0);
        assert!(segments::<3>("/a/b/c/d").is_none());
    }

    #[test]
    fn specific_routes_win_over_short_codes() {
        assert_eq!(
            route(&Method::GET, "/users", true),
            ("/users", Route::ListUsers)
        );
        assert_eq!(
            route(&Method::GET, "/health", true),
            ("/health", Route::Health)
        );
        assert_eq!(
            route(&Method::GET, "/events/", true),
            ("/events", Route::ListEvents)
        );
        assert_eq!(
            route(&Method::GET, "/abc123", true),
            ("/{code}", Route::Redirect("abc123"))
        );
        assert_eq!(
            route(&Method::HEAD, "/abc123", true),
            ("/{code}", Route::Redirect("abc123"))
        );
    }

    #[test]
    fn ids_and_codes_are_captured_under_their_templates() {
        assert_eq!(
            route(&Method::GET, "/users/7", true),
            ("/users/{id}", Route::GetUser("7"))
        );
        assert_eq!(
            route(&Method::PUT, "/urls/9", true),
            ("/urls/{id}", Route::UpdateUrl("9"))
        );
        assert_eq!(
            route(&Method::DELETE, "/users/x", true),
            ("/users/{id}", Route::DeleteUser("x"))
        );
        assert_eq!(
            route(&Method::GET, "/urls/Ab3/redirect", true),
            ("/urls/{code}/redirect", Route::Redirect("Ab3"))
        );
        assert_eq!(
            route(&Method::POST, "/users/bulk", true),
            ("/users/bulk", Route::BulkUsers)
        );
    }

    #[test]
    fn wrong_methods_name_the_allowed_ones() {
        assert_eq!(
            route(&Method::DELETE, "/users", true).1,
            Route::WrongMethod("GET, POST")
        );
        assert_eq!(
            route(&Method::GET, "/users/bulk", true).1,
            Route::WrongMethod("POST")
        );
        assert_eq!(
            route(&Method::POST, "/urls/1", true).1,
            Route::WrongMethod("GET, PUT, DELETE")
        );
        assert_eq!(
            route(&Method::POST, "/abc", true).1,
            Route::WrongMethod("GET, HEAD")
        );
        assert_eq!(
            route(&Method::POST, "/health", true).1,
            Route::WrongMethod("GET")
        );
    }

    #[test]
    fn unknown_paths_are_not_found_and_metrics_can_move_away() {
        assert_eq!(
            route(&Method::GET, "/a/b/c/d", true),
            ("unmatched", Route::NotFound)
        );
        assert_eq!(
            route(&Method::GET, "/users/1/urls", true),
            ("unmatched", Route::NotFound)
        );
        assert_eq!(route(&Method::GET, "/metrics", true).1, Route::Metrics);
        // On the API port with METRICS_PORT set, "metrics" is just a (reserved) code.
        assert_eq!(
            route(&Method::GET, "/metrics", false).1,
            Route::Redirect("metrics")
        );
    }
}
