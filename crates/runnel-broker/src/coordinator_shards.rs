//! Which partitions of a coordinator's internal topic run here: the group coordinator's
//! `__consumer_offsets` and the transaction coordinator's `__transaction_state` are spread
//! over the brokers like any topic, and each broker runs one task (a shard) per partition it
//! leads, never one for a partition led elsewhere (DESIGN.md §8, "Coordinators").
//!
//! The shards of every partition led here start when the coordinator starts, at broker start
//! or at its first request ([`HostedShards::start_led`]), so that timers of the loaded state
//! (transaction timeouts, offset expiry) run; a partition led here later gets its shard at
//! its first request. Starting a shard loads the partition's state; requests meanwhile get
//! COORDINATOR_LOAD_IN_PROGRESS from the shard itself. A key whose partition is led by another
//! broker has no shard here: the coordinator answers NOT_COORDINATOR and the client finds the
//! right broker again (FindCoordinator answers the partition's leader).
//!
//! Leadership moves (a failover, a controlled shutdown, a preferred election): each image
//! applied here is followed ([`HostedShards::start_led`] from the image applier, Kafka's
//! `onElection`/`onResignation`). A shard whose partition is now led elsewhere stops; a
//! partition led here at a new leader epoch gets a new shard, which loads the state afresh from
//! the replicated log (what the old leader wrote and the ISR holds), so no shard serves state
//! from an earlier leadership. Requests check the same at every call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::partition::Partition;

/// The running shards of one coordinator, keyed by partition of its internal topic.
pub(crate) struct HostedShards<S> {
    topic: &'static str,
    /// The topic's partition count when the coordinator started: keys are routed over it.
    count: i32,
    running: Mutex<BTreeMap<i32, Running<S>>>,
}

/// A shard, the leader epoch of the leadership it serves and its task.
struct Running<S> {
    leader_epoch: i32,
    shard: Arc<S>,
    task: JoinHandle<()>,
}

impl<S> HostedShards<S> {
    pub(crate) fn new(topic: &'static str, count: i32) -> HostedShards<S> {
        HostedShards {
            topic,
            count,
            running: Mutex::new(BTreeMap::new()),
        }
    }

    /// The internal topic's partition count.
    pub(crate) fn count(&self) -> i32 {
        self.count
    }

    /// The shard of `partition` if it runs here for the partition's current leadership.
    pub(crate) fn running(&self, broker: &Broker, partition: i32) -> Option<Arc<S>> {
        let (leader_epoch, _) = self.led_here(broker, partition)?;
        let running = self.running.lock().expect("shards lock poisoned");
        running
            .get(&partition)
            .filter(|r| r.leader_epoch == leader_epoch)
            .map(|r| Arc::clone(&r.shard))
    }

    /// The shard of `partition`, started with `start` if this broker leads the partition and
    /// it does not run yet for this leadership; `None` when the partition is led elsewhere (or
    /// not at all). A shard of an earlier leadership is stopped first.
    pub(crate) fn get_or_start(
        &self,
        broker: &Broker,
        partition: i32,
        start: impl FnOnce(Arc<Partition>) -> (S, JoinHandle<()>),
    ) -> Option<Arc<S>> {
        let led = self.led_here(broker, partition);
        let mut running = self.running.lock().expect("shards lock poisoned");
        if let (Some(current), Some((leader_epoch, _))) = (running.get(&partition), &led) {
            if current.leader_epoch == *leader_epoch {
                return Some(Arc::clone(&current.shard));
            }
        }
        if let Some(stale) = running.remove(&partition) {
            stale.task.abort();
            tracing::info!(
                topic = self.topic,
                partition,
                leader_epoch = stale.leader_epoch,
                "coordinator shard stopped: its partition is led elsewhere or at a new epoch"
            );
        }
        let (leader_epoch, hosted) = led?;
        let (shard, task) = start(hosted);
        let shard = Arc::new(shard);
        running.insert(
            partition,
            Running {
                leader_epoch,
                shard: Arc::clone(&shard),
                task,
            },
        );
        tracing::debug!(
            topic = self.topic,
            partition,
            leader_epoch,
            "coordinator shard started"
        );
        Some(shard)
    }

    /// Starts a shard for every partition this broker leads that has none for its current
    /// leadership, and stops the shards of partitions it no longer leads.
    pub(crate) fn start_led(
        &self,
        broker: &Broker,
        mut start: impl FnMut(Arc<Partition>) -> (S, JoinHandle<()>),
    ) {
        for partition in 0..self.count {
            self.get_or_start(broker, partition, &mut start);
        }
    }

    /// Every shard running here, by partition.
    pub(crate) fn all_running(&self) -> Vec<Arc<S>> {
        let running = self.running.lock().expect("shards lock poisoned");
        running.values().map(|r| Arc::clone(&r.shard)).collect()
    }

    /// Stops every shard's task and waits for each to end.
    pub(crate) async fn shutdown(&self) {
        let stopped = std::mem::take(&mut *self.running.lock().expect("shards lock poisoned"));
        for running in stopped.values() {
            running.task.abort();
        }
        for (_, running) in stopped {
            let _ = running.task.await;
        }
    }

    /// The partition's leader epoch and the partition, when this broker holds it and the image
    /// names this broker its leader.
    fn led_here(&self, broker: &Broker, partition: i32) -> Option<(i32, Arc<Partition>)> {
        let (leader, leader_epoch, _) = broker.partition_leader(self.topic, partition)?;
        if leader != broker.config.node_id {
            return None;
        }
        Some((
            leader_epoch,
            broker.replicas.partition(self.topic, partition)?,
        ))
    }
}
