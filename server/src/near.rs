//! The near cache: short code → redirect answer, inside the process, in front of
//! Valkey. Bounded (S3-FIFO eviction, quick_cache) and short-lived, and correct across
//! replicas: every write publishes the codes it touched on a Valkey channel, each
//! replica drops them on receipt, and a replica that loses that link drops its whole
//! near cache and stops using it until the link is back (see `cache::Cache`).
//!
//! Also here: single-flight, so concurrent misses for one code make one lookup.

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
    pub url_id: i64,
    pub user_id: i64,
    pub is_active: bool,
    pub location: HeaderValue,
}

impl Target {
    /// `None` when the stored target is not a valid header value (it is validated on
    /// the way in, so only a hand-edited row could do that).
    pub fn from_link(link: &Link) -> Option<Target> {
        Some(Target {
            url_id: link.url_id,
            user_id: link.user_id,
            is_active: link.is_active,
            // from_bytes keeps the stored target byte for byte.
            location: HeaderValue::from_bytes(link.target.as_bytes()).ok()?,
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

/// Coalesces concurrent lookups of one key into one.
pub struct SingleFlight<V> {
    inflight: Mutex<HashMap<String, Arc<OnceCell<V>>>>,
}

impl<V> Default for SingleFlight<V> {
    fn default() -> Self {
        SingleFlight {
            inflight: Mutex::new(HashMap::new()),
        }
    }
}

/// Removes the leader's entry however its future ends (done, failed or cancelled), so a
/// finished answer is never handed to later callers.
struct LeaderGuard<'a, V> {
    flights: &'a SingleFlight<V>,
    key: &'a str,
}

impl<V> Drop for LeaderGuard<'_, V> {
    fn drop(&mut self) {
        self.flights
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(self.key);
    }
}

impl<V: Clone> SingleFlight<V> {
    /// Runs `lookup` unless the same key is already being looked up, in which case it
    /// waits for that answer. If the leader fails, a waiter runs its own lookup.
    ///
    /// # Errors
    /// Whatever `lookup` returns.
    pub async fn run<E, F, Fut>(&self, key: &str, lookup: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let (cell, leader) = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(key) {
                Some(cell) => (Arc::clone(cell), false),
                None => {
                    let cell = Arc::new(OnceCell::new());
                    map.insert(key.to_owned(), Arc::clone(&cell));
                    (cell, true)
                }
            }
        };
        // `then`, not `then_some`: an eagerly built guard would be dropped at once and
        // remove the leader's entry.
        let _guard = leader.then(|| LeaderGuard { flights: self, key });
        cell.get_or_try_init(lookup).await.cloned()
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
        Target::from_link(&Link {
            url_id: id,
            user_id: 1,
            is_active: true,
            target: format!("https://x.io/{id}"),
        })
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
        let flights = Arc::new(SingleFlight::<u32>::default());
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
                    .run("hot", || async move {
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
            assert_eq!(t.await.expect("task"), Ok(7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0, "the leader cleaned up");
    }

    #[tokio::test]
    async fn a_cancelled_leader_leaves_no_stale_flight() {
        let flights = SingleFlight::<u32>::default();
        let fut = flights.run("k", std::future::pending::<Result<u32, ()>>);
        // Poll once, then drop: the leader is cancelled mid-lookup.
        let _ = tokio::time::timeout(Duration::from_millis(1), fut).await;
        assert_eq!(flights.in_flight(), 0);
        assert_eq!(flights.run("k", || async { Ok::<_, ()>(9) }).await, Ok(9));
    }
}
