//! One module per kind of goose user; the checks they share are in [`common`].
//!
//! | scenario   | what it drives                                                        |
//! |------------|-----------------------------------------------------------------------|
//! | `mix`      | the old service's locustfile mix, same weights                        |
//! | `redirect` | redirects over discovered codes, Zipf-skewed, plus unknown codes (404) |
//! | `write`    | create / update / delete of URLs and users                            |
//! | `cold`     | reads spread uniformly over the whole key space, so caches miss       |
//!
//! Each module exposes `scenario(&Arc<Ctx>) -> Result<Scenario, GooseError>`;
//! `main.rs` registers them.

pub mod cold;
pub mod common;
pub mod mix;
pub mod redirect;
pub mod write;

use rand::Rng;

/// A uniformly drawn element of `items`, or `fallback` when there is none.
pub fn pick_or(items: &[i64], fallback: i64) -> i64 {
    if items.is_empty() {
        fallback
    } else {
        items[rand::rng().random_range(0..items.len())]
    }
}

/// A uniform number in `[0, 1)`.
pub fn unit() -> f64 {
    rand::rng().random::<f64>()
}

/// Whether an event with probability `p` happened.
pub fn chance(p: f64) -> bool {
    unit() < p
}
