//! `/urls` and `/urls/{id}`.

use http::StatusCode;

use super::{cached_entity, cached_list, encode, present};
use crate::cache::List;
use crate::db::{self, urls::Changes};
use crate::domain::{self, Input, ListQuery};
use crate::error::{Error, Result};
use crate::http_util::{
    json_bytes, json_response, no_content, query_pairs, read_json_object, Request, Response,
};
use crate::state::AppState;

/// `POST /urls`: 201 with the URL; 404 for an unknown user; 409 for a taken custom code.
pub async fn create(req: Request, st: &AppState) -> Result<Response> {
    let mut input = Input::new(read_json_object(req, st.cfg.body_limit_bytes).await?);
    let user_id = input.required_id("user_id");
    let target = input.required_str("original_url");
    let target = input.check("original_url", target, domain::target_url);
    let title = input.optional_str("title");
    let title = input.check("title", title, domain::title);
    let code = input.optional_str("short_code");
    let code = input.check("short_code", code, domain::custom_code);
    input.finish()?;
    let (user_id, target) = (present(user_id)?, present(target)?);
    let title = title.unwrap_or_default();
    let url = db::urls::create(
        &mut st.db.get().await?,
        user_id,
        code.as_deref(),
        &target,
        &title,
    )
    .await?;
    // The code may have been cached as unknown before it existed.
    st.cache
        .invalidate(&[], &[&url.short_code], &[List::Urls, List::Events])
        .await;
    Ok(json_bytes(StatusCode::CREATED, encode(&url)?))
}

/// `GET /urls`: `?user_id=&is_active=&page=&per_page=`, by id, 20 a page by default.
pub async fn list(req: &Request, st: &AppState) -> Result<Response> {
    let q = ListQuery::parse(
        &query_pairs(req),
        &["page", "per_page", "user_id", "is_active"],
    )?;
    let page = q.page_or_default();
    let field = q.cache_field(Some(page));
    let (user_id, is_active) = (q.user_id, q.is_active);
    cached_list(st, List::Urls, field, || async move {
        db::urls::list(&st.db.get().await?, user_id, is_active, page).await
    })
    .await
}

/// `GET /urls/{id}`.
pub async fn get(id: &str, st: &AppState) -> Result<Response> {
    let id = domain::path_id(id, "url")?;
    cached_entity(st, "url", id, || async move {
        db::urls::get(&st.db.get().await?, id).await
    })
    .await
}

/// `PUT /urls/{id}`: any of title, is_active, original_url.
pub async fn update(id: &str, req: Request, st: &AppState) -> Result<Response> {
    let id = domain::path_id(id, "url")?;
    let mut input = Input::new(read_json_object(req, st.cfg.body_limit_bytes).await?);
    if input.is_empty() {
        return Err(Error::field(
            "body",
            "send at least one of title, is_active, original_url",
        ));
    }
    let title = input.optional_str("title");
    let title = input.check("title", title, domain::title);
    let is_active = input.optional_bool("is_active");
    let target = input.optional_str("original_url");
    let target = input.check("original_url", target, domain::target_url);
    input.finish()?;
    let changes = Changes {
        title,
        is_active,
        original_url: target,
    };
    let (_, url) = db::urls::update(&mut st.db.get().await?, id, changes).await?;
    st.cache
        .invalidate(
            &[("url", id)],
            &[&url.short_code],
            &[List::Urls, List::Events],
        )
        .await;
    Ok(json_response(StatusCode::OK, &url))
}

/// `DELETE /urls/{id}`.
pub async fn delete(id: &str, st: &AppState) -> Result<Response> {
    let id = domain::path_id(id, "url")?;
    let gone = db::urls::delete(&mut st.db.get().await?, id).await?;
    st.cache
        .invalidate(
            &[("url", id)],
            &[&gone.short_code],
            &[List::Urls, List::Events],
        )
        .await;
    Ok(no_content())
}
