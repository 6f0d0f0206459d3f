//! The cleaner task: every `log.cleaner.backoff.ms`, each partition of a compacted topic
//! (`cleanup.policy` includes `compact`) runs one compaction pass when enough of it is dirty
//! (see `runnel_log`'s compaction module for the rules and the crash-safe swap), with its key
//! map bounded by `log.cleaner.dedupe.buffer.size`. After a pass that rewrote anything, the
//! cleaner offsets are written to `cleaner-offset-checkpoint`. `log.cleaner.backoff.ms` and
//! `log.cleaner.dedupe.buffer.size` are dynamic: each pass reads the live configuration.

use std::sync::Arc;
use std::time::Duration;

use crate::broker::Broker;

/// Runs cleaning passes until the task is aborted at shutdown.
pub(crate) async fn cleaner_loop(broker: Arc<Broker>) {
    if !broker.config.cleaner.enable {
        return;
    }
    loop {
        let backoff_ms = broker.dynamic.current().cleaner.backoff_ms;
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        let broker = Arc::clone(&broker);
        if let Err(error) = tokio::task::spawn_blocking(move || cleaning_pass(&broker)).await {
            tracing::error!(%error, "cleaner task failed");
        }
    }
}

/// One pass over every partition.
pub(crate) fn cleaning_pass(broker: &Broker) {
    let now_ms = crate::now_ms();
    let mut rewritten = 0;
    let dedupe_buffer_bytes = broker.dynamic.current().cleaner.dedupe_buffer_bytes;
    for partition in broker.replicas.all_partitions() {
        match partition.compact(now_ms, dedupe_buffer_bytes) {
            Ok(Some(outcome)) if outcome.segments_rewritten > 0 => {
                tracing::info!(
                    topic = %partition.topic,
                    partition = partition.index,
                    segments = outcome.segments_rewritten,
                    bytes_before = outcome.bytes_before,
                    bytes_after = outcome.bytes_after,
                    records_removed = outcome.records_removed,
                    "compacted"
                );
                rewritten += outcome.segments_rewritten;
            }
            Ok(_) => {}
            Err(error) => tracing::error!(
                topic = %partition.topic, partition = partition.index, %error,
                "compaction failed"
            ),
        }
    }
    if rewritten > 0 {
        if let Err(error) = broker.replicas.write_cleaner_checkpoint() {
            tracing::error!(%error, "writing cleaner-offset-checkpoint failed");
        }
    }
}
