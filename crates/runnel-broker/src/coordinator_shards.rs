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
//! With one replica per partition a partition is led only by the broker that holds it, so a
//! shard, once started, runs until shutdown. Moving leadership (the replication issue) will
//! stop a shard when its partition is led elsewhere.

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
    running: Mutex<BTreeMap<i32, Arc<S>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl<S> HostedShards<S> {
    pub(crate) fn new(topic: &'static str, count: i32) -> HostedShards<S> {
        HostedShards {
            topic,
            count,
            running: Mutex::new(BTreeMap::new()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The internal topic's partition count.
    pub(crate) fn count(&self) -> i32 {
        self.count
    }

    /// The shard of `partition` if it runs here.
    pub(crate) fn running(&self, partition: i32) -> Option<Arc<S>> {
        let running = self.running.lock().expect("shards lock poisoned");
        running.get(&partition).cloned()
    }

    /// The shard of `partition`, started with `start` if this broker leads the partition and
    /// it does not run yet; `None` when the partition is led elsewhere (or not at all).
    pub(crate) fn get_or_start(
        &self,
        broker: &Broker,
        partition: i32,
        start: impl FnOnce(Arc<Partition>) -> (S, JoinHandle<()>),
    ) -> Option<Arc<S>> {
        let mut running = self.running.lock().expect("shards lock poisoned");
        if let Some(shard) = running.get(&partition) {
            return Some(Arc::clone(shard));
        }
        let hosted = self.led_here(broker, partition)?;
        let (shard, task) = start(hosted);
        let shard = Arc::new(shard);
        running.insert(partition, Arc::clone(&shard));
        self.tasks.lock().expect("tasks lock poisoned").push(task);
        tracing::debug!(topic = self.topic, partition, "coordinator shard started");
        Some(shard)
    }

    /// Starts a shard for every partition this broker leads that has none yet.
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
        running.values().cloned().collect()
    }

    /// Stops every shard's task and waits for each to end.
    pub(crate) async fn shutdown(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("tasks lock poisoned"));
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    /// The partition when this broker holds it and the image names this broker its leader.
    fn led_here(&self, broker: &Broker, partition: i32) -> Option<Arc<Partition>> {
        let (leader, _, _) = broker.partition_leader(self.topic, partition)?;
        if leader != broker.config.node_id {
            return None;
        }
        broker.replicas.partition(self.topic, partition)
    }
}
