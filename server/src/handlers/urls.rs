//! `/urls` and `/urls/{id}`.

use std::sync::Arc;

use http::StatusCode;

use super::{cached_entity, cached_list, encode, path_id, present, read_json, to_completion};
use crate::cache::List;
use crate::db::{self, urls::Changes};
use crate::domain::{Input, ListQuery, ShortCode, TargetUrl, Title};
use crate::error::{Error, Result};
use crate::request::query_pairs;
use crate::response::{json_bytes, json_response, no_content, Request, Response};
use crate::state::{AppState, State};

/// `POST /urls`: 201 with the URL; 404 for an unknown user; 409 for a taken custom code.
pub async fn create(req: Request, st: &State) -> Result<Response> {
    let mut input = Input::new(read_json(req, st).await?);
    let user_id = input.required_id("user_id");
    let target = input.required::<TargetUrl>("original_url");
    let title = input.optional::<Title>("title");
    let code = input.optional::<ShortCode>("short_code");
    input.finish()?;
    let (user_id, target) = (present(user_id)?, present(target)?);
    let title = title.unwrap_or_else(Title::empty);
    let st = Arc::clone(st);
    let url = to_completion(async move {
        let url = db::urls::create(
            &mut st.db.get().await?,
            user_id,
            code.as_ref(),
            &target,
            &title,
        )
        .await?;
        // The code may have been cached as unknown before it existed.
        st.cache
            .invalidate(&[], &[&url.short_code], &[List::Urls, List::Events])
            .await;
        Ok(url)
    })
    .await?;
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
        db::urls::list(&st.db.get_ro().await?, user_id, is_active, page).await
    })
    .await
}

/// `GET /urls/{id}`.
pub async fn get(id: &str, st: &AppState) -> Result<Response> {
    let id = path_id(id, "url")?;
    cached_entity(st, "url", id, || async move {
        db::urls::get(&st.db.get().await?, id).await
    })
    .await
}

/// `PUT /urls/{id}`: any of title, is_active, original_url.
pub async fn update(id: &str, req: Request, st: &State) -> Result<Response> {
    let id = path_id(id, "url")?;
    let mut input = Input::new(read_json(req, st).await?);
    if input.is_empty() {
        return Err(Error::field(
            "body",
            "send at least one of title, is_active, original_url",
        ));
    }
    let title = input.optional::<Title>("title");
    let is_active = input.optional_bool("is_active");
    let original_url = input.optional::<TargetUrl>("original_url");
    input.finish()?;
    let changes = Changes {
        title,
        is_active,
        original_url,
    };
    let st = Arc::clone(st);
    let url = to_completion(async move {
        let (_, url) = db::urls::update(&mut st.db.get().await?, id, changes).await?;
        st.cache
            .invalidate(
                &[("url", id)],
                &[&url.short_code],
                &[List::Urls, List::Events],
            )
            .await;
        Ok(url)
    })
    .await?;
    Ok(json_response(StatusCode::OK, &url))
}

/// `DELETE /urls/{id}`.
pub async fn delete(id: &str, st: &State) -> Result<Response> {
    let id = path_id(id, "url")?;
    let st = Arc::clone(st);
    to_completion(async move {
        let gone = db::urls::delete(&mut st.db.get().await?, id).await?;
        st.cache
            .invalidate(
                &[("url", id)],
                &[&gone.short_code],
                &[List::Urls, List::Events],
            )
            .await;
        Ok(())
    })
    .await?;
    Ok(no_content())
}
