//! Keeps the near cache honest: subscribed to the invalidation channel, it drops
//! each published code; when the link is lost (the stream ends, or a heartbeat PING
//! goes unanswered) it drops the whole near cache and stops using it until
//! resubscribed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;

use super::connection::Connection;
use super::keys::codes_in_message;
use crate::near::NearCache;

pub(super) async fn follow_invalidations(
    weak: Weak<Connection>,
    channel: String,
    near: Arc<NearCache>,
) {
    loop {
        let subscribed = {
            let Some(conn) = weak.upgrade() else { return };
            tokio::time::timeout(Duration::from_secs(3), async {
                let mut pubsub = conn.master().await?.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub.split())
            })
            .await
        };
        match subscribed {
            Ok(Ok((mut sink, mut stream))) => {
                near.set_live(true);
                tracing::info!("near cache live: following invalidations");
                // In subscribed mode PING answers ["pong", ""], hence Value.
                let mut beat = tokio::time::interval_at(
                    tokio::time::Instant::now() + Duration::from_secs(1),
                    Duration::from_secs(1),
                );
                loop {
                    tokio::select! {
                        msg = stream.next() => match msg {
                            Some(msg) => match msg.get_payload::<String>() {
                                Ok(payload) => {
                                    for code in codes_in_message(&payload) {
                                        near.invalidate(code);
                                    }
                                }
                                Err(_) => break,
                            },
                            None => break,
                        },
                        _ = beat.tick() => {
                            if weak.strong_count() == 0 {
                                return;
                            }
                            let pong = tokio::time::timeout(Duration::from_secs(1), sink.ping::<redis::Value>()).await;
                            if !matches!(pong, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                near.set_live(false);
                tracing::warn!("invalidation link lost: near cache dropped until it is back");
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot subscribe to invalidations yet"),
            Err(_) => tracing::debug!("subscribing to invalidations timed out"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
