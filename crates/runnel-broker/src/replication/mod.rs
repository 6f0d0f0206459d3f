//! Partition replication (DESIGN.md §8, Kafka's ISR protocol): followers copy their leaders'
//! logs with the Fetch API, and leaders count what every in-sync replica holds.
//!
//! - [`replica_set`]: one partition's replicas as this broker sees them, and the high
//!   watermark the in-sync replicas allow on the leader.
//! - [`fetcher`]: the follower's side, one fetcher per source broker carrying every partition
//!   this node follows from it in one Fetch (replica id set), appending the leader's batches
//!   as they were written and truncating a divergent suffix first (OffsetForLeaderEpoch,
//!   KIP-101 and KIP-279).
//! - [`isr`]: the leader's ISR changes (shrink after `replica.lag.time.max.ms`, expand once a
//!   follower holds the high watermark again), proposed to the active controller.
//! - The leader's side is the same Fetch handler consumers use (`api/fetch.rs`): a fetch
//!   with a replica id reads past the high watermark, up to what the log holds, and reports
//!   the follower's log end offset ([`crate::replica_manager::ReplicaManager::follower_fetched`]).
//!
//! [`ReplicaFetchers`] owns the fetchers: each image the broker applies names, per leader, the
//! partitions this broker follows (`image_applier.rs`); a source that no longer has any stops.
//!
//! Durability (the README's "Durability" section): in durable mode a follower reports an
//! offset to its leader only once everything below it is fsync'd on the follower, and the
//! leader counts its own part only up to its fsync'd offset, so a record acknowledged with
//! acks=all is on the disk of every in-sync replica.
//!
//! Failover: when a broker is fenced its partitions' leadership moves to an in-sync replica
//! (`runnel_metadata`'s image derives it from the fencing record); each broker's image
//! applier then makes the new leader lead and points the other replicas' fetchers at it,
//! and a returning old leader truncates to where its log agrees with the new one's.
//!
//! Controlled shutdown ([`controlled_shutdown`]): SIGTERM first moves away the leadership of
//! every partition that has another in-sync replica, then stops.
//!
//! Unclean leader election (`unclean.leader.election.enable`) is derived in the image too;
//! preferred-leader election is ElectLeaders (`api/elect_leaders.rs`); fetch from follower
//! (KIP-392) is in `api/fetch.rs`.
//!
//! Not here yet (issue 16): `auto.leader.rebalance.enable` and replicated internal topics.

pub mod fetcher;
pub mod isr;
pub mod replica_set;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::broker::Broker;
use crate::partition::Partition;

/// How long a controlled shutdown waits for the active controller to move its leaderships.
const CONTROLLED_SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether `image` names a partition led by `node_id` whose ISR holds another unfenced broker:
/// one whose leadership a controlled shutdown can move.
fn leads_movable(image: &runnel_metadata::MetadataImage, node_id: i32) -> bool {
    image.topics().any(|topic| {
        topic.partitions.iter().any(|p| {
            p.leader == node_id
                && p.isr
                    .iter()
                    .any(|&id| id != node_id && !image.is_fenced(id))
        })
    })
}

/// Kafka's controlled shutdown: when this broker leads a partition that another in-sync
/// replica could lead, the active controller fences it first
/// ([`crate::controller::Controller::controlled_shutdown`]), which moves those leaderships
/// before the process stops, so producers and consumers go to the new leaders at once rather
/// than after `broker.session.timeout.ms`. A single node, or a broker that leads nothing
/// replicated, stops as before. Bounded by [`CONTROLLED_SHUTDOWN_WAIT`]; a failure is logged
/// and the shutdown goes on.
pub async fn controlled_shutdown(broker: &Arc<Broker>) {
    let node_id = broker.config.node_id;
    if !leads_movable(&broker.controller.image(), node_id) {
        return;
    }
    tracing::info!("controlled shutdown: moving the leadership of replicated partitions away");
    match tokio::time::timeout(
        CONTROLLED_SHUTDOWN_WAIT,
        broker.controller.controlled_shutdown(),
    )
    .await
    {
        Ok(Ok(())) => tracing::info!("controlled shutdown: leadership moved"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "controlled shutdown: leadership not moved; stopping anyway")
        }
        Err(_) => tracing::warn!(
            "controlled shutdown: no answer from the active controller; stopping anyway"
        ),
    }
}

/// The partitions a fetcher copies from its source broker.
pub type Followed = Arc<Vec<Arc<Partition>>>;

/// One fetcher per source broker (see the module doc).
#[derive(Default)]
pub struct ReplicaFetchers {
    sources: Mutex<HashMap<i32, Source>>,
}

/// One source broker's fetcher: what it follows, and its task.
struct Source {
    followed: watch::Sender<Followed>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Source {
    fn drop(&mut self) {
        // Stopped at its next await: an append in progress (no await inside) completes first.
        // Its partitions' handles go with it, so shutdown can close them.
        self.task.abort();
    }
}

impl ReplicaFetchers {
    /// Makes the fetchers follow exactly `by_leader`: per source broker, the partitions this
    /// broker follows from it. A new source gets a fetcher; one left out stops.
    pub fn follow(&self, broker: &Arc<Broker>, by_leader: HashMap<i32, Vec<Arc<Partition>>>) {
        let mut sources = self.sources.lock().expect("fetchers lock poisoned");
        sources.retain(|source, _| by_leader.contains_key(source));
        for (source, partitions) in by_leader {
            let followed: Followed = Arc::new(partitions);
            match sources.get(&source) {
                Some(running) => {
                    running.followed.send_replace(followed);
                }
                None => {
                    let (sender, receiver) = watch::channel(followed);
                    let task = tokio::spawn(fetcher::run(Arc::clone(broker), source, receiver));
                    sources.insert(
                        source,
                        Source {
                            followed: sender,
                            task,
                        },
                    );
                }
            }
        }
    }

    /// Stops every fetcher (at shutdown).
    pub fn stop(&self) {
        self.sources.lock().expect("fetchers lock poisoned").clear();
    }

    /// The source brokers fetched from now.
    pub fn sources(&self) -> Vec<i32> {
        let mut sources: Vec<i32> = self
            .sources
            .lock()
            .expect("fetchers lock poisoned")
            .keys()
            .copied()
            .collect();
        sources.sort_unstable();
        sources
    }
}
