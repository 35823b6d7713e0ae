//! Queries on `urls`. Mutations write their event in the same transaction.

use serde_json::json;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use super::{is_state, statements as sql};
use crate::domain::{EventKind, Link, Page, ShortCode, TargetUrl, Title, Url};
use crate::error::{Error, Result};

// Columns are fixed by the statement text (see `statements`); a test prepares them all.
fn url(row: &Row) -> Url {
    Url {
        id: row.get(0),
        user_id: row.get(1),
        short_code: row.get(2),
        original_url: row.get(3),
        title: row.get(4),
        is_active: row.get(5),
        created_at: row.get(6),
        updated_at: row.get(7),
    }
}

/// How many fresh codes to try before giving up; at 62^6 codes a collision is rare,
/// five in a row means something else is wrong.
const CODE_ATTEMPTS: usize = 5;

/// Creates a URL with the given custom code (409 if taken) or a generated one
/// (retried on collision), and its `created` event.
pub async fn create(
    client: &mut deadpool_postgres::Client,
    user_id: i64,
    custom_code: Option<&ShortCode>,
    original_url: &TargetUrl,
    title: &Title,
) -> Result<Url> {
    let tx = client.transaction().await?;
    let stmt = tx.prepare_cached(sql::URL_INSERT).await?;
    let mut created = None;
    for _ in 0..CODE_ATTEMPTS {
        let code = custom_code.cloned().unwrap_or_else(ShortCode::generate);
        let row = tx
            .query_opt(
                &stmt,
                &[
                    &user_id,
                    &code.as_str(),
                    &original_url.as_str(),
                    &title.as_str(),
                ],
            )
            .await
            .map_err(|e| {
                if is_state(&e, &SqlState::FOREIGN_KEY_VIOLATION) {
                    Error::NotFound("user")
                } else {
                    e.into()
                }
            })?;
        match row {
            Some(row) => {
                created = Some(url(&row));
                break;
            }
            None if custom_code.is_some() => {
                return Err(Error::Conflict("short_code is already taken"))
            }
            None => continue,
        }
    }
    let created = created.ok_or_else(|| Error::internal("no free short code after 5 attempts"))?;
    super::events::record(
        &tx,
        Some(created.id),
        Some(user_id),
        EventKind::Created,
        json!({ "short_code": created.short_code, "original_url": created.original_url }),
    )
    .await?;
    tx.commit().await?;
    Ok(created)
}

pub async fn get(client: &deadpool_postgres::Client, id: i64) -> Result<Option<Url>> {
    let stmt = client.prepare_cached(sql::URL_GET).await?;
    Ok(client.query_opt(&stmt, &[&id]).await?.as_ref().map(url))
}

pub async fn exists(client: &deadpool_postgres::Client, id: i64) -> Result<bool> {
    let stmt = client.prepare_cached(sql::URL_EXISTS).await?;
    Ok(client.query_one(&stmt, &[&id]).await?.get(0))
}

/// The redirect lookup.
pub async fn link_by_code(client: &deadpool_postgres::Client, code: &str) -> Result<Option<Link>> {
    let stmt = client.prepare_cached(sql::URL_LINK_BY_CODE).await?;
    Ok(client.query_opt(&stmt, &[&code]).await?.map(|row| Link {
        url_id: row.get(0),
        user_id: row.get(1),
        is_active: row.get(2),
        target: row.get(3),
    }))
}

pub async fn list(
    client: &deadpool_postgres::Client,
    user_id: Option<i64>,
    is_active: Option<bool>,
    page: Page,
) -> Result<Vec<Url>> {
    let (limit, offset) = (page.limit(), page.offset());
    let rows = match (user_id, is_active) {
        (None, None) => {
            client
                .query(
                    &client.prepare_cached(sql::URL_LIST).await?,
                    &[&limit, &offset],
                )
                .await?
        }
        (Some(u), None) => {
            client
                .query(
                    &client.prepare_cached(sql::URL_LIST_BY_USER).await?,
                    &[&u, &limit, &offset],
                )
                .await?
        }
        (None, Some(a)) => {
            client
                .query(
                    &client.prepare_cached(sql::URL_LIST_BY_ACTIVE).await?,
                    &[&a, &limit, &offset],
                )
                .await?
        }
        (Some(u), Some(a)) => {
            let stmt = client.prepare_cached(sql::URL_LIST_BY_USER_ACTIVE).await?;
            client.query(&stmt, &[&u, &a, &limit, &offset]).await?
        }
    };
    Ok(rows.iter().map(url).collect())
}

/// The fields a PUT may change.
#[derive(Debug, Default)]
pub struct Changes {
    pub title: Option<Title>,
    pub is_active: Option<bool>,
    pub original_url: Option<TargetUrl>,
}

/// Applies the changes, moves `updated_at`, and writes one `updated` event per field
/// whose value changed. Returns (before, after).
pub async fn update(
    client: &mut deadpool_postgres::Client,
    id: i64,
    changes: Changes,
) -> Result<(Url, Url)> {
    let tx = client.transaction().await?;
    let stmt = tx.prepare_cached(sql::URL_GET_FOR_UPDATE).await?;
    let old = tx
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(url)
        .ok_or(Error::NotFound("url"))?;
    let title = changes
        .title
        .map_or_else(|| old.title.clone(), Title::into_inner);
    let is_active = changes.is_active.unwrap_or(old.is_active);
    let target = changes
        .original_url
        .map_or_else(|| old.original_url.clone(), TargetUrl::into_inner);
    let stmt = tx.prepare_cached(sql::URL_UPDATE).await?;
    let new = url(&tx
        .query_one(&stmt, &[&id, &title, &is_active, &target])
        .await?);
    let mut changed = Vec::new();
    if old.title != new.title {
        changed.push(("title", json!(new.title)));
    }
    if old.is_active != new.is_active {
        changed.push(("is_active", json!(new.is_active)));
    }
    if old.original_url != new.original_url {
        changed.push(("original_url", json!(new.original_url)));
    }
    for (field, value) in changed {
        super::events::record(
            &tx,
            Some(id),
            Some(new.user_id),
            EventKind::Updated,
            json!({ "field": field, "new_value": value }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok((old, new))
}

/// Deletes a URL and writes its `deleted` event; returns the deleted row.
pub async fn delete(client: &mut deadpool_postgres::Client, id: i64) -> Result<Url> {
    let tx = client.transaction().await?;
    let stmt = tx.prepare_cached(sql::URL_DELETE).await?;
    let gone = tx
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(url)
        .ok_or(Error::NotFound("url"))?;
    super::events::record(
        &tx,
        Some(id),
        Some(gone.user_id),
        EventKind::Deleted,
        json!({ "short_code": gone.short_code, "original_url": gone.original_url }),
    )
    .await?;
    tx.commit().await?;
    Ok(gone)
}
