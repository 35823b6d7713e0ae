//! `mix`: the old service's locustfile, same weights.
//!
//! health 1, list users 8, list urls 6, list events 5, get user 4, get url 4,
//! urls by user 3, create user 2, create url 2, update user 1, and its remaining
//! tasks: update url 1, redirect 2, create event 1. Each goose user creates its
//! own user and URL when it starts; reads of single items draw from the
//! discovered data when there is any, so they are not all cache hits on one key.

use std::sync::Arc;

use goose::prelude::*;
use rand::Rng;
use serde_json::json;

use super::common::{self, call, call_json, check_location, int, mismatch, text, Ctx};
use super::{pick_or, unit};
use crate::{bodies, tx};

/// What a goose user of this scenario created for itself.
#[derive(Clone, Debug)]
pub struct Own {
    pub user_id: i64,
    pub url_id: i64,
    pub code: String,
    pub target: String,
}

/// The `mix` scenario.
///
/// # Errors
/// Never in practice: goose refuses only a zero weight.
pub fn scenario(ctx: &Arc<Ctx>) -> Result<Scenario, GooseError> {
    Ok(scenario!("mix")
        .register_transaction(
            tx!(ctx, "client", common::use_run_client)
                .set_on_start()
                .set_sequence(1),
        )
        .register_transaction(
            tx!(ctx, "create own user and url", start)
                .set_on_start()
                .set_sequence(2),
        )
        .register_transaction(tx!(ctx, "health", health).set_weight(1)?)
        .register_transaction(tx!(ctx, "list users", list_users).set_weight(8)?)
        .register_transaction(tx!(ctx, "list urls", list_urls).set_weight(6)?)
        .register_transaction(tx!(ctx, "list events", list_events).set_weight(5)?)
        .register_transaction(tx!(ctx, "get user", get_user).set_weight(4)?)
        .register_transaction(tx!(ctx, "get url", get_url).set_weight(4)?)
        .register_transaction(tx!(ctx, "urls by user", urls_by_user).set_weight(3)?)
        .register_transaction(tx!(ctx, "create user", create_user).set_weight(2)?)
        .register_transaction(tx!(ctx, "create url", create_url).set_weight(2)?)
        .register_transaction(tx!(ctx, "update user", update_user).set_weight(1)?)
        .register_transaction(tx!(ctx, "update url", update_url).set_weight(1)?)
        .register_transaction(tx!(ctx, "redirect", redirect).set_weight(2)?)
        .register_transaction(tx!(ctx, "create event", create_event).set_weight(1)?))
}

/// on_start: the goose user's own user and URL.
async fn start(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    own(ctx, user).await.map(|_| ())
}

/// The user's own data, created now if `start` failed (a target that was down
/// when the user started must not leave it unable to write forever).
async fn own(ctx: &Arc<Ctx>, user: &mut GooseUser) -> Result<Own, Box<TransactionError>> {
    if let Some(own) = user.get_session_data::<Own>() {
        return Ok(own.clone());
    }
    let user_id = post_user(ctx, user).await?;
    let body = bodies::new_url(&mut rand::rng(), user_id);
    let url = post_url(user, &body).await?;
    let own = Own {
        user_id,
        url_id: int(&url, "id"),
        code: text(&url, "short_code"),
        target: text(&url, "original_url"),
    };
    user.set_session_data(own.clone());
    Ok(own)
}

async fn post_user(ctx: &Arc<Ctx>, user: &mut GooseUser) -> Result<i64, Box<TransactionError>> {
    let body = bodies::new_user(&mut rand::rng(), &ctx.run_tag, ctx.next_serial());
    let name = "POST /users";
    let mut reply = call(user, GooseMethod::Post, "/users", name, Some(&body), 201).await?;
    let created = common::check_json(user, name, &mut reply, common::user)?;
    if created["email"] != body["email"] || created["username"] != body["username"] {
        return Err(mismatch(
            user,
            name,
            &mut reply,
            "created user differs from the request",
        ));
    }
    Ok(int(&created, "id"))
}

async fn post_url(
    user: &mut GooseUser,
    body: &serde_json::Value,
) -> Result<serde_json::Value, Box<TransactionError>> {
    let name = "POST /urls";
    let mut reply = call(user, GooseMethod::Post, "/urls", name, Some(body), 201).await?;
    let created = common::check_json(user, name, &mut reply, common::url)?;
    if created["original_url"] != body["original_url"] || created["user_id"] != body["user_id"] {
        return Err(mismatch(
            user,
            name,
            &mut reply,
            "created url differs from the request",
        ));
    }
    Ok(created)
}

async fn health(_: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    call_json(
        user,
        GooseMethod::Get,
        "/health",
        "GET /health",
        None,
        200,
        common::health,
    )
    .await?;
    Ok(())
}

/// A list page; the first few pages, as a person paging a list would.
async fn list(
    user: &mut GooseUser,
    collection: &str,
    shape: fn(&serde_json::Value) -> Result<(), String>,
) -> TransactionResult {
    let page = rand::rng().random_range(1..=3);
    let path = format!("/{collection}?page={page}&per_page=20");
    let name = format!("GET /{collection}?page={{n}}&per_page=20");
    call_json(user, GooseMethod::Get, &path, &name, None, 200, shape).await?;
    Ok(())
}

async fn list_users(_: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    list(user, "users", common::users).await
}

async fn list_urls(_: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    list(user, "urls", common::urls).await
}

async fn list_events(_: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    list(user, "events", common::events).await
}

async fn get_user(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let own = own(ctx, user).await?;
    let id = pick_or(&ctx.data.user_ids, own.user_id);
    let path = format!("/users/{id}");
    call_json(
        user,
        GooseMethod::Get,
        &path,
        "GET /users/{id}",
        None,
        200,
        common::user,
    )
    .await?;
    Ok(())
}

async fn get_url(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let own = own(ctx, user).await?;
    let id = pick_or(&ctx.data.url_ids, own.url_id);
    let path = format!("/urls/{id}");
    call_json(
        user,
        GooseMethod::Get,
        &path,
        "GET /urls/{id}",
        None,
        200,
        common::url,
    )
    .await?;
    Ok(())
}

async fn urls_by_user(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let own = own(ctx, user).await?;
    let id = pick_or(&ctx.data.user_ids, own.user_id);
    let path = format!("/urls?user_id={id}");
    let name = "GET /urls?user_id={id}";
    let mut reply = call(user, GooseMethod::Get, &path, name, None, 200).await?;
    let list = common::check_json(user, name, &mut reply, common::urls)?;
    let foreign = list
        .as_array()
        .is_some_and(|items| items.iter().any(|u| u["user_id"] != json!(id)));
    if foreign {
        return Err(mismatch(
            user,
            name,
            &mut reply,
            "a URL of another user in the filtered list",
        ));
    }
    Ok(())
}

async fn create_user(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    post_user(ctx, user).await.map(|_| ())
}

async fn create_url(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let own = own(ctx, user).await?;
    let body = bodies::new_url(&mut rand::rng(), own.user_id);
    post_url(user, &body).await.map(|_| ())
}

async fn update_user(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let own = own(ctx, user).await?;
    let username = bodies::username(&mut rand::rng());
    let body = json!({ "username": username });
    let path = format!("/users/{}", own.user_id);
    let name = "PUT /users/{id}";
    let mut reply = call(user, GooseMethod::Put, &path, name, Some(&body), 200).await?;
    let updated = common::check_json(user, name, &mut reply, common::user)?;
    if updated["username"] != body["username"] {
        return Err(mismatch(user, name, &mut reply, "username not updated"));
    }
    Ok(())
}

async fn update_url(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let own = own(ctx, user).await?;
    // Only the title: the user's own link keeps its target, so `redirect` can
    // still check the Location against it.
    let body = json!({ "title": bodies::title(&mut rand::rng()) });
    let path = format!("/urls/{}", own.url_id);
    let name = "PUT /urls/{id}";
    let mut reply = call(user, GooseMethod::Put, &path, name, Some(&body), 200).await?;
    let updated = common::check_json(user, name, &mut reply, common::url)?;
    if updated["title"] != body["title"] {
        return Err(mismatch(user, name, &mut reply, "title not updated"));
    }
    Ok(())
}

async fn redirect(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let own = own(ctx, user).await?;
    let (id, code, target) = match ctx.data.popular_link(unit()) {
        Some(link) => (link.id, link.code.clone(), link.target.clone()),
        None => (own.url_id, own.code, own.target),
    };
    let name = "GET /{code}";
    // Noted like the redirect scenario's clicks, so running both together
    // keeps the click check right (the user's own link is not tracked).
    ctx.clicks.sent(id);
    let mut reply = call(user, GooseMethod::Get, &format!("/{code}"), name, None, 302).await?;
    ctx.clicks.redirected(id);
    check_location(user, name, &mut reply, &target)
}

async fn create_event(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let own = own(ctx, user).await?;
    let body = bodies::new_event(&mut rand::rng(), own.url_id, own.user_id);
    let name = "POST /events";
    let mut reply = call(user, GooseMethod::Post, "/events", name, Some(&body), 201).await?;
    let created = common::check_json(user, name, &mut reply, common::event)?;
    if created["event_type"] != body["event_type"] || created["url_id"] != body["url_id"] {
        return Err(mismatch(
            user,
            name,
            &mut reply,
            "created event differs from the request",
        ));
    }
    Ok(())
}
