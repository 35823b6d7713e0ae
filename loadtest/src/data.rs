//! The data a run works on: seeded through the API, or discovered from what the
//! target already holds (`server seed`, an earlier run), so it works against a
//! cluster whose database it cannot reach.
//!
//! Seeding and discovery happen before goose starts, with a plain reqwest
//! client, so they are not counted in the run's metrics. The result is a
//! read-only [`Dataset`] that every goose user shares.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::bodies;

/// The most the API gives per page.
pub const PAGE_SIZE: usize = 1000;

// === Zipf ===

/// A Zipf-like popularity over `n` ranks: rank `k` (from 0) is drawn with weight
/// `1 / (k + 1)^s`. With `s = 1` and a few thousand links, the top 1% of links
/// take roughly half of the traffic, which is how short links are clicked.
#[derive(Clone, Debug)]
pub struct Zipf {
    /// Cumulative probabilities, increasing, the last one 1.0.
    cdf: Vec<f64>,
}

impl Zipf {
    /// A distribution over `n` ranks with exponent `s` (0 is uniform).
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 0..n {
            total += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(total);
        }
        for p in &mut cdf {
            *p /= total;
        }
        Zipf { cdf }
    }

    /// How many ranks there are.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// Whether there is no rank to draw.
    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// The rank drawn by `u`, a uniform number in `[0, 1)`; 0 when empty.
    pub fn rank(&self, u: f64) -> usize {
        self.cdf
            .partition_point(|&p| p <= u)
            .min(self.cdf.len().saturating_sub(1))
    }
}

// === Dataset ===

/// A URL as the list endpoint returns it (the fields a run needs).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct UrlRow {
    pub id: i64,
    pub user_id: i64,
    pub short_code: String,
    pub original_url: String,
    pub is_active: bool,
}

/// A user as the list endpoint returns it (the field a run needs).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct UserRow {
    pub id: i64,
}

/// An active short link and where it must redirect to.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// The URL's id: its stats are `GET /urls/{id}/stats` (the click check).
    pub id: i64,
    pub code: String,
    pub target: String,
}

/// What a run knows about the target's data. Read-only once built.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Every discovered user id, sorted.
    pub user_ids: Vec<i64>,
    /// Every discovered URL id, sorted.
    pub url_ids: Vec<i64>,
    /// Active links in popularity order: `links[0]` is the most clicked.
    pub links: Vec<Link>,
    /// Codes that exist but are inactive: a redirect must answer 404.
    pub inactive_codes: Vec<String>,
    /// Popularity over `links`.
    pub zipf: Zipf,
}

impl Dataset {
    /// Builds a dataset. Links are shuffled with `seed` before ranking, so
    /// popularity does not follow id order, and the same data with the same
    /// seed ranks the same on every load generator.
    pub fn new(users: Vec<UserRow>, urls: Vec<UrlRow>, zipf_exponent: f64, seed: u64) -> Self {
        let mut user_ids: Vec<i64> = users.into_iter().map(|u| u.id).collect();
        user_ids.sort_unstable();
        user_ids.dedup();
        let mut url_ids: Vec<i64> = urls.iter().map(|u| u.id).collect();
        url_ids.sort_unstable();
        url_ids.dedup();
        let mut links = Vec::new();
        let mut inactive_codes = Vec::new();
        for url in urls {
            if url.is_active {
                links.push(Link {
                    id: url.id,
                    code: url.short_code,
                    target: url.original_url,
                });
            } else {
                inactive_codes.push(url.short_code);
            }
        }
        // Sorted first so the shuffle does not depend on the order pages came in.
        links.sort_by(|a, b| a.code.cmp(&b.code));
        links.shuffle(&mut StdRng::seed_from_u64(seed));
        let zipf = Zipf::new(links.len(), zipf_exponent);
        Dataset {
            user_ids,
            url_ids,
            links,
            inactive_codes,
            zipf,
        }
    }

    /// The link drawn by `u` (uniform in `[0, 1)`) under the Zipf popularity.
    pub fn popular_link(&self, u: f64) -> Option<&Link> {
        self.links.get(self.zipf.rank(u))
    }

    /// One line for the console.
    pub fn summary(&self) -> String {
        format!(
            "{} users (ids {}), {} urls (ids {}), {} active links, {} inactive",
            self.user_ids.len(),
            range_text(&self.user_ids),
            self.url_ids.len(),
            range_text(&self.url_ids),
            self.links.len(),
            self.inactive_codes.len()
        )
    }
}

/// The smallest and largest of sorted `ids`.
pub fn id_range(ids: &[i64]) -> Option<(i64, i64)> {
    Some((*ids.first()?, *ids.last()?))
}

/// Whether sorted `ids` holds `id`.
pub fn contains(ids: &[i64], id: i64) -> bool {
    ids.binary_search(&id).is_ok()
}

fn range_text(ids: &[i64]) -> String {
    match id_range(ids) {
        Some((lo, hi)) => format!("{lo}..={hi}"),
        None => "none".to_string(),
    }
}

// === Talking to the target ===

/// `host` (as given to `--host`) joined with `path` (which starts with `/`).
pub fn url(host: &str, path: &str) -> String {
    format!("{}{}", host.trim_end_matches('/'), path)
}

/// `GET path` on `host`, which must answer 200 with JSON of type `T`.
///
/// # Errors
/// When the target cannot be reached, answers another status, or the body
/// does not parse as `T`; each names the request.
pub async fn get_json<T: DeserializeOwned>(
    client: &reqwest::Client,
    host: &str,
    path: &str,
) -> anyhow::Result<T> {
    let target = url(host, path);
    let response = client
        .get(&target)
        .send()
        .await
        .with_context(|| format!("GET {target}: is the target up and --host right?"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("GET {target}: reading the body"))?;
    if status.as_u16() != 200 {
        bail!(
            "GET {target}: expected 200, got {status}: {}",
            excerpt(&body)
        );
    }
    serde_json::from_str(&body)
        .with_context(|| format!("GET {target}: not the expected JSON: {}", excerpt(&body)))
}

/// Reads `collection` (`users` or `urls`) page by page, up to `limit` items.
async fn read_all<T: DeserializeOwned>(
    client: &reqwest::Client,
    host: &str,
    collection: &str,
    limit: usize,
) -> anyhow::Result<Vec<T>> {
    let mut items = Vec::new();
    let mut page = 1;
    while items.len() < limit {
        let batch: Vec<T> = get_json(
            client,
            host,
            &format!("/{collection}?page={page}&per_page={PAGE_SIZE}"),
        )
        .await?;
        let full = batch.len() == PAGE_SIZE;
        items.extend(batch);
        if !full {
            break;
        }
        page += 1;
    }
    items.truncate(limit);
    Ok(items)
}

/// Reads up to `limit` users and `limit` URLs through the list endpoints.
///
/// # Errors
/// When the target cannot be reached or answers something other than a JSON array.
pub async fn discover(
    client: &reqwest::Client,
    host: &str,
    limit: usize,
) -> anyhow::Result<(Vec<UserRow>, Vec<UrlRow>)> {
    let users = read_all(client, host, "users", limit).await?;
    let urls = read_all(client, host, "urls", limit).await?;
    Ok((users, urls))
}

/// How many of each kind of item seeding created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    pub users: usize,
    pub urls: usize,
}

/// Creates `users` users and `urls` URLs through the API, `concurrency`
/// requests at a time. URLs go round-robin to the new users, or to `existing`
/// users when no user is created. Emails carry `run_tag`, so re-seeding never
/// collides with an earlier run.
///
/// # Errors
/// On the first request that fails or answers other than 201, naming it.
pub async fn seed(
    client: &reqwest::Client,
    host: &str,
    users: usize,
    urls: usize,
    existing: &[i64],
    run_tag: &str,
    concurrency: usize,
) -> anyhow::Result<Seeded> {
    let host: Arc<str> = Arc::from(host);
    let tag: Arc<str> = Arc::from(run_tag);
    let new_users = run_parallel(users, concurrency, {
        let (client, host, tag) = (client.clone(), host.clone(), tag.clone());
        move |i| {
            let (client, host, tag) = (client.clone(), host.clone(), tag.clone());
            async move {
                let body = bodies::new_user(&mut rand::rng(), &tag, i as u64);
                post_created(&client, &host, "/users", &body).await
            }
        }
    })
    .await?;
    let owners: Arc<Vec<i64>> = Arc::new(if new_users.is_empty() {
        existing.to_vec()
    } else {
        new_users.clone()
    });
    if urls > 0 && owners.is_empty() {
        bail!("--seed-urls needs users to own them: the target has none, so add --seed-users");
    }
    let new_urls = run_parallel(urls, concurrency, {
        let (client, host) = (client.clone(), host.clone());
        move |i| {
            let (client, host, owners) = (client.clone(), host.clone(), owners.clone());
            async move {
                let owner = owners[i % owners.len()];
                let body = bodies::new_url(&mut rand::rng(), owner);
                post_created(&client, &host, "/urls", &body).await
            }
        }
    })
    .await?;
    Ok(Seeded {
        users: new_users.len(),
        urls: new_urls.len(),
    })
}

/// POSTs `body` and returns the created item's id.
async fn post_created(
    client: &reqwest::Client,
    host: &str,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<i64> {
    let target = url(host, path);
    let response = client
        .post(&target)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {target}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("POST {target}: reading the body"))?;
    if status.as_u16() != 201 {
        bail!(
            "POST {target} {body}: expected 201, got {status}: {}",
            excerpt(&text)
        );
    }
    let created: UserRow = serde_json::from_str(&text)
        .with_context(|| format!("POST {target}: no id in {}", excerpt(&text)))?;
    Ok(created.id)
}

/// Runs `task(0..n)` with at most `concurrency` at a time; results in index
/// order. Stops at the first error.
pub(crate) async fn run_parallel<T, F, Fut>(
    n: usize,
    concurrency: usize,
    task: F,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let task = Arc::new(task);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (next, task) = (next.clone(), task.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(done);
                }
                done.push((i, task(i).await?));
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(joined) = workers.join_next().await {
        all.extend(joined.context("a seeding task panicked")??);
    }
    all.sort_unstable_by_key(|&(i, _)| i);
    Ok(all.into_iter().map(|(_, item)| item).collect())
}

/// The start of a response body, for error messages.
pub fn excerpt(body: &str) -> &str {
    let end = body
        .char_indices()
        .nth(300)
        .map_or(body.len(), |(at, _)| at);
    &body[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, code: &str, active: bool) -> UrlRow {
        UrlRow {
            id,
            user_id: 1,
            short_code: code.to_string(),
            original_url: format!("https://example.com/{code}"),
            is_active: active,
        }
    }

    #[test]
    fn zipf_ranks_cover_the_range_and_favour_the_top() {
        let zipf = Zipf::new(1000, 1.0);
        assert_eq!(zipf.rank(0.0), 0);
        assert_eq!(zipf.rank(0.999_999_999), 999);
        let mut counts = vec![0usize; 1000];
        for i in 0..100_000 {
            counts[zipf.rank(i as f64 / 100_000.0)] += 1;
        }
        // Rank 0 is drawn about twice as often as rank 1, and far more than the tail.
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((1.8..2.2).contains(&ratio), "{ratio}");
        let top_ten: usize = counts[..10].iter().sum();
        let bottom_half: usize = counts[500..].iter().sum();
        assert!(top_ten > bottom_half, "{top_ten} vs {bottom_half}");
        assert_eq!(counts.iter().sum::<usize>(), 100_000);
    }

    #[test]
    fn zipf_with_exponent_zero_is_uniform() {
        let zipf = Zipf::new(4, 0.0);
        assert_eq!(zipf.rank(0.1), 0);
        assert_eq!(zipf.rank(0.3), 1);
        assert_eq!(zipf.rank(0.6), 2);
        assert_eq!(zipf.rank(0.9), 3);
    }

    #[test]
    fn empty_zipf_draws_rank_zero() {
        let zipf = Zipf::new(0, 1.0);
        assert!(zipf.is_empty());
        assert_eq!(zipf.rank(0.5), 0);
    }

    #[test]
    fn dataset_splits_active_and_inactive_and_sorts_ids() {
        let urls = vec![
            row(5, "bbb", true),
            row(2, "aaa", false),
            row(9, "ccc", true),
        ];
        let users = vec![UserRow { id: 3 }, UserRow { id: 1 }, UserRow { id: 3 }];
        let data = Dataset::new(users, urls, 1.0, 7);
        assert_eq!(data.user_ids, [1, 3]);
        assert_eq!(data.url_ids, [2, 5, 9]);
        assert_eq!(data.inactive_codes, ["aaa"]);
        assert_eq!(data.links.len(), 2);
        assert_eq!(data.zipf.len(), 2);
        let link = data.popular_link(0.0).map(|l| l.code.clone());
        assert!(matches!(link.as_deref(), Some("bbb" | "ccc")));
        // Each code keeps its URL's id: the click check reads stats by id.
        let mut ids: Vec<(i64, &str)> = data.links.iter().map(|l| (l.id, &*l.code)).collect();
        ids.sort_unstable();
        assert_eq!(ids, [(5, "bbb"), (9, "ccc")]);
        assert_eq!(id_range(&data.url_ids), Some((2, 9)));
        assert!(contains(&data.url_ids, 5));
        assert!(!contains(&data.url_ids, 6));
    }

    #[test]
    fn ranking_depends_on_the_seed_not_on_page_order() {
        let urls: Vec<UrlRow> = (0..50).map(|i| row(i, &format!("c{i:02}"), true)).collect();
        let mut reversed = urls.clone();
        reversed.reverse();
        let a = Dataset::new(vec![], urls.clone(), 1.0, 42);
        let b = Dataset::new(vec![], reversed, 1.0, 42);
        let c = Dataset::new(vec![], urls, 1.0, 43);
        assert_eq!(a.links, b.links);
        assert_ne!(a.links, c.links);
    }

    #[test]
    fn url_joins_host_and_path_once() {
        assert_eq!(
            url("http://127.0.0.1:5000/", "/users"),
            "http://127.0.0.1:5000/users"
        );
        assert_eq!(
            url("http://node:30080", "/urls?page=1"),
            "http://node:30080/urls?page=1"
        );
    }

    #[test]
    fn excerpt_cuts_long_bodies_on_a_char_boundary() {
        let long = "é".repeat(400);
        assert_eq!(excerpt(&long).chars().count(), 300);
        assert_eq!(excerpt("short"), "short");
    }
}
