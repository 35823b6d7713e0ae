//! `cold`: reads spread uniformly over the whole key space, so the 30 s
//! read-through cache mostly misses and PostgreSQL answers: the latency fault
//! of the alert check shows here first.
//!
//! Ids are drawn uniformly between the smallest and largest discovered id. An
//! id that was discovered must answer 200; one in a gap (deleted before the
//! run) must answer 404 with a JSON error. Filtered lists use discovered ids.

use std::sync::Arc;

use goose::prelude::*;
use rand::Rng;

use super::common::{self, call_json, Ctx};
use super::pick_or;
use crate::data::{contains, id_range};
use crate::tx;

/// The `cold` scenario.
///
/// # Errors
/// Never in practice: goose refuses only a zero weight.
pub fn scenario(ctx: &Arc<Ctx>) -> Result<Scenario, GooseError> {
    Ok(scenario!("cold")
        .register_transaction(tx!(ctx, "client", common::use_run_client).set_on_start())
        .register_transaction(tx!(ctx, "get url", get_url).set_weight(4)?)
        .register_transaction(tx!(ctx, "get user", get_user).set_weight(3)?)
        .register_transaction(tx!(ctx, "urls by user", urls_by_user).set_weight(2)?)
        .register_transaction(tx!(ctx, "events by url", events_by_url).set_weight(1)?)
        .register_transaction(tx!(ctx, "deep url page", deep_page).set_weight(1)?))
}

/// A uniform id over the range of sorted `ids`, and the status it must get.
pub fn draw(ids: &[i64]) -> Option<(i64, u16)> {
    let (lo, hi) = id_range(ids)?;
    let id = rand::rng().random_range(lo..=hi);
    Some((id, if contains(ids, id) { 200 } else { 404 }))
}

async fn get_one(
    user: &mut GooseUser,
    ids: &[i64],
    collection: &str,
    shape: fn(&serde_json::Value) -> Result<(), String>,
) -> TransactionResult {
    // main refuses to start this scenario without data; id 1 keeps the
    // request meaningful if that ever changes.
    let (id, expect) = draw(ids).unwrap_or((1, 200));
    let path = format!("/{collection}/{id}");
    let (name, shape) = if expect == 200 {
        (format!("GET /{collection}/{{id}}"), shape)
    } else {
        (
            format!("GET /{collection}/{{id}} (gap)"),
            common::error as fn(&_) -> _,
        )
    };
    call_json(user, GooseMethod::Get, &path, &name, None, expect, shape).await?;
    Ok(())
}

async fn get_url(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    get_one(user, &ctx.data.url_ids, "urls", common::url).await
}

async fn get_user(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    get_one(user, &ctx.data.user_ids, "users", common::user).await
}

async fn urls_by_user(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let id = pick_or(&ctx.data.user_ids, 1);
    let path = format!("/urls?user_id={id}&per_page=50");
    call_json(
        user,
        GooseMethod::Get,
        &path,
        "GET /urls?user_id={id}",
        None,
        200,
        common::urls,
    )
    .await?;
    Ok(())
}

async fn events_by_url(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let id = pick_or(&ctx.data.url_ids, 1);
    let path = format!("/events?url_id={id}&per_page=20");
    call_json(
        user,
        GooseMethod::Get,
        &path,
        "GET /events?url_id={id}",
        None,
        200,
        common::events,
    )
    .await?;
    Ok(())
}

/// Any page of the URL list, not just the first ones everybody reads.
async fn deep_page(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let pages = ctx.data.url_ids.len().div_ceil(20).max(1);
    let page = rand::rng().random_range(1..=pages);
    let path = format!("/urls?page={page}&per_page=20");
    call_json(
        user,
        GooseMethod::Get,
        &path,
        "GET /urls?page={n}&per_page=20 (deep)",
        None,
        200,
        common::urls,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_range_and_know_gaps() {
        let ids = [3, 4, 6];
        for _ in 0..200 {
            let (id, expect) = draw(&ids).unwrap_or((0, 0));
            assert!((3..=6).contains(&id));
            assert_eq!(expect, if id == 5 { 404 } else { 200 });
        }
        assert_eq!(draw(&[]), None);
    }
}
