//! The routing table: one `match` on (method, path segments). Specific arms come
//! before general ones, so `/users` is never taken for a short code. Metrics and logs
//! carry the route template, never the raw path.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Method};

use crate::access_log::push_digits;
use crate::error::{Error, Result};
use crate::handlers::{events, health, redirect, urls, users};
use crate::http_util::{Request, Response, X_REQUEST_ID};
use crate::metrics as m;
use crate::state::AppState;

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
        (&Method::GET, ["urls", id]) => ("/urls/{id}", GetUrl(id)),
        (&Method::PUT, ["urls", id]) => ("/urls/{id}", UpdateUrl(id)),
        (&Method::DELETE, ["urls", id]) => ("/urls/{id}", DeleteUrl(id)),
        (_, ["urls", _]) => ("/urls/{id}", WrongMethod("GET, PUT, DELETE")),

        (&Method::GET, ["events"]) => ("/events", ListEvents),
        (&Method::POST, ["events"]) => ("/events", CreateEvent),
        (_, ["events"]) => ("/events", WrongMethod("GET, POST")),

        (&Method::GET | &Method::HEAD, [code]) => ("/{code}", Redirect(code)),
        (_, [_]) => ("/{code}", WrongMethod("GET, HEAD")),
        _ => ("unmatched", NotFound),
    }
}

/// Runs the handler of a request's route.
async fn dispatch(req: Request, st: &AppState) -> (&'static str, Result<Response>) {
    let path = req.uri().path().to_owned();
    let (template, route) = route(req.method(), &path, st.cfg.metrics_port.is_none());
    let result = match route {
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
        Route::ListEvents => events::list(&req, st).await,
        Route::CreateEvent => events::create(req, st).await,
        Route::Redirect(code) => redirect::follow(code, &req, st).await,
        Route::WrongMethod(allow) => Err(Error::MethodNotAllowed(allow)),
        Route::NotFound => Err(Error::NotFound("route")),
    };
    (template, result)
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

/// Handles one request end to end: dispatch, error mapping (exactly once), metrics,
/// the access-log line. A panicking handler becomes a 500, not a dropped connection.
pub async fn handle(req: Request, st: &AppState) -> Response {
    let start = Instant::now();
    m::in_flight(1.0);
    let method = req.method().clone();
    let rid = request_id(&req);
    let (route, result) = match AssertUnwindSafe(dispatch(req, st)).catch_unwind().await {
        Ok(routed) => routed,
        Err(_) => ("unmatched", Err(Error::Internal("handler panicked".into()))),
    };
    let mut resp = result.unwrap_or_else(Error::into_response);
    let elapsed = start.elapsed();
    let status = resp.status();
    m::request(&method, route, status, elapsed);
    m::in_flight(-1.0);
    if st.cfg.access_log && tracing::level_filters::LevelFilter::current() >= tracing::Level::INFO {
        if let Some(log) = st.access.get() {
            log.write(&method, route, status, elapsed, &rid);
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
