//! The hot path: `GET|HEAD /{code}` and `GET|HEAD /urls/{code}/redirect`.

use http::{header, HeaderValue, Method, StatusCode};

use crate::cache::Lookup;
use crate::db;
use crate::domain::{self, Link};
use crate::error::{Error, Result};
use crate::events::Redirect;
use crate::http_util::{Body, Request, Response, CACHE_HIT, CACHE_MISS, NO_SHARED_CACHE, X_CACHE};
use crate::metrics as m;
use crate::state::AppState;

/// 302 to the stored target; 404 if the code is unknown or inactive. A GET records a
/// `redirect` event through the queue (never waiting on PostgreSQL); a HEAD does not.
pub async fn follow(code: &str, req: &Request, st: &AppState) -> Result<Response> {
    if !domain::is_plausible_code(code) {
        m::redirect("not_found");
        return Err(Error::NotFound("short code"));
    }
    let (link, hit) = match st.cache.get_link(code).await {
        Lookup::Hit(link) => (link, true),
        lookup => {
            let link = db::urls::link_by_code(&st.db.get().await?, code).await?;
            if matches!(lookup, Lookup::Miss) {
                st.cache.put_link(code, link.as_ref());
            }
            (link, false)
        }
    };
    let link: Link = match link {
        None => {
            m::redirect("not_found");
            return Err(Error::NotFound("short code"));
        }
        Some(l) if !l.is_active => {
            m::redirect("inactive");
            return Err(Error::NotFound("short code"));
        }
        Some(l) => l,
    };
    m::redirect("found");
    if req.method() == Method::GET {
        let h = |name| {
            req.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        st.events.push(Redirect::new(
            &link,
            code,
            h(header::REFERER),
            h(header::USER_AGENT),
        ));
    }
    // from_bytes keeps the stored target byte for byte (validated: no spaces or controls).
    let location = HeaderValue::from_bytes(link.target.as_bytes())
        .map_err(|_| Error::Internal(format!("target of {code} is not a valid header value")))?;
    let mut resp = http::Response::new(Body::default());
    *resp.status_mut() = StatusCode::FOUND;
    let headers = resp.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, NO_SHARED_CACHE.clone());
    headers.insert(
        X_CACHE,
        if hit {
            CACHE_HIT.clone()
        } else {
            CACHE_MISS.clone()
        },
    );
    Ok(resp)
}
