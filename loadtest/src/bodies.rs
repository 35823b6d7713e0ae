//! Realistic request bodies, shaped like the old service's seed data
//! (`clearlagoon83`, `clearlagoon83@relay.cloud`,
//! `https://seeded.app/dawn/harvest/1`, "Ops review zenith").
//!
//! Every function takes the random source, so tests can pass a seeded one.
//! Uniqueness (emails are unique on the server) comes from a per-run tag and a
//! counter the caller supplies, never from chance.

use rand::seq::IndexedRandom;
use rand::Rng;
use serde_json::{json, Value};

const ADJECTIVES: &[&str] = &[
    "clear", "mellow", "bright", "quiet", "swift", "amber", "silver", "brisk", "gentle", "lucky",
    "rapid", "sunny", "misty", "golden", "hidden", "noble",
];
const NOUNS: &[&str] = &[
    "lagoon", "field", "harbor", "meadow", "canyon", "forest", "river", "summit", "valley",
    "comet", "garden", "island", "falcon", "maple", "otter", "prairie",
];
const DOMAINS: &[&str] = &[
    "relay.cloud",
    "seeded.app",
    "hackstack.io",
    "mailbox.dev",
    "northwind.org",
    "example.com",
];
const PATH_WORDS: &[&str] = &[
    "dawn", "harvest", "opal", "window", "report", "launch", "notes", "guide", "agenda", "budget",
    "roadmap", "invite", "slides", "release", "survey",
];
const TITLE_TOPICS: &[&str] = &[
    "Ops review",
    "Quarterly brief",
    "Team offsite",
    "Launch plan",
    "Customer survey",
    "Weekly digest",
    "Design notes",
    "Hiring update",
];
const TITLE_WORDS: &[&str] = &[
    "zenith", "aurora", "pulse", "horizon", "summit", "nova", "draft", "final", "v2",
];
/// Event types a client would post besides the ones the server writes itself.
const EVENT_TYPES: &[&str] = &["click", "share", "qr_scan", "preview"];

fn pick<'a, R: Rng + ?Sized>(rng: &mut R, words: &[&'a str]) -> &'a str {
    // The word lists are non-empty constants.
    words.choose(rng).copied().unwrap_or("x")
}

/// A username such as `clearlagoon83`.
pub fn username<R: Rng + ?Sized>(rng: &mut R) -> String {
    format!(
        "{}{}{}",
        pick(rng, ADJECTIVES),
        pick(rng, NOUNS),
        rng.random_range(10..100)
    )
}

/// A unique email for `username`: the run tag and `serial` make it unique
/// across goose users, load generators and repeated runs.
pub fn email<R: Rng + ?Sized>(rng: &mut R, username: &str, run_tag: &str, serial: u64) -> String {
    format!("{username}.{run_tag}{serial}@{}", pick(rng, DOMAINS))
}

/// A target URL such as `https://seeded.app/dawn/harvest/17`, sometimes with
/// campaign parameters, as real short links often carry.
pub fn original_url<R: Rng + ?Sized>(rng: &mut R) -> String {
    let base = format!(
        "https://{}/{}/{}/{}",
        pick(rng, DOMAINS),
        pick(rng, PATH_WORDS),
        pick(rng, PATH_WORDS),
        rng.random_range(1..100_000)
    );
    if rng.random_bool(0.3) {
        format!(
            "{base}?utm_source={}&utm_medium=link",
            pick(rng, &["newsletter", "twitter", "slack", "email"])
        )
    } else {
        base
    }
}

/// A title such as "Ops review zenith".
pub fn title<R: Rng + ?Sized>(rng: &mut R) -> String {
    format!("{} {}", pick(rng, TITLE_TOPICS), pick(rng, TITLE_WORDS))
}

/// `POST /users` body.
pub fn new_user<R: Rng + ?Sized>(rng: &mut R, run_tag: &str, serial: u64) -> Value {
    let name = username(rng);
    let mail = email(rng, &name, run_tag, serial);
    json!({ "username": name, "email": mail })
}

/// `POST /urls` body for `user_id`, with a title most of the time (it is optional).
pub fn new_url<R: Rng + ?Sized>(rng: &mut R, user_id: i64) -> Value {
    if rng.random_bool(0.8) {
        json!({ "user_id": user_id, "original_url": original_url(rng), "title": title(rng) })
    } else {
        json!({ "user_id": user_id, "original_url": original_url(rng) })
    }
}

/// `PUT /urls/{id}` body: one or two of the fields the API accepts.
pub fn url_update<R: Rng + ?Sized>(rng: &mut R) -> Value {
    match rng.random_range(0..4) {
        0 => json!({ "title": title(rng) }),
        1 => json!({ "original_url": original_url(rng) }),
        2 => json!({ "title": title(rng), "original_url": original_url(rng) }),
        // Re-activating keeps the link usable for this user's redirects.
        _ => json!({ "is_active": true, "title": title(rng) }),
    }
}

/// `POST /events` body.
pub fn new_event<R: Rng + ?Sized>(rng: &mut R, url_id: i64, user_id: i64) -> Value {
    json!({
        "url_id": url_id,
        "user_id": user_id,
        "event_type": pick(rng, EVENT_TYPES),
        "details": { "source": pick(rng, &["web", "ios", "android", "api"]), "campaign": pick(rng, TITLE_WORDS) },
    })
}

/// A run tag: short, lowercase, random, shared by everything one run creates.
pub fn run_tag<R: Rng + ?Sized>(rng: &mut R) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..6)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn usernames_look_like_the_seed_data() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..50 {
            let name = username(&mut rng);
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
            assert!(name.len() >= 6, "{name}");
        }
    }

    #[test]
    fn emails_are_unique_per_serial_and_valid() {
        let mut rng = StdRng::seed_from_u64(2);
        let a = email(&mut rng, "clearlagoon83", "ab12cd", 1);
        let b = email(&mut rng, "clearlagoon83", "ab12cd", 2);
        assert_ne!(a.split('@').next(), b.split('@').next());
        assert_eq!(a.matches('@').count(), 1);
        assert!(a.starts_with("clearlagoon83.ab12cd1@"));
    }

    #[test]
    fn original_urls_are_absolute_https_and_short() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            let url = original_url(&mut rng);
            assert!(url.starts_with("https://"), "{url}");
            assert!(!url.contains(' '));
            assert!(url.len() < 2048);
        }
    }

    #[test]
    fn url_bodies_carry_the_user_and_only_known_fields() {
        let mut rng = StdRng::seed_from_u64(4);
        for _ in 0..20 {
            let body = new_url(&mut rng, 7);
            assert_eq!(body["user_id"], 7);
            for key in body
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                assert!(
                    ["user_id", "original_url", "title"].contains(&key.as_str()),
                    "{key}"
                );
            }
            let update = url_update(&mut rng);
            let keys = update.as_object().map(|o| o.len()).unwrap_or(0);
            assert!((1..=2).contains(&keys));
        }
    }

    #[test]
    fn run_tags_are_six_lowercase_alphanumerics() {
        let mut rng = StdRng::seed_from_u64(5);
        let tag = run_tag(&mut rng);
        assert_eq!(tag.len(), 6);
        assert!(tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    }
}
