//! The hot path: `GET|HEAD /{code}` and `GET|HEAD /urls/{code}/redirect`.
//!
//! Lookup order: the near cache (in process), then Valkey, then PostgreSQL; misses for
//! one code are coalesced (single-flight), so a hot code going cold makes one query.

use http::{header, HeaderValue, Method, StatusCode};

use crate::cache::Lookup;
use crate::db;
use crate::domain::{self, Link};
use crate::error::{Error, Result};
use crate::events::Redirect;
use crate::http_util::{Body, Request, Response, CACHE_HIT, CACHE_MISS, NO_SHARED_CACHE, X_CACHE};
use crate::metrics as m;
use crate::near::Target;
use crate::state::AppState;

/// 302 to the stored target; 404 if the code is unknown or inactive. A GET records a
/// `redirect` event through the queue (never waiting on PostgreSQL); a HEAD does not.
pub async fn follow(code: &str, req: &Request, st: &AppState) -> Result<Response> {
    if !domain::is_plausible_code(code) {
        m::redirect("not_found");
        return Err(Error::NotFound("short code"));
    }
    let near = st.cache.near();
    let (target, hit) = match near.and_then(|n| n.get(code)) {
        Some(target) => {
            m::cache_local("hit");
            (target, true)
        }
        None => {
            if near.is_some() {
                m::cache_local("miss");
            }
            let epoch = near.map(|n| n.epoch());
            let (link, hit) = st.flights.run(code, || lookup(code, st)).await?;
            let target = match &link {
                Some(l) => Some(Target::from_link(l).ok_or_else(|| {
                    Error::Internal(format!("target of {code} is not a valid header value"))
                })?),
                None => None,
            };
            if let (Some(near), Some(epoch)) = (near, epoch) {
                near.insert(code, target.clone(), epoch);
            }
            (target, hit)
        }
    };
    let target = match target {
        None => {
            m::redirect("not_found");
            return Err(Error::NotFound("short code"));
        }
        Some(t) if !t.is_active => {
            m::redirect("inactive");
            return Err(Error::NotFound("short code"));
        }
        Some(t) => t,
    };
    m::redirect("found");
    if req.method() == Method::GET {
        let h = |name| {
            req.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        st.events.push(Redirect::new(
            target.url_id,
            target.user_id,
            code,
            h(header::REFERER),
            h(header::USER_AGENT),
        ));
    }
    let mut resp = http::Response::new(Body::default());
    *resp.status_mut() = StatusCode::FOUND;
    let headers = resp.headers_mut();
    headers.insert(header::LOCATION, target.location);
    headers.insert(header::CACHE_CONTROL, NO_SHARED_CACHE.clone());
    headers.insert(
        X_CACHE.clone(),
        if hit {
            CACHE_HIT.clone()
        } else {
            CACHE_MISS.clone()
        },
    );
    Ok(resp)
}

/// Valkey, then PostgreSQL (filling Valkey). Returns the answer and whether Valkey had it.
async fn lookup(code: &str, st: &AppState) -> Result<(Option<Link>, bool)> {
    match st.cache.get_link(code).await {
        Lookup::Hit(link) => Ok((link, true)),
        lookup => {
            let link = db::urls::link_by_code(&st.db.get().await?, code).await?;
            if matches!(lookup, Lookup::Miss) {
                st.cache.put_link(code, link.as_ref());
            }
            Ok((link, false))
        }
    }
}
