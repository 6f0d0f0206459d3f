//! Group commit: one thread fsyncs every partition with pending appends, then advances their
//! high watermarks, which answers the producers waiting on them.
//!
//! A pass's partitions are shared by the flusher thread and a crew of threads started with it
//! (at most [`FSYNC_THREADS_MAX`] at once, none created per pass). For each, the thread that
//! takes it writes out its direct tail and plans its fsync under the partition's lock
//! (`PartitionLog::prepare_flush`: the `O_DIRECT` write happens here, so one segment's writes
//! stay in order) and fsyncs with no lock held. The flusher marks the pass's partitions flushed
//! once all are done: a produce request usually spans every partition of a pass, so marking
//! each at once would only wake its waiting response once per partition instead of once.
//!
//! Durable mode (`log.flush.interval.messages=1`, the default): an append queues its partition
//! and wakes the flusher at once. A pass takes the whole queue, plans each partition's fsync
//! under its lock, runs the fsyncs concurrently with no lock held, then marks the partitions
//! flushed.
//! Appends that arrive during a pass wait for the next one, which starts as soon as this one
//! ends: the commit window is the length of one pass (a few ms on a disk that honours fsync),
//! shared by all partitions, and no appender ever waits for a timer.
//!
//! With `log.flush.syncfs=true` ([`crate::filesystem_sync`]) the crew only writes each
//! partition's appends out; the flusher then calls `syncfs` once per log directory and marks a
//! partition durable when its directory's call succeeded: one journal commit and cache flush
//! per pass instead of one per partition.
//!
//! Otherwise: a partition is flushed once `log.flush.interval.messages` messages are pending,
//! and every queued partition at least every `log.flush.interval.ms`; producers do not wait.
//!
//! Invariant: a partition is in the queue at most once (`Partition::flush_queued`). The flag is
//! cleared before its flush is planned, so an append racing with the pass queues it again and
//! is never missed; an extra pass over a clean partition finds nothing to do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use runnel_log::FlushTarget;

use crate::config::FlushPolicy;
use crate::partition::Partition;

/// Threads that flush partitions at once in one pass (the flusher's own and its crew's);
/// devices with queues (SSDs, virtio) complete fsyncs in parallel, so a pass costs about one
/// fsync rather than one per partition.
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
    /// Bumped when a pass has written a led partition's direct tail to its file (before its
    /// fsync): the followers' fetches parked on the leader wait on it, as they read only what
    /// the file holds. Without it they slept until the next append anywhere, or their whole
    /// `max_wait_ms` when the producers were all waiting on them.
    written_out: watch::Sender<u64>,
    /// fsync latencies and failures, for `/metrics`.
    pub figures: Arc<FlushFigures>,
    crew: Arc<Crew>,
    crew_threads: Mutex<Vec<JoinHandle<()>>>,
}

/// What the flusher's fsyncs took and how many failed.
#[derive(Default)]
pub struct FlushFigures {
    /// One partition's fsync (its segment's `fdatasync`, and the directory's after a roll).
    pub fsync: crate::metrics::Histogram,
    pub errors: std::sync::atomic::AtomicU64,
    /// `syncfs` calls (`log.flush.syncfs`), one per log directory per pass.
    pub syncfs_calls: std::sync::atomic::AtomicU64,
}

impl Flusher {
    /// Starts the flusher thread.
    pub fn start(
        policy: FlushPolicy,
        data_changed: watch::Sender<u64>,
        written_out: watch::Sender<u64>,
    ) -> std::io::Result<(Arc<Flusher>, JoinHandle<()>)> {
        let (crew, crew_threads) = Crew::start(FSYNC_THREADS_MAX - 1)?;
        let flusher = Arc::new(Flusher {
            policy,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            data_changed,
            written_out,
            figures: Arc::default(),
            crew,
            crew_threads: Mutex::new(crew_threads),
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
                self.flush_pass(partitions);
            }
            if shutdown {
                self.crew.stop();
                let threads =
                    std::mem::take(&mut *self.crew_threads.lock().expect("crew lock poisoned"));
                for thread in threads {
                    if thread.join().is_err() {
                        tracing::error!("a flush thread panicked");
                    }
                }
                return;
            }
        }
    }

    fn flush_pass(&self, partitions: Vec<Arc<Partition>>) {
        let durable = self.policy.is_durable();
        let pass = Arc::new(Pass::new(
            partitions,
            self.policy.sync_filesystem,
            Arc::clone(&self.figures),
            self.written_out.clone(),
        ));
        self.crew.run(&pass);
        let mut advanced = false;
        let mut failed = false;
        let mut outcomes = pass.outcomes.lock().expect("flush pass lock poisoned");
        if self.policy.sync_filesystem {
            self.sync_filesystems(&pass.partitions, &mut outcomes);
        }
        for (partition, outcome) in pass.partitions.iter().zip(outcomes.iter()) {
            match outcome {
                Some(Outcome::Durable(up_to)) => {
                    partition.mark_flushed(*up_to, durable);
                    advanced = true;
                }
                Some(Outcome::Clean) | None => {}
                Some(Outcome::WrittenOut(_)) => {
                    unreachable!("sync_filesystems settles every written-out partition")
                }
                Some(Outcome::Failed) if partition.is_offline() => {}
                Some(Outcome::Failed) => {
                    // The data may not be on disk: the high watermark must not pass it. Queue
                    // the partition again; producers waiting on it time out if this persists.
                    self.appended(partition, 0);
                    self.figures.errors.fetch_add(1, Ordering::Relaxed);
                    failed = true;
                }
            }
        }
        drop(outcomes);
        if advanced {
            self.data_changed
                .send_modify(|version| *version = version.wrapping_add(1));
        }
        if failed {
            // Back off before retrying a failing disk rather than spinning on it.
            std::thread::sleep(FSYNC_RETRY_BACKOFF);
        }
    }

    /// `log.flush.syncfs`: one `syncfs` per log directory of the partitions the crew wrote
    /// out; each becomes durable, or failed, with its directory's call.
    fn sync_filesystems(&self, partitions: &[Arc<Partition>], outcomes: &mut [Option<Outcome>]) {
        let written: Vec<usize> = (0..outcomes.len())
            .filter(|&index| matches!(outcomes[index], Some(Outcome::WrittenOut(_))))
            .collect();
        if written.is_empty() {
            return;
        }
        let dirs: Vec<&std::path::Path> = written
            .iter()
            .map(|&index| match &outcomes[index] {
                Some(Outcome::WrittenOut(target)) => target.dir.as_path(),
                _ => unreachable!("filtered above"),
            })
            .collect();
        let started = std::time::Instant::now();
        let (synced, calls) = crate::filesystem_sync::sync_log_dirs_of(&dirs);
        self.figures.fsync.observe(started.elapsed());
        self.figures
            .syncfs_calls
            .fetch_add(calls as u64, Ordering::Relaxed);
        for (&index, result) in written.iter().zip(synced) {
            let Some(Outcome::WrittenOut(target)) = outcomes[index].take() else {
                unreachable!("filtered above");
            };
            outcomes[index] = Some(match result {
                Ok(()) => Outcome::Durable(target.up_to),
                Err(error) => {
                    report_failure(&partitions[index], "syncfs failed", &error);
                    Outcome::Failed
                }
            });
        }
    }
}

/// What became of one partition in a pass.
enum Outcome {
    /// Nothing was left to make durable.
    Clean,
    /// Durable below this offset.
    Durable(i64),
    /// Written out, waiting for the pass's `syncfs` (`log.flush.syncfs`).
    WrittenOut(FlushTarget),
    /// Writing out or syncing failed (reported); the high watermark stays.
    Failed,
}

/// One pass: its partitions, taken one at a time by whichever thread of the crew is free, and
/// what became of each.
struct Pass {
    partitions: Vec<Arc<Partition>>,
    /// `log.flush.syncfs`: write out only; the flusher syncs the filesystems after.
    write_out_only: bool,
    next: AtomicUsize,
    outcomes: Mutex<Vec<Option<Outcome>>>,
    remaining: Mutex<usize>,
    finished: Condvar,
    figures: Arc<FlushFigures>,
    written_out: watch::Sender<u64>,
}

impl Pass {
    fn new(
        partitions: Vec<Arc<Partition>>,
        write_out_only: bool,
        figures: Arc<FlushFigures>,
        written_out: watch::Sender<u64>,
    ) -> Pass {
        let count = partitions.len();
        Pass {
            partitions,
            write_out_only,
            next: AtomicUsize::new(0),
            outcomes: Mutex::new((0..count).map(|_| None).collect()),
            remaining: Mutex::new(count),
            finished: Condvar::new(),
            figures,
            written_out,
        }
    }

    /// Flushes partitions of the pass until none is left untaken.
    fn work(&self) {
        loop {
            let index = self.next.fetch_add(1, Ordering::AcqRel);
            let Some(partition) = self.partitions.get(index) else {
                return;
            };
            let outcome = flush_partition(
                partition,
                self.write_out_only,
                &self.figures,
                &self.written_out,
            );
            self.outcomes.lock().expect("flush pass lock poisoned")[index] = Some(outcome);
            let mut remaining = self.remaining.lock().expect("flush pass lock poisoned");
            *remaining -= 1;
            if *remaining == 0 {
                self.finished.notify_all();
            }
        }
    }

    fn wait(&self) {
        let mut remaining = self.remaining.lock().expect("flush pass lock poisoned");
        while *remaining > 0 {
            remaining = self
                .finished
                .wait(remaining)
                .expect("flush pass lock poisoned");
        }
    }
}

/// One partition's flush: write out its direct tail and take what to fsync (under its lock),
/// then fsync (without it), unless `write_out_only`, when the pass's `syncfs` does that. A
/// partition led here with followers wakes their parked fetches (`written_out`) once its
/// tail is in the file, so they copy it while this broker fsyncs its own.
fn flush_partition(
    partition: &Arc<Partition>,
    write_out_only: bool,
    figures: &FlushFigures,
    written_out: &watch::Sender<u64>,
) -> Outcome {
    partition.flush_queued.store(false, Ordering::Release);
    partition.unflushed_messages.store(0, Ordering::Relaxed);
    let target = match partition.flush_target() {
        Ok(Some(target)) => target,
        Ok(None) => return Outcome::Clean,
        Err(error) => {
            report_failure(partition, "writing appends to the log file failed", &error);
            return Outcome::Failed;
        }
    };
    if partition.is_led_here() && partition.has_followers() {
        written_out.send_modify(|version| *version = version.wrapping_add(1));
    }
    if write_out_only {
        return Outcome::WrittenOut(target);
    }
    let started = std::time::Instant::now();
    let synced = target.sync();
    figures.fsync.observe(started.elapsed());
    match synced {
        Ok(()) => Outcome::Durable(target.up_to),
        Err(error) => {
            report_failure(partition, "fsync failed", &error);
            Outcome::Failed
        }
    }
}

fn report_failure(partition: &Partition, what: &str, error: &dyn std::fmt::Display) {
    if partition.is_offline() {
        tracing::debug!(topic = %partition.topic, partition = partition.index,
            %error, "{what} on an offline log directory");
    } else {
        tracing::error!(topic = %partition.topic, partition = partition.index, %error,
            "{what}; the partition's high watermark stays where it was");
    }
}

/// The threads that run a pass's flushes besides the flusher's own: started once, so a pass
/// creates no thread (creating them per pass was 5% of broker CPU under load).
struct Crew {
    state: Mutex<CrewState>,
    wake: Condvar,
}

#[derive(Default)]
struct CrewState {
    pass: Option<Arc<Pass>>,
    /// Bumped for every pass handed out, so a thread takes each pass at most once.
    generation: u64,
    shutdown: bool,
}

impl Crew {
    fn start(threads: usize) -> std::io::Result<(Arc<Crew>, Vec<JoinHandle<()>>)> {
        let crew = Arc::new(Crew {
            state: Mutex::new(CrewState::default()),
            wake: Condvar::new(),
        });
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let member = Arc::clone(&crew);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("runnel-fsync-{index}"))
                    .spawn(move || member.serve())?,
            );
        }
        Ok((crew, handles))
    }

    fn serve(&self) {
        let mut seen = 0;
        loop {
            let pass = {
                let mut state = self.state.lock().expect("flush crew lock poisoned");
                while state.generation == seen && !state.shutdown {
                    state = self.wake.wait(state).expect("flush crew lock poisoned");
                }
                if state.shutdown {
                    return;
                }
                seen = state.generation;
                state.pass.clone()
            };
            if let Some(pass) = pass {
                pass.work();
            }
        }
    }

    /// Runs `pass` on the calling thread and as many crew threads as it has partitions beyond
    /// the first; returns once every partition is done.
    fn run(&self, pass: &Arc<Pass>) {
        let helpers = pass.partitions.len().saturating_sub(1);
        if helpers > 0 {
            let mut state = self.state.lock().expect("flush crew lock poisoned");
            state.pass = Some(Arc::clone(pass));
            state.generation += 1;
            drop(state);
            if helpers >= FSYNC_THREADS_MAX - 1 {
                self.wake.notify_all();
            } else {
                for _ in 0..helpers {
                    self.wake.notify_one();
                }
            }
        }
        pass.work();
        pass.wait();
        self.state.lock().expect("flush crew lock poisoned").pass = None;
    }

    fn stop(&self) {
        self.state
            .lock()
            .expect("flush crew lock poisoned")
            .shutdown = true;
        self.wake.notify_all();
    }
}
