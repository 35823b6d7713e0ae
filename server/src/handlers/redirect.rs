//! The hot path: `GET|HEAD /{code}` and `GET|HEAD /urls/{code}/redirect`. The lookup
//! is `links::Links`; this handler only answers and records the click.

use chrono::Utc;
use http::{header, Method, StatusCode};

use crate::clicks::{Click, ClickKind};
use crate::domain;
use crate::error::{Error, Result};
use crate::metrics::{self as m, RedirectResult};
use crate::response::{x_cache, Body, Request, Response, NO_SHARED_CACHE, X_CACHE};
use crate::state::AppState;

/// 302 to the stored target; 404 if the code is unknown or inactive. A GET records a
/// click through the queue (never waiting on PostgreSQL), a hit on an unknown or
/// inactive code included; a HEAD does not.
pub async fn follow(code: &str, req: &Request, st: &AppState) -> Result<Response> {
    if !domain::is_plausible_code(code) {
        m::redirect(RedirectResult::NotFound);
        return Err(Error::NotFound("short code"));
    }
    let resolved = st.links.resolve(code).await?;
    let is_get = req.method() == Method::GET;
    // A GET is a click (HEAD never is): the headers travel as the request's own
    // values, decoded and classified by the click writer, not here.
    let click = |kind: ClickKind| Click {
        at: Utc::now(),
        kind,
        referrer: req.headers().get(header::REFERER).cloned(),
        user_agent: req.headers().get(header::USER_AGENT).cloned(),
    };
    let target = match resolved.target {
        None => {
            m::redirect(RedirectResult::NotFound);
            if is_get {
                st.clicks.push(click(ClickKind::Unknown));
            }
            return Err(Error::NotFound("short code"));
        }
        Some(t) if !t.is_active => {
            m::redirect(RedirectResult::Inactive);
            if is_get {
                st.clicks.push(click(ClickKind::Inactive));
            }
            return Err(Error::NotFound("short code"));
        }
        Some(t) => t,
    };
    m::redirect(RedirectResult::Found);
    if is_get {
        st.clicks.push(click(ClickKind::Link {
            url_id: target.url_id,
            user_id: target.user_id,
            code: std::sync::Arc::clone(&target.code),
        }));
    }
    let mut resp = http::Response::new(Body::default());
    *resp.status_mut() = StatusCode::FOUND;
    let headers = resp.headers_mut();
    headers.insert(header::LOCATION, target.location);
    headers.insert(header::CACHE_CONTROL, NO_SHARED_CACHE.clone());
    headers.insert(X_CACHE.clone(), x_cache(resolved.cached));
    Ok(resp)
}
