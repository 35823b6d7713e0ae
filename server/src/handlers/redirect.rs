//! The hot path: `GET|HEAD /{code}` and `GET|HEAD /urls/{code}/redirect`. The lookup
//! is `links::Links`; this handler only answers and records the click.

use http::{header, Method, StatusCode};

use crate::domain;
use crate::error::{Error, Result};
use crate::events::Redirect;
use crate::metrics::{self as m, RedirectResult};
use crate::response::{x_cache, Body, Request, Response, NO_SHARED_CACHE, X_CACHE};
use crate::state::AppState;

/// 302 to the stored target; 404 if the code is unknown or inactive. A GET records a
/// `redirect` event through the queue (never waiting on PostgreSQL); a HEAD does not.
pub async fn follow(code: &str, req: &Request, st: &AppState) -> Result<Response> {
    if !domain::is_plausible_code(code) {
        m::redirect(RedirectResult::NotFound);
        return Err(Error::NotFound("short code"));
    }
    let resolved = st.links.resolve(code).await?;
    let target = match resolved.target {
        None => {
            m::redirect(RedirectResult::NotFound);
            return Err(Error::NotFound("short code"));
        }
        Some(t) if !t.is_active => {
            m::redirect(RedirectResult::Inactive);
            return Err(Error::NotFound("short code"));
        }
        Some(t) => t,
    };
    m::redirect(RedirectResult::Found);
    if req.method() == Method::GET {
        // Header bytes need not be UTF-8 (obs-text): decoded lossily, never refused.
        let h = |name| {
            req.headers()
                .get(name)
                .map(|v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()))
        };
        st.events.push(Redirect::new(
            target.url_id,
            target.user_id,
            code,
            h(header::REFERER).as_deref(),
            h(header::USER_AGENT).as_deref(),
        ));
    }
    let mut resp = http::Response::new(Body::default());
    *resp.status_mut() = StatusCode::FOUND;
    let headers = resp.headers_mut();
    headers.insert(header::LOCATION, target.location);
    headers.insert(header::CACHE_CONTROL, NO_SHARED_CACHE.clone());
    headers.insert(X_CACHE.clone(), x_cache(resolved.cached));
    Ok(resp)
}
