//! `/users`, `/users/{id}` and `/users/bulk`.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use http::{header, StatusCode};

use std::sync::Arc;

use super::{
    body_deadline, cached_entity, cached_list, encode, path_id, present, read_json, to_completion,
};
use crate::cache::List;
use crate::db::{self, users::ImportRow};
use crate::domain::values::Parse;
use crate::domain::{self, Email, Input, ListQuery, Page, Username};
use crate::error::{Error, Result};
use crate::request::{query_pairs, read_body};
use crate::response::{json_bytes, json_response, no_content, Request, Response};
use crate::state::{AppState, State};

/// `POST /users`: 201 with the user; 409 when the email is taken (case-insensitively).
pub async fn create(req: Request, st: &State) -> Result<Response> {
    let mut input = Input::new(read_json(req, st).await?);
    let username = input.required::<Username>("username");
    let email = input.required::<Email>("email");
    input.finish()?;
    let (username, email) = (present(username)?, present(email)?);
    let st = Arc::clone(st);
    let user = to_completion(async move {
        let user = db::users::create(&mut st.db.get().await?, &username, &email).await?;
        st.cache
            .invalidate(&[], &[], &[List::Users, List::Events])
            .await;
        Ok(user)
    })
    .await?;
    Ok(json_bytes(StatusCode::CREATED, encode(&user)?))
}

/// `GET /users`: all users by id up to USERS_LIST_MAX, or one page with `?page=&per_page=`.
pub async fn list(req: &Request, st: &AppState) -> Result<Response> {
    let q = ListQuery::parse(&query_pairs(req), &["page", "per_page"])?;
    let page = if q.is_paginated() {
        q.page_or_default()
    } else {
        Page {
            page: 1,
            per_page: st.cfg.users_list_max,
        }
    };
    let field = q.cache_field(q.is_paginated().then_some(page));
    cached_list(st, List::Users, field, || async move {
        db::users::list(&st.db.get_ro().await?, page).await
    })
    .await
}

/// `GET /users/{id}`.
pub async fn get(id: &str, st: &AppState) -> Result<Response> {
    let id = path_id(id, "user")?;
    cached_entity(st, "user", id, || async move {
        db::users::get(&st.db.get().await?, id).await
    })
    .await
}

/// `PUT /users/{id}`: any of username, email.
pub async fn update(id: &str, req: Request, st: &State) -> Result<Response> {
    let id = path_id(id, "user")?;
    let mut input = Input::new(read_json(req, st).await?);
    if input.is_empty() {
        return Err(Error::field("body", "send at least one of username, email"));
    }
    let username = input.optional::<Username>("username");
    let email = input.optional::<Email>("email");
    input.finish()?;
    let st = Arc::clone(st);
    let user = to_completion(async move {
        let user = db::users::update(&mut st.db.get().await?, id, username, email).await?;
        st.cache
            .invalidate(&[("user", id)], &[], &[List::Users, List::Events])
            .await;
        Ok(user)
    })
    .await?;
    Ok(json_response(StatusCode::OK, &user))
}

/// `DELETE /users/{id}`: the user's URLs go too, and so do their cache entries.
pub async fn delete(id: &str, st: &State) -> Result<Response> {
    let id = path_id(id, "user")?;
    let st = Arc::clone(st);
    to_completion(async move {
        let urls = db::users::delete(&mut st.db.get().await?, id).await?;
        let mut entities = vec![("user", id)];
        entities.extend(urls.iter().map(|(url_id, _)| ("url", *url_id)));
        let codes: Vec<&str> = urls.iter().map(|(_, code)| code.as_str()).collect();
        st.cache
            .invalidate(&entities, &codes, &[List::Users, List::Urls, List::Events])
            .await;
        Ok(())
    })
    .await?;
    Ok(no_content())
}

/// `POST /users/bulk`: a multipart `file` of CSV `id,username,email,created_at`, imported
/// in one transaction (all rows or none); existing ids are updated.
pub async fn bulk(req: Request, st: &State) -> Result<Response> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let boundary = multer::parse_boundary(&content_type).map_err(|_| {
        Error::BadRequest("send multipart/form-data with a `file` field holding the CSV".into())
    })?;
    let (_, body) = read_body(req, st.cfg.bulk_limit_bytes, body_deadline(st)).await?;
    let csv = multipart_file(body, boundary).await?;
    let rows = parse_users_csv(&csv)?;
    let imported = rows.len();
    let st = Arc::clone(st);
    to_completion(async move {
        let existed = db::users::bulk_upsert(
            &mut st.db.get().await?,
            &rows,
            st.cfg.database_bulk_statement_timeout_ms,
        )
        .await?;
        let entities: Vec<(&'static str, i64)> = existed.iter().map(|id| ("user", *id)).collect();
        st.cache
            .invalidate(&entities, &[], &[List::Users, List::Events])
            .await;
        Ok(())
    })
    .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "imported": imported }),
    ))
}

async fn multipart_file(body: bytes::Bytes, boundary: String) -> Result<bytes::Bytes> {
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let bad = |e: multer::Error| Error::BadRequest(format!("malformed multipart body: {e}"));
    while let Some(field) = form.next_field().await.map_err(bad)? {
        if field.name() == Some("file") {
            return field.bytes().await.map_err(bad);
        }
    }
    Err(Error::field(
        "file",
        "is required: a multipart field named `file` holding the CSV",
    ))
}

const CSV_HEADER: [&str; 4] = ["id", "username", "email", "created_at"];

fn parse_created_at(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(s, domain::timestamp::FORMAT))
        .ok()
}

/// Parses and checks the whole file before anything is written; the first bad row
/// fails the import with its line number.
pub fn parse_users_csv(data: &[u8]) -> Result<Vec<ImportRow>> {
    let fail = |line: u64, msg: String| Error::field("file", format!("line {line}: {msg}"));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(data);
    let header = reader
        .headers()
        .map_err(|e| fail(1, format!("unreadable header: {e}")))?
        .clone();
    if header.iter().collect::<Vec<_>>() != CSV_HEADER {
        return Err(fail(
            1,
            format!("the header must be {}", CSV_HEADER.join(",")),
        ));
    }
    let mut rows = Vec::new();
    let mut ids: HashMap<i64, u64> = HashMap::new();
    let mut emails: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, csv::Position::line);
            fail(line, format!("malformed row: {e}"))
        })?;
        let line = record.position().map_or(0, csv::Position::line);
        let id = record[0]
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| fail(line, "id must be a positive integer".into()))?;
        let username = Username::parse(record[1].to_owned())
            .map_err(|m| fail(line, format!("username {m}")))?;
        let email =
            Email::parse(record[2].to_owned()).map_err(|m| fail(line, format!("email {m}")))?;
        let created_at = parse_created_at(&record[3])
            .ok_or_else(|| fail(line, "created_at must look like 2025-09-19 22:25:05".into()))?;
        if let Some(first) = ids.insert(id, line) {
            return Err(fail(line, format!("id {id} repeats line {first}")));
        }
        if let Some(first) = emails.insert(email.as_str().to_lowercase(), line) {
            return Err(fail(line, format!("email {email} repeats line {first}")));
        }
        rows.push(ImportRow {
            id,
            username,
            email,
            created_at,
        });
    }
    if rows.is_empty() {
        return Err(fail(2, "the file has no data rows".into()));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(e: Error) -> String {
        match e {
            Error::Invalid(d) => d["file"].clone(),
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn a_well_formed_file_parses() {
        let rows = parse_users_csv(b"id,username,email,created_at\n1,ann,ann@x.io,2025-09-19 22:25:05\n2,bob,bob@x.io,2025-01-01 00:00:00\n")
            .expect("valid");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].email.as_str(), "bob@x.io");
    }

    #[test]
    fn a_bad_row_names_its_line() {
        let e = parse_users_csv(b"id,username,email,created_at\n1,ann,ann@x.io,2025-09-19 22:25:05\n2,bob,not-an-email,2025-01-01 00:00:00\n")
            .expect_err("rejected");
        assert!(reason(e).starts_with("line 3:"));
    }

    #[test]
    fn ragged_rows_bad_headers_and_duplicates_are_rejected() {
        assert!(parse_users_csv(b"id,name\n1,ann\n").is_err());
        assert!(parse_users_csv(b"id,username,email,created_at\n1,ann\n").is_err());
        let dup = parse_users_csv(b"id,username,email,created_at\n1,a,a@x.io,2025-01-01 00:00:00\n1,b,b@x.io,2025-01-01 00:00:00\n");
        assert!(reason(dup.expect_err("dup id")).contains("repeats line 2"));
        let dup = parse_users_csv(b"id,username,email,created_at\n1,a,a@x.io,2025-01-01 00:00:00\n2,b,A@X.io,2025-01-01 00:00:00\n");
        assert!(reason(dup.expect_err("dup email")).contains("repeats line 2"));
        assert!(parse_users_csv(b"id,username,email,created_at\n").is_err());
    }
}
