//! Group commit: one thread fsyncs every partition with pending appends, then advances their
//! high watermarks, which answers the producers waiting on them.
//!
//! Durable mode (`log.flush.interval.messages=1`, the default): an append queues its partition
//! and wakes the flusher at once. A pass takes the whole queue, plans each partition's fsync
//! under its lock, runs the fsyncs concurrently with no lock held, then marks the partitions
//! flushed.
//! Appends that arrive during a pass wait for the next one, which starts as soon as this one
//! ends: the commit window is the length of one pass (a few ms on a disk that honours fsync),
//! shared by all partitions, and no appender ever waits for a timer.
//!
//! Otherwise: a partition is flushed once `log.flush.interval.messages` messages are pending,
//! and every queued partition at least every `log.flush.interval.ms`; producers do not wait.
//!
//! Invariant: a partition is in the queue at most once (`Partition::flush_queued`). The flag is
//! cleared before its flush is planned, so an append racing with the pass queues it again and
//! is never missed; an extra pass over a clean partition finds nothing to do.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use runnel_log::FlushTarget;

use crate::config::FlushPolicy;
use crate::partition::Partition;

/// fsyncs run at once in one pass; devices with queues (SSDs, virtio) complete them in
/// parallel, so a pass costs about one fsync rather than one per partition.
const FSYNC_THREADS_MAX: usize = 8;

/// Pause after a failed fsync before the partition is tried again.
const FSYNC_RETRY_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Queue {
    partitions: Vec<Arc<Partition>>,
    /// Set when some queued partition crossed `log.flush.interval.messages`.
    urgent: bool,
    shutdown: bool,
}

/// The flusher's shared half: what appenders call.
pub struct Flusher {
    policy: FlushPolicy,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Bumped after every pass that advanced a high watermark; fetches wait on it.
    data_changed: watch::Sender<u64>,
    /// fsync latencies and failures, for `/metrics`.
    pub figures: FlushFigures,
}

/// What the flusher's fsyncs took and how many failed.
#[derive(Default)]
pub struct FlushFigures {
    /// One partition's fsync (its segment's `fdatasync`, and the directory's after a roll).
    pub fsync: crate::metrics::Histogram,
    pub errors: std::sync::atomic::AtomicU64,
}

impl Flusher {
    /// Starts the flusher thread.
    pub fn start(
        policy: FlushPolicy,
        data_changed: watch::Sender<u64>,
    ) -> std::io::Result<(Arc<Flusher>, JoinHandle<()>)> {
        let flusher = Arc::new(Flusher {
            policy,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            data_changed,
            figures: FlushFigures::default(),
        });
        let runner = Arc::clone(&flusher);
        let handle = std::thread::Builder::new()
            .name("runnel-flusher".into())
            .spawn(move || runner.run())?;
        Ok((flusher, handle))
    }

    /// Notes `messages` new messages in `partition`, queueing it for the next pass.
    pub fn appended(&self, partition: &Arc<Partition>, messages: u64) {
        let pending = partition.note_appended_messages(messages);
        let durable = self.policy.is_durable();
        let urgent = durable || pending >= self.policy.interval_messages;
        let first = !partition.flush_queued.swap(true, Ordering::AcqRel);
        if !first && !urgent {
            return;
        }
        let mut queue = self.queue.lock().expect("flush queue lock poisoned");
        if first {
            queue.partitions.push(Arc::clone(partition));
        }
        if urgent {
            queue.urgent = true;
            self.wake.notify_one();
        }
    }

    /// Asks the thread to run a last pass and exit.
    pub fn shutdown(&self) {
        let mut queue = self.queue.lock().expect("flush queue lock poisoned");
        queue.shutdown = true;
        self.wake.notify_one();
    }

    fn run(&self) {
        let interval = Duration::from_millis(self.policy.interval_ms);
        loop {
            let (partitions, shutdown) = {
                let mut queue = self.queue.lock().expect("flush queue lock poisoned");
                while !queue.urgent && !queue.shutdown {
                    let (guard, timeout) = self
                        .wake
                        .wait_timeout(queue, interval)
                        .expect("flush queue lock poisoned");
                    queue = guard;
                    if timeout.timed_out() {
                        break;
                    }
                }
                queue.urgent = false;
                (std::mem::take(&mut queue.partitions), queue.shutdown)
            };
            if !partitions.is_empty() {
                self.flush_pass(&partitions);
            }
            if shutdown {
                return;
            }
        }
    }

    fn flush_pass(&self, partitions: &[Arc<Partition>]) {
        let durable = self.policy.is_durable();
        let mut planned = Vec::with_capacity(partitions.len());
        for partition in partitions {
            partition.flush_queued.store(false, Ordering::Release);
            partition.unflushed_messages.store(0, Ordering::Relaxed);
            if let Some(target) = partition.flush_target() {
                planned.push((partition, target));
            }
        }
        let results = sync_all(&planned, &self.figures.fsync);
        let mut advanced = false;
        let mut failed = false;
        for ((partition, target), result) in planned.iter().zip(results) {
            match result {
                Ok(()) => {
                    partition.mark_flushed(target.up_to, durable);
                    advanced = true;
                }
                Err(error) if partition.is_offline() => {
                    tracing::debug!(topic = %partition.topic, partition = partition.index,
                        %error, "fsync failed on an offline log directory");
                }
                Err(error) => {
                    // The data may not be on disk: the high watermark must not pass it. Queue
                    // the partition again; producers waiting on it time out if this persists.
                    tracing::error!(
                        topic = %partition.topic, partition = partition.index, %error,
                        "fsync failed; the partition's high watermark stays where it was"
                    );
                    self.appended(partition, 0);
                    self.figures.errors.fetch_add(1, Ordering::Relaxed);
                    failed = true;
                }
            }
        }
        if advanced {
            self.data_changed
                .send_modify(|version| *version = version.wrapping_add(1));
        }
        if failed {
            // Back off before retrying a failing disk rather than spinning on it.
            std::thread::sleep(FSYNC_RETRY_BACKOFF);
        }
    }
}

/// Runs every planned fsync, spread over up to [`FSYNC_THREADS_MAX`] threads, and returns
/// their results in the plan's order.
fn sync_all(
    planned: &[(&Arc<Partition>, FlushTarget)],
    latency: &crate::metrics::Histogram,
) -> Vec<std::io::Result<()>> {
    let timed = |target: &FlushTarget| {
        let started = std::time::Instant::now();
        let result = target.sync();
        latency.observe(started.elapsed());
        result
    };
    if planned.len() <= 1 {
        return planned.iter().map(|(_, target)| timed(target)).collect();
    }
    let threads = planned.len().min(FSYNC_THREADS_MAX);
    let chunk = planned.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = planned
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(_, target)| timed(target))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(results) => results,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}
