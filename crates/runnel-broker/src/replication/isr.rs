//! The leader's side of the in-sync replicas (Kafka's `Partition.maybeShrinkIsr` and
//! `maybeExpandIsr`, and the AlterPartition request they send).
//!
//! Every half `replica.lag.time.max.ms` (at most 5 s, at least 100 ms), for each partition this
//! broker leads with followers: the ISR it should have ([`ReplicaSet::desired_isr`]: without
//! followers that have not caught up for `replica.lag.time.max.ms`, with replicas that hold
//! the high watermark again) is compared with the image's, and a difference is proposed to the
//! active controller as [`Change::AlterIsr`], naming the leader and partition epochs it was
//! based on; a stale one is refused and looked at again next round, against the new image.
//! The image applier then gives the partition the new ISR, which may move its high watermark.
//! Replicas a proposal adds count for the high watermark from the proposal on, until it is
//! answered (`replica_set.rs`, Kafka's maximal ISR).
//!
//! Kafka sends AlterPartition on the wire to the active controller; Runnel carries the same
//! change the way every broker-to-controller change travels here (forwarded on the controller
//! listener, `runnel_controller::forward`), as BrokerRegistration and BrokerHeartbeat do.
//!
//! A broker that stops heartbeating is taken out of every ISR by its fencing instead
//! (`runnel_metadata`'s image, `fail_over_from`), after `broker.session.timeout.ms`.
//!
//! [`ReplicaSet::desired_isr`]: super::replica_set::ReplicaSet::desired_isr

use std::sync::Arc;
use std::time::Duration;

use crate::broker::Broker;
use crate::controller_change::Change;

/// Runs ISR rounds until the broker stops.
pub async fn run(broker: Arc<Broker>) {
    let lag_max_ms = broker.config.replica_lag_time_max_ms;
    let period = Duration::from_millis((lag_max_ms / 2).clamp(100, 5_000));
    let mut stopping = broker.stopping();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        round(&broker, lag_max_ms as i64).await;
    }
}

/// One round over the partitions this broker leads.
async fn round(broker: &Arc<Broker>, lag_max_ms: i64) {
    let image = broker.controller.image();
    let node_id = broker.config.node_id;
    for partition in broker.replicas.all_partitions() {
        if !partition.is_led_here() || !partition.has_followers() {
            continue;
        }
        let Some(placed) = image
            .topic(&partition.topic)
            .filter(|topic| topic.topic_id == partition.topic_id)
            .and_then(|topic| {
                usize::try_from(partition.index)
                    .ok()
                    .and_then(|i| topic.partitions.get(i))
            })
        else {
            continue;
        };
        let proposal = partition.propose_isr(placed, crate::now_ms(), lag_max_ms, |id| {
            image.is_fenced(id)
        });
        let Some((isr, leader_epoch, partition_epoch)) = proposal else {
            continue;
        };
        let shrinks = isr.len() < placed.isr.len();
        tracing::info!(topic = %partition.topic, partition = partition.index,
            from = ?placed.isr, to = ?isr,
            "{} the in-sync replicas", if shrinks { "shrinking" } else { "expanding" });
        let change = Change::AlterIsr {
            topic_id: partition.topic_id,
            partition: partition.index,
            leader: node_id,
            leader_epoch,
            partition_epoch,
            isr,
        };
        match broker.controller.alter_isr(change).await {
            Ok(()) => {
                let counter = if shrinks {
                    &broker.metrics.isr_shrinks
                } else {
                    &broker.metrics.isr_expands
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(error) => {
                tracing::info!(topic = %partition.topic, partition = partition.index,
                    %error, "the ISR change was not made; looked at again next round");
                partition.isr_proposal_failed(partition_epoch, !error.outcome_unknown());
            }
        }
    }
}
