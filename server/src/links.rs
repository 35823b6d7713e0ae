//! The link lookup: short code → redirect answer, through the near cache (in
//! process), single-flight, Valkey and PostgreSQL, in that order. The one home of the
//! rule that keeps them consistent: an answer is stored in the near cache only under
//! the epoch at which its lookup began, so a lookup that raced a write (on this
//! replica, or on another whose invalidation arrived mid-lookup) cannot keep
//! serving the old target. And when PostgreSQL cannot be asked, the last known
//! answer is served (stale-if-error, up to STALE_IF_ERROR_SECONDS old) rather than
//! a 503: a redirect whose target is known keeps working for the whole outage.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Cache, Lookup};
use crate::db::{self, Db};
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::near::{NearCache, SingleFlight, Target};

/// An answer: the target (`None`: no such code) and whether a cache layer had it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub target: Option<Target>,
    pub cached: bool,
    /// Served past its TTL because PostgreSQL could not be asked (stale-if-error).
    pub stale: bool,
}

/// One flight's outcome, shared by everyone who waited for it.
type Flight = Result<Resolved, Arc<Error>>;

pub struct Links {
    near: Option<Arc<NearCache>>,
    flights: SingleFlight<Flight>,
    cache: Cache,
    db: Db,
    /// How old an answer may be when PostgreSQL is down (STALE_IF_ERROR_SECONDS).
    max_stale: Duration,
    /// The longest a lookup waits on PostgreSQL (pool wait + statement timeout).
    db_deadline: Duration,
}

impl Links {
    pub fn new(
        near: Option<Arc<NearCache>>,
        cache: Cache,
        db: Db,
        max_stale: Duration,
        db_deadline: Duration,
    ) -> Self {
        Links {
            near,
            flights: SingleFlight::default(),
            cache,
            db,
            max_stale,
            db_deadline,
        }
    }

    pub fn near(&self) -> Option<&NearCache> {
        self.near.as_deref()
    }

    /// The answer for a code. Concurrent misses share one lookup; a failed lookup
    /// fails every request that waited on it, at once.
    ///
    /// # Errors
    /// PostgreSQL unreachable (503), or a stored target that cannot be a `Location`.
    pub async fn resolve(&self, code: &str) -> Result<Resolved> {
        let Some(near) = self.near.as_deref() else {
            return self.lookup(code).await;
        };
        if let Some(target) = near.get(code) {
            m::cache_local(true);
            return Ok(Resolved {
                target,
                cached: true,
                stale: false,
            });
        }
        m::cache_local(false);
        // Read before the lookup starts: any invalidation from here on bumps it, and
        // the insert below then discards this lookup's answer.
        let epoch = near.epoch();
        let flight = self
            .flights
            .run(code, epoch, || async {
                self.lookup(code).await.map_err(Arc::new)
            })
            .await;
        match flight {
            Ok(resolved) => {
                if !resolved.stale {
                    near.insert(code, resolved.target.clone(), epoch);
                }
                Ok(resolved)
            }
            Err(e) => Err(e.duplicate()),
        }
    }

    /// Valkey, then PostgreSQL (filling Valkey); when PostgreSQL cannot be asked, the
    /// last known answer (near cache, then Valkey's long-lived copy) up to
    /// STALE_IF_ERROR_SECONDS old.
    async fn lookup(&self, code: &str) -> Result<Resolved> {
        let (link, cached) = match self.cache.get_link(code).await {
            Lookup::Hit(link) => (link, true),
            lookup => {
                // Bounded on our side too: a PostgreSQL that stops answering (a
                // partition, not a refusal) must not hold redirects forever.
                let found = tokio::time::timeout(
                    self.db_deadline,
                    db::retry_once(|| async {
                        db::urls::link_by_code(&self.db.get().await?, code).await
                    }),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Unavailable(
                        "PostgreSQL did not answer the lookup in time".into(),
                    ))
                });
                let link = match found {
                    Ok(link) => link,
                    Err(e) if e.status() == http::StatusCode::SERVICE_UNAVAILABLE => {
                        return self.stale(code).await.ok_or(e);
                    }
                    Err(e) => return Err(e),
                };
                if matches!(lookup, Lookup::Miss) {
                    self.cache.put_link(code, link.as_ref());
                }
                (link, false)
            }
        };
        let target = match &link {
            Some(l) => Some(Target::from_link(code, l).ok_or_else(|| {
                Error::internal(format!("the target of {code} is not a valid Location"))
            })?),
            None => None,
        };
        Ok(Resolved {
            target,
            cached,
            stale: false,
        })
    }

    /// The last known answer, when PostgreSQL is away: counted, bounded in age.
    async fn stale(&self, code: &str) -> Option<Resolved> {
        if let Some(target) = self
            .near
            .as_deref()
            .and_then(|n| n.get_stale(code, self.max_stale))
        {
            m::stale_served(m::StaleLayer::Local);
            return Some(Resolved {
                target,
                cached: true,
                stale: true,
            });
        }
        let link = match self.cache.get_stale_link(code).await {
            Lookup::Hit(link) => link,
            _ => return None,
        };
        let target = match &link {
            Some(l) => Some(Target::from_link(code, l)?),
            None => None,
        };
        m::stale_served(m::StaleLayer::Valkey);
        Some(Resolved {
            target,
            cached: true,
            stale: true,
        })
    }
}
