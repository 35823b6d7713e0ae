//! `/events`: the event log, read and appended to.

use http::StatusCode;

use super::{cached_list, encode, present};
use crate::cache::List;
use crate::db;
use crate::domain::{self, Input, ListQuery};
use crate::error::{Error, Result};
use crate::http_util::{json_bytes, query_pairs, read_json_object, Request, Response};
use crate::state::AppState;

/// `GET /events`: `?url_id=&user_id=&event_type=&page=&per_page=`, by id.
pub async fn list(req: &Request, st: &AppState) -> Result<Response> {
    let q = ListQuery::parse(
        &query_pairs(req),
        &["page", "per_page", "url_id", "user_id", "event_type"],
    )?;
    let page = q.page_or_default();
    let field = q.cache_field(Some(page));
    cached_list(st, List::Events, field, || async move {
        db::events::list(
            &st.db.get().await?,
            q.url_id,
            q.user_id,
            q.event_type.as_deref(),
            page,
        )
        .await
    })
    .await
}

/// `POST /events`: 201; 404 when the url or the user does not exist.
pub async fn create(req: Request, st: &AppState) -> Result<Response> {
    let mut input = Input::new(read_json_object(req, st.cfg.body_limit_bytes).await?);
    let url_id = input.required_id("url_id");
    let user_id = input.required_id("user_id");
    let event_type = input.required_str("event_type");
    let event_type = input.check("event_type", event_type, domain::event_type);
    let details = input.optional_object("details").unwrap_or_default();
    input.finish()?;
    let (url_id, user_id, event_type) = (present(url_id)?, present(user_id)?, present(event_type)?);
    let client = st.db.get().await?;
    // Both checks go out together and pipeline on the one connection.
    let (url_exists, user_exists) = tokio::try_join!(
        db::urls::exists(&client, url_id),
        db::users::exists(&client, user_id)
    )?;
    if !url_exists {
        return Err(Error::NotFound("url"));
    }
    if !user_exists {
        return Err(Error::NotFound("user"));
    }
    let details = serde_json::Value::Object(details);
    let event = db::events::insert(&client, url_id, user_id, &event_type, &details).await?;
    drop(client);
    st.cache.invalidate(&[], &[], &[List::Events]).await;
    Ok(json_bytes(StatusCode::CREATED, encode(&event)?))
}
