//! The retention task: every `log.retention.check.interval.ms`, each partition deletes the
//! segments past its `retention.ms` / `retention.bytes` (see `runnel_log`'s retention module
//! for the rules), and when any log start offset moved the checkpoints are written.

use std::sync::Arc;
use std::time::Duration;

use crate::broker::Broker;

/// Runs retention passes until the task is aborted at shutdown.
pub(crate) async fn retention_loop(broker: Arc<Broker>) {
    let period = Duration::from_millis(broker.config.retention_check_interval_ms);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let broker = Arc::clone(&broker);
        if let Err(error) = tokio::task::spawn_blocking(move || retention_pass(&broker)).await {
            tracing::error!(%error, "retention task failed");
        }
    }
}

/// One pass over every partition.
pub(crate) fn retention_pass(broker: &Broker) {
    let now_ms = crate::now_ms();
    let mut deleted = 0;
    for partition in broker.replicas.all_partitions() {
        match partition.apply_retention(now_ms) {
            Ok(count) => deleted += count,
            Err(error) => tracing::error!(
                topic = %partition.topic, partition = partition.index, %error,
                "retention failed"
            ),
        }
    }
    if deleted > 0 {
        if let Err(error) = broker.replicas.write_checkpoints() {
            tracing::error!(%error, "writing checkpoints after retention failed");
        }
    }
}
