//! `redirect`: short-link traffic. Codes come from the data discovered (or
//! seeded) before the run, clicked with a Zipf-like popularity (a few links
//! take most clicks, as real short links do). A share of clicks
//! (`--unknown-percent`) asks for codes that do not exist or are inactive and
//! must get a 404 with a JSON error. One click in ten uses the old API's path,
//! `/urls/{code}/redirect`.
//!
//! The client does not follow redirects: the 302 itself is what is measured,
//! and its `Location` must be the link's `original_url`, byte for byte. Each
//! GET to a link and each 302 it gets are noted in `Ctx::clicks`, for the
//! click check after the run (`crate::clicks`).

use std::sync::Arc;

use goose::prelude::*;
use rand::distr::{Alphanumeric, SampleString};
use rand::seq::IndexedRandom;

use super::common::{self, call, call_json, check_location, Ctx};
use super::{chance, unit};
use crate::tx;

/// The `redirect` scenario.
///
/// # Errors
/// Never in practice: goose refuses only a zero weight.
pub fn scenario(ctx: &Arc<Ctx>) -> Result<Scenario, GooseError> {
    Ok(scenario!("redirect")
        .register_transaction(tx!(ctx, "client", common::use_run_client).set_on_start())
        .register_transaction(tx!(ctx, "click", click)))
}

/// A code that no link has: generated codes are 6 characters, custom codes
/// are chosen by people; 14 random characters after `zz` collide with neither.
pub fn unknown_code() -> String {
    format!("zz{}", Alphanumeric.sample_string(&mut rand::rng(), 12))
}

async fn click(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    if chance(ctx.unknown_share) {
        return miss(ctx, user).await;
    }
    let Some(link) = ctx.data.popular_link(unit()) else {
        // main refuses to start this scenario without links; a 404 is still a
        // useful request if that ever changes.
        return miss(ctx, user).await;
    };
    let (path, name) = if chance(0.1) {
        (
            format!("/urls/{}/redirect", link.code),
            "GET /urls/{code}/redirect",
        )
    } else {
        (format!("/{}", link.code), "GET /{code}")
    };
    ctx.clicks.sent(link.id);
    let mut reply = call(user, GooseMethod::Get, &path, name, None, 302).await?;
    // Counted before the Location check: a 302 is a click whatever it points at.
    ctx.clicks.redirected(link.id);
    check_location(user, name, &mut reply, &link.target)
}

/// A click that must miss: an inactive code when there are some (half the
/// time), else a code that never existed.
async fn miss(ctx: &Arc<Ctx>, user: &mut GooseUser) -> TransactionResult {
    let inactive = if chance(0.5) {
        ctx.data.inactive_codes.choose(&mut rand::rng()).cloned()
    } else {
        None
    };
    let (code, name) = match inactive {
        Some(code) => (code, "GET /{code} (inactive)"),
        None => (unknown_code(), "GET /{code} (unknown)"),
    };
    call_json(
        user,
        GooseMethod::Get,
        &format!("/{code}"),
        name,
        None,
        404,
        common::error,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_are_long_and_url_safe() {
        let code = unknown_code();
        assert_eq!(code.len(), 14);
        assert!(code.starts_with("zz"));
        assert!(code.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(unknown_code(), unknown_code());
    }
}
