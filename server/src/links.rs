//! The link lookup: short code → redirect answer, through the near cache (in
//! process), single-flight, Valkey and PostgreSQL, in that order. The one home of the
//! rule that keeps them consistent: an answer is stored in the near cache only under
//! the epoch at which its lookup began, so a lookup that raced a write (on this
//! replica, or on another whose invalidation arrived mid-lookup) cannot keep
//! serving the old target.

use std::sync::Arc;

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
}

/// One flight's outcome, shared by everyone who waited for it.
type Flight = Result<Resolved, Arc<Error>>;

pub struct Links {
    near: Option<Arc<NearCache>>,
    flights: SingleFlight<Flight>,
    cache: Cache,
    db: Db,
}

impl Links {
    pub fn new(near: Option<Arc<NearCache>>, cache: Cache, db: Db) -> Self {
        Links {
            near,
            flights: SingleFlight::default(),
            cache,
            db,
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
                near.insert(code, resolved.target.clone(), epoch);
                Ok(resolved)
            }
            Err(e) => Err(e.duplicate()),
        }
    }

    /// Valkey, then PostgreSQL (filling Valkey).
    async fn lookup(&self, code: &str) -> Result<Resolved> {
        let (link, cached) = match self.cache.get_link(code).await {
            Lookup::Hit(link) => (link, true),
            lookup => {
                let link = db::retry_once(|| async {
                    db::urls::link_by_code(&self.db.get().await?, code).await
                })
                .await?;
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
        Ok(Resolved { target, cached })
    }
}
