//! `write`: create, update and delete of URLs and users with realistic bodies.
//!
//! Each goose user owns one user (created on start) and keeps at most
//! [`MAX_URLS`] URLs and [`MAX_EXTRA_USERS`] extra users, deleting the oldest
//! when full, so a long run does not grow the tables without bound. A delete
//! is followed by a read that must get 404: it checks the cache was
//! invalidated. On stop, the user deletes what it created (a user's URLs go
//! with it).

use std::sync::Arc;

use goose::prelude::*;
use rand::Rng;
use serde_json::{json, Value};

use super::chance;
use super::common::{self, call, call_json, check_json, int, mismatch, Ctx};
use crate::{bodies, tx};

/// URLs a goose user keeps before deleting the oldest.
pub const MAX_URLS: usize = 20;
/// Extra users a goose user keeps before deleting the oldest.
pub const MAX_EXTRA_USERS: usize = 5;

/// What one goose user of this scenario has created and not deleted.
#[derive(Clone, Debug, Default)]
struct Writer {
    user_id: Option<i64>,
    urls: Vec<i64>,
    extra_users: Vec<i64>,
}

/// The `write` scenario.
///
/// # Errors
/// Never in practice: goose refuses only a zero weight.
pub fn scenario(ctx: &Arc<Ctx>) -> Result<Scenario, GooseError> {
    Ok(scenario!("write")
        .register_transaction(
            tx!(ctx, "client", common::use_run_client)
                .set_on_start()
                .set_sequence(1),
        )
        .register_transaction(
            tx!(ctx, "create own user", start)
                .set_on_start()
                .set_sequence(2),
        )
        .register_transaction(tx!(ctx, "create url", create_url).set_weight(4)?)
        .register_transaction(tx!(ctx, "update url", update_url).set_weight(3)?)
        .register_transaction(tx!(ctx, "delete url", delete_url).set_weight(2)?)
        .register_transaction(tx!(ctx, "create user", create_user).set_weight(2)?)
        .register_transaction(tx!(ctx, "update user", update_user).set_weight(2)?)
        .register_transaction(tx!(ctx, "delete user", delete_user).set_weight(1)?)
        .register_transaction(tx!(ctx, "clean up", clean_up).set_on_stop()))
}

fn state(user: &mut GooseUser) -> Writer {
    user.get_session_data::<Writer>()
        .cloned()
        .unwrap_or_default()
}

async fn start(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    owner(ctx, user).await.map(|_| ())
}

/// The goose user's own user id, created if it has none yet.
async fn owner(ctx: &Arc<Ctx>, user: &mut GooseUser) -> Result<i64, Box<TransactionError>> {
    let mut writer = state(user);
    if let Some(id) = writer.user_id {
        return Ok(id);
    }
    let id = post_user(ctx, user).await?;
    writer.user_id = Some(id);
    user.set_session_data(writer);
    Ok(id)
}

async fn post_user(ctx: &Arc<Ctx>, user: &mut GooseUser) -> Result<i64, Box<TransactionError>> {
    let body = bodies::new_user(&mut rand::rng(), &ctx.run_tag, ctx.next_serial());
    let name = "POST /users";
    let mut reply = call(user, GooseMethod::Post, "/users", name, Some(&body), 201).await?;
    let created = check_json(user, name, &mut reply, common::user)?;
    if !same(&created, &body, &["username", "email"]) {
        return Err(mismatch(
            user,
            name,
            &mut reply,
            "created user differs from the request",
        ));
    }
    Ok(int(&created, "id"))
}

/// Whether `got` has the values `sent` has for each of `keys` that `sent` holds.
fn same(got: &Value, sent: &Value, keys: &[&str]) -> bool {
    keys.iter()
        .all(|k| sent.get(k).is_none_or(|want| got.get(k) == Some(want)))
}

async fn create_url(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let owner = owner(ctx, user).await?;
    let mut writer = state(user);
    if writer.urls.len() >= MAX_URLS {
        let oldest = writer.urls.remove(0);
        user.set_session_data(writer.clone());
        delete(user, "urls", oldest).await?;
    }
    let body = bodies::new_url(&mut rand::rng(), owner);
    let name = "POST /urls";
    let mut reply = call(user, GooseMethod::Post, "/urls", name, Some(&body), 201).await?;
    let created = check_json(user, name, &mut reply, common::url)?;
    if !same(&created, &body, &["user_id", "original_url", "title"]) {
        return Err(mismatch(
            user,
            name,
            &mut reply,
            "created url differs from the request",
        ));
    }
    writer.urls.push(int(&created, "id"));
    user.set_session_data(writer);
    Ok(())
}

async fn update_url(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let writer = state(user);
    if writer.urls.is_empty() {
        return create_url(ctx, user).await;
    }
    let id = writer.urls[rand::rng().random_range(0..writer.urls.len())];
    let mut body = bodies::url_update(&mut rand::rng());
    if chance(0.2) {
        // Deactivate now and then: the next update re-activates (or not).
        body["is_active"] = json!(false);
    }
    let name = "PUT /urls/{id}";
    let path = format!("/urls/{id}");
    let mut reply = call(user, GooseMethod::Put, &path, name, Some(&body), 200).await?;
    let updated = check_json(user, name, &mut reply, common::url)?;
    if !same(&updated, &body, &["title", "original_url", "is_active"]) {
        return Err(mismatch(
            user,
            name,
            &mut reply,
            "url not updated as requested",
        ));
    }
    Ok(())
}

async fn delete_url(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let mut writer = state(user);
    if writer.urls.is_empty() {
        return create_url(ctx, user).await;
    }
    let id = writer
        .urls
        .swap_remove(rand::rng().random_range(0..writer.urls.len()));
    user.set_session_data(writer);
    delete(user, "urls", id).await?;
    let path = format!("/urls/{id}");
    call_json(
        user,
        GooseMethod::Get,
        &path,
        "GET /urls/{id} (deleted)",
        None,
        404,
        common::error,
    )
    .await?;
    Ok(())
}

async fn create_user(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let mut writer = state(user);
    if writer.extra_users.len() >= MAX_EXTRA_USERS {
        let oldest = writer.extra_users.remove(0);
        user.set_session_data(writer.clone());
        delete(user, "users", oldest).await?;
    }
    let id = post_user(ctx, user).await?;
    writer.extra_users.push(id);
    user.set_session_data(writer);
    Ok(())
}

async fn update_user(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let owner = owner(ctx, user).await?;
    let writer = state(user);
    let id = if writer.extra_users.is_empty() || chance(0.5) {
        owner
    } else {
        writer.extra_users[rand::rng().random_range(0..writer.extra_users.len())]
    };
    let username = bodies::username(&mut rand::rng());
    let body = if chance(0.3) {
        let email = bodies::email(&mut rand::rng(), &username, &ctx.run_tag, ctx.next_serial());
        json!({ "username": username, "email": email })
    } else {
        json!({ "username": username })
    };
    let name = "PUT /users/{id}";
    let path = format!("/users/{id}");
    let mut reply = call(user, GooseMethod::Put, &path, name, Some(&body), 200).await?;
    let updated = check_json(user, name, &mut reply, common::user)?;
    if !same(&updated, &body, &["username", "email"]) {
        return Err(mismatch(
            user,
            name,
            &mut reply,
            "user not updated as requested",
        ));
    }
    Ok(())
}

async fn delete_user(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let mut writer = state(user);
    let id = match writer.extra_users.pop() {
        Some(id) => {
            user.set_session_data(writer);
            id
        }
        None => post_user(ctx, user).await?,
    };
    delete(user, "users", id).await?;
    let path = format!("/users/{id}");
    call_json(
        user,
        GooseMethod::Get,
        &path,
        "GET /users/{id} (deleted)",
        None,
        404,
        common::error,
    )
    .await?;
    Ok(())
}

async fn delete(user: &mut GooseUser, collection: &str, id: i64) -> TransactionResult {
    let path = format!("/{collection}/{id}");
    let name = format!("DELETE /{collection}/{{id}}");
    call(user, GooseMethod::Delete, &path, &name, None, 204).await?;
    Ok(())
}

/// on_stop: delete the extra users and the own user (its URLs go with it).
async fn clean_up(_: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let writer = state(user);
    user.set_session_data(Writer::default());
    for id in writer.extra_users.iter().chain(writer.user_id.iter()) {
        delete(user, "users", *id).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_compares_only_the_fields_that_were_sent() {
        let got = json!({"title": "a", "original_url": "https://x", "is_active": true});
        assert!(same(
            &got,
            &json!({"title": "a"}),
            &["title", "original_url"]
        ));
        assert!(!same(&got, &json!({"title": "b"}), &["title"]));
        assert!(!same(&got, &json!({"is_active": false}), &["is_active"]));
    }
}
