//! The click check (`--check-clicks`, on by default): after a run of the
//! `redirect` scenario, each link it clicked must show in `GET /urls/{id}/stats`
//! the clicks its 302s stand for, so a load test proves that no click was lost
//! (clicks are counted off the request path since issue #11: a queue, a writer,
//! a flush every CLICKS_FLUSH_INTERVAL_MS).
//!
//! Before the load starts, [`baseline`] reads the `clicks` of every link the
//! scenario may click. During the run, goose users note each GET to a link in
//! the [`Ledger`]: atomics in a map built before the run, so the hot path takes
//! no lock. After it, [`verify`] reads the clicked links again until their
//! counts match (they lag by up to a flush interval) or the wait runs out.
//! [`compare`] is the pure judgement.
//!
//! A link matches when `baseline + redirected <= clicks <= baseline + sent`:
//! every 302 received is a click the server recorded, and a GET whose answer
//! never came (timed out, connection cut, the run ended under it) may or may
//! not have been recorded. Without such GETs that is equality. Fewer clicks
//! are lost clicks; more come from traffic that is not this run's.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;

use crate::data;

/// How often [`verify`] reads the links that do not match yet.
const POLL: Duration = Duration::from_millis(250);
/// Mismatches named in a failure message; the rest are counted.
const NAMED: usize = 10;

// === Ledger ===

#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU64,
    redirected: AtomicU64,
}

/// What the run did to each link, written by every goose user at once.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Built before the run and never resized: lookups need no lock.
    links: HashMap<i64, Tally>,
}

impl Ledger {
    /// A ledger for the links with these URL ids; other ids are not tracked.
    pub fn new(ids: impl IntoIterator<Item = i64>) -> Self {
        Ledger {
            links: ids.into_iter().map(|id| (id, Tally::default())).collect(),
        }
    }

    /// A GET to link `id` is about to be sent.
    pub fn sent(&self, id: i64) {
        if let Some(t) = self.links.get(&id) {
            t.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// That GET was answered 302 (whatever its `Location`: the server counted it).
    pub fn redirected(&self, id: i64) {
        if let Some(t) = self.links.get(&id) {
            t.redirected.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The links that were sent at least one GET, by id. Read after the run:
    /// the goose users' tasks have ended, so every increment is visible.
    pub fn counted(&self) -> BTreeMap<i64, Counted> {
        self.links
            .iter()
            .filter_map(|(&id, t)| {
                let c = Counted {
                    sent: t.sent.load(Ordering::Relaxed),
                    redirected: t.redirected.load(Ordering::Relaxed),
                };
                (c.sent > 0).then_some((id, c))
            })
            .collect()
    }
}

/// One link's GETs during the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counted {
    /// GETs sent (a HEAD is no click and is never sent by the scenarios).
    pub sent: u64,
    /// Of those, the ones answered 302.
    pub redirected: u64,
}

// === Judgement ===

/// A clicked link whose stats do not account for its redirects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub url_id: i64,
    pub counted: Counted,
    /// How much `clicks` grew over the run; `None` when it could not be read.
    pub grew: Option<i64>,
}

impl Mismatch {
    /// Clicks missing from the stats (0 unless some are).
    pub fn lost(&self) -> u64 {
        match self.grew {
            Some(g) => {
                u64::try_from(i128::from(self.counted.redirected) - i128::from(g)).unwrap_or(0)
            }
            None => 0,
        }
    }

    /// More clicks than GETs sent: waiting longer cannot make it match.
    fn excess(&self) -> bool {
        self.grew
            .is_some_and(|g| i128::from(g) > i128::from(self.counted.sent))
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Counted { sent, redirected } = self.counted;
        match self.grew {
            None => write!(
                f,
                "url {}: {redirected} redirects answered 302, its stats could not be read",
                self.url_id
            ),
            Some(g) if self.excess() => write!(
                f,
                "url {}: clicks grew by {g}, {} more than the {sent} GETs sent (traffic from outside this run?)",
                self.url_id,
                i128::from(g) - i128::from(sent)
            ),
            Some(g) => write!(
                f,
                "url {}: {redirected} redirects answered 302, clicks grew by {g}: {} lost",
                self.url_id,
                self.lost()
            ),
        }
    }
}

/// The clicked links (`counted`) whose growth from `baseline` to `now` is
/// outside `redirected..=sent`. Links missing from either map are mismatches
/// (their stats could not be read).
pub fn compare(
    baseline: &HashMap<i64, u64>,
    counted: &BTreeMap<i64, Counted>,
    now: &HashMap<i64, u64>,
) -> Vec<Mismatch> {
    counted
        .iter()
        .filter_map(|(&url_id, &c)| {
            let grew = match (baseline.get(&url_id), now.get(&url_id)) {
                (Some(&before), Some(&after)) => {
                    i64::try_from(i128::from(after) - i128::from(before)).ok()
                }
                _ => None,
            };
            let fits = grew.is_some_and(|g| {
                let g = i128::from(g);
                i128::from(c.redirected) <= g && g <= i128::from(c.sent)
            });
            (!fits).then_some(Mismatch {
                url_id,
                counted: c,
                grew,
            })
        })
        .collect()
}

/// What the click check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Links sent at least one GET.
    pub links: usize,
    /// 302s received over them.
    pub redirected: u64,
    /// From the end of the run to the last read of the stats.
    pub waited: Duration,
    pub mismatches: Vec<Mismatch>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let waited = self.waited.as_secs_f64();
        if self.passed() {
            return write!(
                f,
                "click check: {} redirects answered 302 over {} links, every one counted in GET /urls/{{id}}/stats (read {waited:.1} s after the run)",
                self.redirected, self.links
            );
        }
        let lost: u64 = self.mismatches.iter().map(Mismatch::lost).sum();
        write!(
            f,
            "click check: {} of {} links clicked do not match their stats {waited:.1} s after the run",
            self.mismatches.len(),
            self.links
        )?;
        if lost > 0 {
            write!(f, " ({lost} clicks lost)")?;
        }
        let named: Vec<String> = self
            .mismatches
            .iter()
            .take(NAMED)
            .map(ToString::to_string)
            .collect();
        write!(f, ": {}", named.join("; "))?;
        if self.mismatches.len() > NAMED {
            write!(f, "; and {} more", self.mismatches.len() - NAMED)?;
        }
        Ok(())
    }
}

// === Talking to the target ===

/// The part of `GET /urls/{id}/stats` the check reads.
#[derive(Deserialize)]
struct Stats {
    clicks: u64,
}

/// The `clicks` of each link in `ids`, `concurrency` requests at a time.
///
/// # Errors
/// The first read that fails, naming it and how to turn the check off.
pub async fn baseline(
    client: &reqwest::Client,
    host: &str,
    ids: &[i64],
    concurrency: usize,
) -> anyhow::Result<HashMap<i64, u64>> {
    let clicks = read_all(client, host, ids, concurrency, |r| r)
        .await
        .context(
            "the click check reads GET /urls/{id}/stats of every link before the run; \
             turn it off with --no-check-clicks (or LOADTEST_CHECK_CLICKS=false)",
        )?;
    Ok(ids.iter().copied().zip(clicks).collect())
}

/// Reads the stats of the links `ledger` saw clicked until they match
/// `baseline` plus the clicks (see the module's rule) or `wait` has passed.
pub async fn verify(
    client: &reqwest::Client,
    host: &str,
    ledger: &Ledger,
    baseline: &HashMap<i64, u64>,
    wait: Duration,
    concurrency: usize,
) -> Verdict {
    let counted = ledger.counted();
    let started = Instant::now();
    let mut now = HashMap::with_capacity(counted.len());
    let mut pending: Vec<i64> = counted.keys().copied().collect();
    loop {
        // A read that fails leaves the link unread: it stays pending.
        let read = read_all(client, host, &pending, concurrency, |r| Ok(r.ok()))
            .await
            .unwrap_or_default();
        for (&id, clicks) in pending.iter().zip(read) {
            match clicks {
                Some(c) => now.insert(id, c),
                None => now.remove(&id),
            };
        }
        let mismatches = compare(baseline, &counted, &now);
        let hopeless = mismatches.iter().all(Mismatch::excess);
        if mismatches.is_empty() || hopeless || started.elapsed() >= wait {
            return Verdict {
                links: counted.len(),
                redirected: counted.values().map(|c| c.redirected).sum(),
                waited: started.elapsed(),
                mismatches,
            };
        }
        pending = mismatches.iter().map(|m| m.url_id).collect();
        tokio::time::sleep(POLL).await;
    }
}

/// Reads the stats of `ids` in parallel, each result passed through `keep`
/// (which decides whether a failed read stops everything).
async fn read_all<T: Send + 'static>(
    client: &reqwest::Client,
    host: &str,
    ids: &[i64],
    concurrency: usize,
    keep: fn(anyhow::Result<u64>) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<T>> {
    let ids: Arc<[i64]> = Arc::from(ids);
    let host: Arc<str> = Arc::from(host);
    let client = client.clone();
    data::run_parallel(ids.len(), concurrency, move |i| {
        let (client, host, id) = (client.clone(), Arc::clone(&host), ids[i]);
        async move {
            let read = data::get_json::<Stats>(&client, &host, &format!("/urls/{id}/stats"))
                .await
                .map(|s| s.clicks);
            keep(read)
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(entries: &[(i64, u64, u64)]) -> BTreeMap<i64, Counted> {
        entries
            .iter()
            .map(|&(id, sent, redirected)| (id, Counted { sent, redirected }))
            .collect()
    }

    fn clicks(entries: &[(i64, u64)]) -> HashMap<i64, u64> {
        entries.iter().copied().collect()
    }

    #[test]
    fn stats_that_grew_by_exactly_the_302s_match() {
        let base = clicks(&[(1, 100), (2, 0), (3, 7)]);
        let run = counted(&[(1, 40, 40), (2, 5, 5)]);
        let now = clicks(&[(1, 140), (2, 5), (3, 9)]);
        // Link 3 was not clicked by the run: its other traffic is not judged.
        assert_eq!(compare(&base, &run, &now), []);
    }

    #[test]
    fn fewer_clicks_than_302s_are_lost_clicks_named_with_the_difference() {
        let base = clicks(&[(1, 100), (2, 0)]);
        let run = counted(&[(1, 40, 40), (2, 5, 5)]);
        let now = clicks(&[(1, 138), (2, 5)]);
        let off = compare(&base, &run, &now);
        assert_eq!(
            off,
            [Mismatch {
                url_id: 1,
                counted: Counted {
                    sent: 40,
                    redirected: 40
                },
                grew: Some(38)
            }]
        );
        assert_eq!(off[0].lost(), 2);
        assert_eq!(
            off[0].to_string(),
            "url 1: 40 redirects answered 302, clicks grew by 38: 2 lost"
        );
    }

    #[test]
    fn gets_without_an_answer_may_or_may_not_count() {
        // 10 sent, 8 answered 302: 8, 9 or 10 clicks all fit; 7 and 11 do not.
        let base = clicks(&[(1, 0)]);
        let run = counted(&[(1, 10, 8)]);
        for fits in [8, 9, 10] {
            assert_eq!(compare(&base, &run, &clicks(&[(1, fits)])), [], "{fits}");
        }
        for off in [7, 11] {
            assert_eq!(compare(&base, &run, &clicks(&[(1, off)])).len(), 1, "{off}");
        }
    }

    #[test]
    fn more_clicks_than_gets_sent_are_someone_elses_and_not_worth_waiting_for() {
        let off = compare(
            &clicks(&[(4, 10)]),
            &counted(&[(4, 3, 3)]),
            &clicks(&[(4, 15)]),
        );
        assert_eq!(off.len(), 1);
        assert!(off[0].excess());
        assert_eq!(off[0].lost(), 0);
        assert_eq!(
            off[0].to_string(),
            "url 4: clicks grew by 5, 2 more than the 3 GETs sent (traffic from outside this run?)"
        );
    }

    #[test]
    fn unreadable_stats_are_a_mismatch_not_a_pass() {
        let run = counted(&[(1, 2, 2), (2, 1, 1)]);
        let off = compare(&clicks(&[(1, 0)]), &run, &clicks(&[(2, 1)]));
        let ids: Vec<i64> = off.iter().map(|m| m.url_id).collect();
        assert_eq!(ids, [1, 2], "1 unread now, 2 without a baseline");
        assert!(off.iter().all(|m| m.grew.is_none() && !m.excess()));
        assert!(off[0].to_string().contains("could not be read"));
    }

    #[test]
    fn a_count_that_went_down_is_lost_clicks() {
        let off = compare(
            &clicks(&[(1, 50)]),
            &counted(&[(1, 3, 3)]),
            &clicks(&[(1, 48)]),
        );
        assert_eq!(off[0].grew, Some(-2));
        assert_eq!(off[0].lost(), 5);
    }

    #[test]
    fn the_ledger_counts_only_known_links_and_reports_only_clicked_ones() {
        let ledger = Ledger::new([1, 2, 3]);
        ledger.sent(1);
        ledger.redirected(1);
        ledger.sent(1);
        ledger.sent(9); // not a link of the run: ignored
        ledger.redirected(9);
        assert_eq!(ledger.counted(), counted(&[(1, 2, 1)]));
    }

    #[test]
    fn the_ledger_is_shared_across_threads() {
        let ledger = Arc::new(Ledger::new([7]));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let ledger = Arc::clone(&ledger);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        ledger.sent(7);
                        ledger.redirected(7);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a counting thread panicked");
        }
        assert_eq!(ledger.counted(), counted(&[(7, 8000, 8000)]));
    }

    #[test]
    fn verdicts_say_what_passed_and_name_what_did_not() {
        let pass = Verdict {
            links: 3,
            redirected: 120,
            waited: Duration::from_millis(1300),
            mismatches: Vec::new(),
        };
        assert!(pass.passed());
        assert_eq!(
            pass.to_string(),
            "click check: 120 redirects answered 302 over 3 links, every one counted in GET /urls/{id}/stats (read 1.3 s after the run)"
        );
        let lost = |url_id| Mismatch {
            url_id,
            counted: Counted {
                sent: 4,
                redirected: 4,
            },
            grew: Some(3),
        };
        let fail = Verdict {
            links: 20,
            redirected: 80,
            waited: Duration::from_secs(10),
            mismatches: (1..=12).map(lost).collect(),
        };
        assert!(!fail.passed());
        let text = fail.to_string();
        assert!(
            text.starts_with("click check: 12 of 20 links clicked do not match their stats 10.0 s after the run (12 clicks lost): url 1: "),
            "{text}"
        );
        assert!(
            text.contains("url 10: ") && !text.contains("url 11: "),
            "{text}"
        );
        assert!(text.ends_with("; and 2 more"), "{text}");
    }
}
