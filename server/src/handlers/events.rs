//! `/events`: the event log, read and appended to.

use std::sync::Arc;

use http::StatusCode;

use super::{cached_list, encode, present, read_json, to_completion};
use crate::cache::List;
use crate::db;
use crate::domain::values::check_json_has_no_nul;
use crate::domain::{EventType, Input, ListQuery};
use crate::error::{Error, Result};
use crate::request::query_pairs;
use crate::response::{json_bytes, Request, Response};
use crate::state::{AppState, State};

/// `GET /events`: `?url_id=&user_id=&event_type=&page=&per_page=`, by id.
pub async fn list(req: &Request, st: &AppState) -> Result<Response> {
    let q = ListQuery::parse(
        &query_pairs(req),
        &["page", "per_page", "url_id", "user_id", "event_type"],
    )?;
    let page = q.page_or_default();
    let field = q.cache_field(Some(page));
    let q = &q;
    cached_list(st, List::Events, field, || async move {
        db::events::list(
            &st.db.get_ro().await?,
            q.url_id,
            q.user_id,
            q.event_type.as_ref().map(EventType::as_str),
            page,
        )
        .await
    })
    .await
}

/// `POST /events`: 201; 404 when the url or the user does not exist. `details` may
/// be any JSON object without NUL characters (which `jsonb` cannot store): a NUL
/// anywhere in it is a 422 naming `details`, not stripped.
pub async fn create(req: Request, st: &State) -> Result<Response> {
    let mut input = Input::new(read_json(req, st).await?);
    let url_id = input.required_id("url_id");
    let user_id = input.required_id("user_id");
    let event_type = input.required::<EventType>("event_type");
    let details = serde_json::Value::Object(input.optional_object("details").unwrap_or_default());
    if let Err(reason) = check_json_has_no_nul(&details) {
        input.reject("details", reason);
    }
    input.finish()?;
    let (url_id, user_id, event_type) = (present(url_id)?, present(user_id)?, present(event_type)?);
    let st = Arc::clone(st);
    let event = to_completion(async move {
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
        let event = db::events::insert(&client, url_id, user_id, &event_type, &details).await?;
        drop(client);
        st.cache.invalidate(&[], &[], &[List::Events]).await;
        Ok(event)
    })
    .await?;
    Ok(json_bytes(StatusCode::CREATED, encode(&event)?))
}
