//! The scrubber task: re-verifies the CRCs of every partition's sealed segments below the
//! recovery point at `log.scrub.bytes.per.second` (0 = off), one pass after another with
//! `log.scrub.interval.ms` between passes, and records what it finds as damaged ranges
//! (`runnel_log::scrub` and the log's `damage.rs`): an ERROR line with the offsets, the
//! `runnel_partition_damaged_*` gauges, and fetches refused with `CORRUPT_MESSAGE`.
//!
//! Segment files are read through the open-files cache (`runnel_log::scrub`): the task holds
//! no descriptor of its own between steps.
//!
//! Invariants: the partition's lock is held only to take copies of the segments to verify and
//! to record a finding, never while reading; each read is at most [`SCRUB_STEP_BYTES_MAX`]
//! bytes (plus one batch) on a blocking thread, followed by a pause that keeps the average at
//! the configured rate.

use std::sync::Arc;
use std::time::Duration;

use runnel_log::scrub::{scrub_step, ScrubCursor, ScrubStep};
use runnel_log::Segment;

use crate::broker::Broker;
use crate::partition::Partition;

/// Most bytes one scrub step reads before pausing.
pub const SCRUB_STEP_BYTES_MAX: u64 = 1024 * 1024;

/// Runs scrub passes until the task is aborted at shutdown.
pub(crate) async fn scrub_loop(broker: Arc<Broker>) {
    let rate = broker.config.scrub_bytes_per_second;
    if rate == 0 {
        return;
    }
    let pause = Duration::from_millis(broker.config.scrub_interval_ms);
    loop {
        for partition in broker.replicas.all_partitions() {
            for segment in partition.scrub_candidates() {
                scrub_segment(&partition, segment, rate).await;
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// Verifies one segment copy at `rate` bytes per second and records damage it finds.
async fn scrub_segment(partition: &Arc<Partition>, segment: Segment, rate: u64) {
    let step_bytes = rate.clamp(1, SCRUB_STEP_BYTES_MAX);
    let segment = Arc::new(segment);
    let mut cursor = ScrubCursor::start(&segment);
    loop {
        let copy = Arc::clone(&segment);
        let step = tokio::task::spawn_blocking(move || {
            let step = scrub_step(&copy, &mut cursor, step_bytes);
            (cursor, step)
        })
        .await;
        let (next, step) = match step {
            Ok(done) => done,
            Err(error) => {
                tracing::error!(%error, "scrub step failed");
                return;
            }
        };
        cursor = next;
        let bytes_read = match step {
            Ok(ScrubStep::Continue { bytes_read }) => bytes_read,
            Ok(ScrubStep::Done { .. } | ScrubStep::Gone) => return,
            Ok(ScrubStep::Damaged { range, .. }) => {
                if let Err(error) = partition.record_damage(range, segment.next_offset()) {
                    tracing::error!(
                        topic = %partition.topic, partition = partition.index, %error,
                        "recording damage the scrubber found failed"
                    );
                }
                return;
            }
            Err(error) => {
                // An I/O error reading a segment: the disk itself is failing.
                tracing::error!(
                    topic = %partition.topic, partition = partition.index, %error,
                    "scrubbing a segment failed"
                );
                return;
            }
        };
        tokio::time::sleep(Duration::from_secs_f64(bytes_read as f64 / rate as f64)).await;
    }
}
