//! The near cache: short code → redirect answer, inside the process, in front of
//! Valkey. Bounded (S3-FIFO eviction, quick_cache) and short-lived, and correct across
//! replicas: every write publishes the codes it touched on a Valkey channel, each
//! replica drops them on receipt, and a replica that loses that link drops its whole
//! near cache and stops using it until the link is back (see `cache::Cache`).
//!
//! Also here: single-flight, so concurrent misses for one code make one lookup. The
//! rule that ties them together (a lookup's answer is stored only under the epoch
//! at which the lookup began) lives in `links`, their one user.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderValue;
use tokio::sync::OnceCell;

use crate::domain::Link;

/// A redirect answer ready to send: the `Location` value is built once, at fill time.
#[derive(Debug, Clone)]
pub struct Target {
    /// The short code (shared, for the click record).
    pub code: std::sync::Arc<str>,
    pub url_id: i64,
    pub user_id: i64,
    pub is_active: bool,
    pub location: HeaderValue,
}

impl Target {
    /// The `Location` is the target's URI form (`domain::values::uri_form`): the
    /// stored text byte for byte when it is ASCII, else with its host in IDNA form and
    /// other non-ASCII percent-encoded. `None` only if that is still not a valid
    /// header value, which `uri_form` rules out.
    pub fn from_link(code: &str, link: &Link) -> Option<Target> {
        let location = match crate::domain::values::uri_form(&link.target) {
            std::borrow::Cow::Borrowed(s) => HeaderValue::from_str(s).ok()?,
            std::borrow::Cow::Owned(s) => HeaderValue::try_from(s).ok()?,
        };
        Some(Target {
            code: std::sync::Arc::from(code),
            url_id: link.url_id,
            user_id: link.user_id,
            is_active: link.is_active,
            location,
        })
    }
}

#[derive(Clone)]
struct Entry {
    /// `None`: the code is known not to exist.
    target: Option<Target>,
    filled: Instant,
}

pub struct NearCache {
    map: quick_cache::sync::Cache<String, Entry>,
    ttl: Duration,
    /// False while the invalidation link is down: nothing is served or stored then.
    live: AtomicBool,
    /// Bumped by every invalidation; a fill that began before a bump is discarded, so a
    /// lookup racing a write cannot store the old answer after its invalidation.
    epoch: AtomicU64,
}

impl NearCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        NearCache {
            map: quick_cache::sync::Cache::new(capacity.max(1)),
            ttl,
            live: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
        }
    }

    /// `Some(answer)` on a fresh hit; `None` when absent, expired or not live.
    pub fn get(&self, code: &str) -> Option<Option<Target>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let entry = self.map.get(code)?;
        if entry.filled.elapsed() > self.ttl {
            return None;
        }
        Some(entry.target)
    }

    /// The last answer known for a code, however old, up to `max_age`: served only
    /// when PostgreSQL cannot be asked (stale-if-error). Nothing while the link is
    /// down (then the map was dropped).
    pub fn get_stale(&self, code: &str, max_age: Duration) -> Option<Option<Target>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let entry = self.map.get(code)?;
        (entry.filled.elapsed() <= max_age).then_some(entry.target)
    }

    /// The epoch to pass to `insert` for a lookup starting now.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stores an answer found by a lookup that began at `epoch`, unless an
    /// invalidation happened since or the link is down.
    pub fn insert(&self, code: &str, target: Option<Target>, epoch: u64) {
        if !self.live.load(Ordering::Acquire) || self.epoch() != epoch {
            return;
        }
        self.map.insert(
            code.to_owned(),
            Entry {
                target,
                filled: Instant::now(),
            },
        );
        // An invalidation may have landed between the check and the insert: undo.
        if self.epoch() != epoch {
            self.map.remove(code);
        }
    }

    pub fn invalidate(&self, code: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.map.remove(code);
    }

    /// The invalidation link is up (true) or lost (false: everything is dropped).
    pub fn set_live(&self, live: bool) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.live.store(live, Ordering::Release);
        if !live {
            self.map.clear();
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

// === Single-flight ===

/// Coalesces concurrent lookups of one key into one, per epoch: a caller joins a
/// lookup under way only if it began at the caller's own epoch. One that began
/// before an invalidation may return the old answer, so a caller that arrives after
/// the invalidation starts a lookup of its own instead of waiting for it.
///
/// The answer, success or failure, is shared with every caller of the flight: when
/// the lookup fails, the waiters get that failure at once instead of retrying one
/// after another (the k-th waiting k lookup timeouts). If the leader is cancelled
/// (its client went away), the next waiter runs its own lookup.
pub struct SingleFlight<V> {
    inflight: Mutex<HashMap<String, Flight<V>>>,
}

struct Flight<V> {
    epoch: u64,
    cell: Arc<OnceCell<V>>,
}

impl<V> Default for SingleFlight<V> {
    fn default() -> Self {
        SingleFlight {
            inflight: Mutex::new(HashMap::new()),
        }
    }
}

/// Removes the leader's entry however its future ends (done, failed or cancelled),
/// unless a newer flight has replaced it.
struct LeaderGuard<'a, V> {
    flights: &'a SingleFlight<V>,
    key: &'a str,
    cell: Arc<OnceCell<V>>,
}

impl<V> Drop for LeaderGuard<'_, V> {
    fn drop(&mut self) {
        let mut map = self
            .flights
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map
            .get(self.key)
            .is_some_and(|f| Arc::ptr_eq(&f.cell, &self.cell))
        {
            map.remove(self.key);
        }
    }
}

impl<V: Clone> SingleFlight<V> {
    /// Runs `lookup` unless a lookup of the same key that began at the same `epoch`
    /// is under way, in which case it waits for that one's answer.
    pub async fn run<F, Fut>(&self, key: &str, epoch: u64, lookup: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let (cell, leader) = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(key) {
                Some(f) if f.epoch == epoch => (Arc::clone(&f.cell), false),
                _ => {
                    let cell = Arc::new(OnceCell::new());
                    map.insert(
                        key.to_owned(),
                        Flight {
                            epoch,
                            cell: Arc::clone(&cell),
                        },
                    );
                    (cell, true)
                }
            }
        };
        // `then`, not `then_some`: an eagerly built guard would be dropped at once and
        // remove the leader's entry.
        let _guard = leader.then(|| LeaderGuard {
            flights: self,
            key,
            cell: Arc::clone(&cell),
        });
        cell.get_or_init(lookup).await.clone()
    }

    /// Lookups under way (for tests).
    pub fn in_flight(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn target(id: i64) -> Option<Target> {
        Target::from_link(
            "code",
            &Link {
                url_id: id,
                user_id: 1,
                is_active: true,
                target: format!("https://x.io/{id}"),
            },
        )
    }

    #[test]
    fn nothing_is_served_or_stored_until_the_link_is_live() {
        let near = NearCache::new(100, Duration::from_secs(10));
        near.insert("abc", target(1), near.epoch());
        assert!(near.get("abc").is_none());
        near.set_live(true);
        near.insert("abc", target(1), near.epoch());
        assert_eq!(near.get("abc").flatten().map(|t| t.url_id), Some(1));
    }

    #[test]
    fn losing_the_link_drops_everything() {
        let near = NearCache::new(100, Duration::from_secs(10));
        near.set_live(true);
        near.insert("abc", target(1), near.epoch());
        near.set_live(false);
        near.set_live(true);
        assert!(near.get("abc").is_none());
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_discarded() {
        let near = NearCache::new(100, Duration::from_secs(10));
        near.set_live(true);
        let epoch = near.epoch();
        near.invalidate("abc"); // a write lands while the lookup is out
        near.insert("abc", target(1), epoch);
        assert!(near.get("abc").is_none());
    }

    #[test]
    fn unknown_codes_are_remembered_as_unknown() {
        let near = NearCache::new(100, Duration::from_secs(10));
        near.set_live(true);
        near.insert("nope", None, near.epoch());
        assert!(matches!(near.get("nope"), Some(None)));
    }

    #[test]
    fn an_expired_entry_is_still_there_for_stale_if_error_within_its_bound() {
        let near = NearCache::new(100, Duration::ZERO);
        near.set_live(true);
        near.insert("abc", target(1), near.epoch());
        std::thread::sleep(Duration::from_millis(2));
        assert!(near.get("abc").is_none(), "expired for normal reads");
        assert_eq!(
            near.get_stale("abc", Duration::from_secs(60))
                .flatten()
                .map(|t| t.url_id),
            Some(1)
        );
        assert!(near.get_stale("abc", Duration::ZERO).is_none());
        near.invalidate("abc");
        assert!(
            near.get_stale("abc", Duration::from_secs(60)).is_none(),
            "a write drops it"
        );
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let near = NearCache::new(100, Duration::ZERO);
        near.set_live(true);
        near.insert("abc", target(1), near.epoch());
        std::thread::sleep(Duration::from_millis(2)); // the TTL is zero: any elapsed time expires it
        assert!(near.get("abc").is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let near = NearCache::new(100, Duration::from_secs(10));
        near.set_live(true);
        for i in 0..10_000 {
            near.insert(&format!("c{i}"), target(i), near.epoch());
        }
        assert!(near.len() <= 200, "{} entries", near.len());
    }

    #[tokio::test]
    async fn concurrent_lookups_of_one_key_run_once() {
        let flights = Arc::new(SingleFlight::<Result<u32, ()>>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let entered = Arc::new(AtomicUsize::new(0));
        // A gate every lookup waits on, opened once for all: a second lookup would
        // show in `calls` rather than hang.
        let (open, gate) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (flights, calls, entered) = (
                Arc::clone(&flights),
                Arc::clone(&calls),
                Arc::clone(&entered),
            );
            let mut gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                entered.fetch_add(1, Ordering::SeqCst);
                flights
                    .run("hot", 0, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.wait_for(|open| *open).await;
                        Ok::<_, ()>(7)
                    })
                    .await
            }));
        }
        // Every task has reached the flight and parked (the leader on the gate, the
        // others on the cell) once they have all entered and the runtime went round.
        while entered.load(Ordering::SeqCst) < 50 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let _ = open.send(true);
        for t in tasks {
            assert_eq!(t.await.expect("task"), Ok::<_, ()>(7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0, "the leader cleaned up");
    }

    #[tokio::test]
    async fn a_cancelled_leader_leaves_no_stale_flight() {
        let flights = SingleFlight::<u32>::default();
        let fut = flights.run("k", 0, std::future::pending::<u32>);
        // Poll once, then drop: the leader is cancelled mid-lookup.
        let _ = tokio::time::timeout(Duration::from_millis(1), fut).await;
        assert_eq!(flights.in_flight(), 0);
        assert_eq!(flights.run("k", 0, || async { 9 }).await, 9);
    }

    /// Waits until every task has parked on the flight (the runtime went round).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// Issue #10: a failed lookup is shared with the waiters (they used to retry one
    /// after another, the k-th waiting k x the timeout).
    #[tokio::test]
    async fn a_failed_lookup_is_shared_with_every_waiter_at_once() {
        let flights = Arc::new(SingleFlight::<Result<u32, String>>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let (open, gate) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (flights, calls, mut gate) =
                (Arc::clone(&flights), Arc::clone(&calls), gate.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run("down", 0, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.wait_for(|open| *open).await;
                        Err::<u32, _>("database unreachable".to_owned())
                    })
                    .await
            }));
        }
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        settle().await;
        let _ = open.send(true);
        for t in tasks {
            assert_eq!(
                t.await.expect("task"),
                Err("database unreachable".to_owned())
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one lookup for all");
    }

    /// Issue #10: a request arriving after an invalidation must not join a lookup
    /// that began before it (that lookup may return the pre-write answer), and the
    /// old lookup's answer must not be stored in the near cache.
    #[tokio::test]
    async fn a_lookup_begun_before_an_invalidation_is_neither_joined_nor_stored() {
        let near = Arc::new(NearCache::new(100, Duration::from_secs(30)));
        near.set_live(true);
        let flights = Arc::new(SingleFlight::<Option<Target>>::default());
        let (open, gate) = tokio::sync::watch::channel(false);
        let (started_tx, started) = tokio::sync::oneshot::channel();
        // The leader begins at the current epoch and reads the old target; it is held
        // until the write below has happened.
        let leader = {
            let (near, flights, mut gate) = (Arc::clone(&near), Arc::clone(&flights), gate);
            tokio::spawn(async move {
                let epoch = near.epoch();
                let answer = flights
                    .run("code", epoch, || async move {
                        let _ = started_tx.send(());
                        let old = target(1);
                        let _ = gate.wait_for(|open| *open).await;
                        old
                    })
                    .await;
                near.insert("code", answer.clone(), epoch);
                answer
            })
        };
        started.await.expect("the leader started its lookup");
        // The write: its invalidation bumps the epoch.
        near.invalidate("code");
        // A request after the write: it must look up afresh, not wait for the leader.
        let epoch = near.epoch();
        let fresh = flights.run("code", epoch, || async { target(2) }).await;
        assert_eq!(fresh.map(|t| t.url_id), Some(2), "joined the old lookup");
        near.insert("code", target(2), epoch);
        let _ = open.send(true);
        assert_eq!(leader.await.expect("leader").map(|t| t.url_id), Some(1));
        // The old answer was discarded; the new one stands.
        assert_eq!(near.get("code").flatten().map(|t| t.url_id), Some(2));
        assert_eq!(flights.in_flight(), 0);
    }
}
