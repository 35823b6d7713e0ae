//! Queries on `users`. Mutations write their event in the same transaction.

use chrono::NaiveDateTime;
use serde_json::json;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use super::{constraint, is_state, statements as sql};
use crate::domain::{Email, EventKind, Page, User, Username};
use crate::error::{Error, Result};

// Rows come from statements whose columns are fixed in `statements`, and a test
// prepares every one of them against the migrated schema, so `get` cannot panic.
fn user(row: &Row) -> User {
    User {
        id: row.get(0),
        username: row.get(1),
        email: row.get(2),
        created_at: row.get(3),
    }
}

fn email_conflict(e: tokio_postgres::Error) -> Error {
    if is_state(&e, &SqlState::UNIQUE_VIOLATION) && constraint(&e) == Some("users_email_lower_key")
    {
        Error::Conflict("a user with this email already exists")
    } else {
        e.into()
    }
}

pub async fn create(
    client: &mut deadpool_postgres::Client,
    username: &Username,
    email: &Email,
) -> Result<User> {
    let tx = client.transaction().await?;
    let stmt = tx.prepare_cached(sql::USER_INSERT).await?;
    let row = tx
        .query_one(&stmt, &[&username.as_str(), &email.as_str()])
        .await
        .map_err(email_conflict)?;
    let created = user(&row);
    super::events::record(
        &tx,
        None,
        Some(created.id),
        EventKind::UserCreated,
        json!({ "username": username.as_str(), "email": email.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok(created)
}

pub async fn get(client: &deadpool_postgres::Client, id: i64) -> Result<Option<User>> {
    let stmt = client.prepare_cached(sql::USER_GET).await?;
    Ok(client.query_opt(&stmt, &[&id]).await?.as_ref().map(user))
}

pub async fn list(client: &deadpool_postgres::Client, page: Page) -> Result<Vec<User>> {
    let stmt = client.prepare_cached(sql::USER_LIST).await?;
    let rows = client
        .query(&stmt, &[&page.limit(), &page.offset()])
        .await?;
    Ok(rows.iter().map(user).collect())
}

pub async fn exists(client: &deadpool_postgres::Client, id: i64) -> Result<bool> {
    let stmt = client.prepare_cached(sql::USER_EXISTS).await?;
    Ok(client.query_one(&stmt, &[&id]).await?.get(0))
}

/// Applies the given changes; one `user_updated` event per field that changed.
pub async fn update(
    client: &mut deadpool_postgres::Client,
    id: i64,
    username: Option<Username>,
    email: Option<Email>,
) -> Result<User> {
    let tx = client.transaction().await?;
    let stmt = tx.prepare_cached(sql::USER_GET_FOR_UPDATE).await?;
    let old = tx
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(user)
        .ok_or(Error::NotFound("user"))?;
    let new_username = username.map_or_else(|| old.username.clone(), Username::into_inner);
    let new_email = email.map_or_else(|| old.email.clone(), Email::into_inner);
    let stmt = tx.prepare_cached(sql::USER_UPDATE).await?;
    let row = tx
        .query_one(&stmt, &[&id, &new_username, &new_email])
        .await
        .map_err(email_conflict)?;
    let updated = user(&row);
    for (field, before, after) in [
        ("username", &old.username, &updated.username),
        ("email", &old.email, &updated.email),
    ] {
        if before != after {
            super::events::record(
                &tx,
                None,
                Some(id),
                EventKind::UserUpdated,
                json!({ "field": field, "new_value": after }),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(updated)
}

/// Deletes a user and (by cascade) its URLs; returns the (id, short_code) of those URLs
/// so their cache entries can be dropped.
pub async fn delete(client: &mut deadpool_postgres::Client, id: i64) -> Result<Vec<(i64, String)>> {
    let tx = client.transaction().await?;
    // Lock the user first so a concurrent POST /urls for it cannot slip in between.
    let stmt = tx.prepare_cached(sql::USER_GET_FOR_UPDATE).await?;
    tx.query_opt(&stmt, &[&id])
        .await?
        .ok_or(Error::NotFound("user"))?;
    let stmt = tx.prepare_cached(sql::URLS_DELETE_BY_USER).await?;
    let urls: Vec<(i64, String)> = tx
        .query(&stmt, &[&id])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let stmt = tx.prepare_cached(sql::USER_DELETE).await?;
    tx.execute(&stmt, &[&id]).await?;
    super::events::record(
        &tx,
        None,
        Some(id),
        EventKind::UserDeleted,
        json!({ "urls_deleted": urls.len() }),
    )
    .await?;
    tx.commit().await?;
    Ok(urls)
}

/// One row of a bulk import.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub id: i64,
    pub username: Username,
    pub email: Email,
    pub created_at: NaiveDateTime,
}

/// Upserts all rows in one transaction and one statement, moves the id sequence past
/// them, and writes one `bulk_imported` event. Its statements may run for
/// `statement_timeout_ms` (DATABASE_BULK_STATEMENT_TIMEOUT_MS), not the request default. Returns the ids that existed before
/// (their cache entries are stale now).
pub async fn bulk_upsert(
    client: &mut deadpool_postgres::Client,
    rows: &[ImportRow],
    statement_timeout_ms: u64,
) -> Result<Vec<i64>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.username.as_str()).collect();
    let emails: Vec<&str> = rows.iter().map(|r| r.email.as_str()).collect();
    let created: Vec<NaiveDateTime> = rows.iter().map(|r| r.created_at).collect();
    let tx = client.transaction().await?;
    super::set_local_statement_timeout(&tx, statement_timeout_ms).await?;
    let lock = tx.prepare_cached(sql::USERS_LOCK).await?;
    tx.execute(&lock, &[]).await?;
    let stmt = tx.prepare_cached(sql::USERS_BULK_UPSERT).await?;
    let row = tx
        .query_one(&stmt, &[&ids, &names, &emails, &created])
        .await
        .map_err(email_conflict)?;
    let existed: Vec<i64> = row.get(1);
    let stmt = tx.prepare_cached(sql::USERS_SEQUENCE_SYNC).await?;
    tx.query_one(&stmt, &[]).await?;
    super::events::record(
        &tx,
        None,
        None,
        EventKind::BulkImported,
        json!({ "count": rows.len() }),
    )
    .await?;
    tx.commit().await?;
    Ok(existed)
}
