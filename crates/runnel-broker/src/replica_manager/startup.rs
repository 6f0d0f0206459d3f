//! Opening every hosted partition at start and closing them all at shutdown, on a bounded
//! pool of threads, and the log directories' clean-shutdown markers
//! (`.kafka_cleanshutdown`, `runnel_log::clean_shutdown`).
//!
//! # Start
//! 1. [`take_clean_shutdown_markers`]: each online log directory's marker is read, removed and
//!    the removal fsynced, before anything in the directory is written.
//! 2. [`ReplicaManager::open_all_at`]: where each partition lives is decided in one pass over
//!    the metadata image (placement of new ones counts the ones before); then the partitions
//!    are opened (recovered) by up to [`open_close_threads`] threads, each at its checkpointed
//!    recovery point and log start offset and with its directory's [`LastShutdown`]; then each
//!    topic is hosted whole. A partition whose directory fails to open while other directories
//!    are healthy goes offline with its directory (Kafka's `LogManager.loadLogs`).
//!
//! # Shutdown
//! [`ReplicaManager::shutdown`] stops the flusher after its last pass, closes every partition
//! (seal, fsync, producer snapshot) on the same bounded pool, writes the checkpoints, and only
//! then writes the marker of each directory where every partition closed and both checkpoint
//! files were written. A directory with a partition still in use (flushed, not closed), an
//! error, or offline gets no marker: its next start recovers as after a crash.
//!
//! # Threads
//! Opening and closing are file-system work (directory listings, index reads, a bounded CRC
//! scan, a few fsyncs), so they overlap well beyond the core count: `available_parallelism × 2`,
//! at most [`OPEN_CLOSE_THREADS_MAX`]. The threads are scoped to the call; none outlives it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use runnel_log::clean_shutdown::{self, LastShutdown};
use runnel_log::{partition_dir_name, LogError};
use runnel_metadata::{PartitionImage, TopicImage};

use super::{DirCheckpoints, OpenTopicError, ReplicaManager, RECOVERY_POINT_CHECKPOINT};
use crate::config::TopicSettings;
use crate::log_dirs::{self, LogDir};
use crate::partition::Partition;
use crate::partition_metadata;

/// The most threads opening or closing partitions at once.
pub const OPEN_CLOSE_THREADS_MAX: usize = 16;

/// Threads for opening or closing partitions: twice the cores, at most
/// [`OPEN_CLOSE_THREADS_MAX`].
pub fn open_close_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |cores| cores.get() * 2)
        .clamp(1, OPEN_CLOSE_THREADS_MAX)
}

/// How the last process using each online log directory ended (by absolute path), its marker
/// taken (see the module doc). A directory whose marker cannot be read or removed is unclean;
/// it goes offline unless it is the only directory, whose error stops the start.
pub fn take_clean_shutdown_markers(
    dirs: &[Arc<LogDir>],
) -> Result<HashMap<PathBuf, LastShutdown>, LogError> {
    let mut last = HashMap::new();
    for dir in dirs.iter().filter(|dir| dir.is_online()) {
        match clean_shutdown::take_marker(&dir.path) {
            Ok(shutdown) => {
                tracing::info!(dir = %dir.path.display(), last_shutdown = ?shutdown,
                    "log directory's last shutdown");
                last.insert(dir.absolute(), shutdown);
            }
            Err(error) if dirs.len() > 1 => dir.fail(&error),
            Err(error) => return Err(error),
        }
    }
    Ok(last)
}

/// One partition to open, as placed by [`ReplicaManager::open_all_at`]'s first pass.
struct ToOpen<'a> {
    topic: &'a TopicImage,
    image: &'a PartitionImage,
    settings: &'a TopicSettings,
    dir: Arc<LogDir>,
    /// Recovery point and log start offset from the directory's checkpoints.
    offsets: (i64, i64),
    last_shutdown: LastShutdown,
}

/// A topic's partitions by index while opening: `None` for one recorded offline.
struct TopicSlots<'a> {
    topic: &'a TopicImage,
    /// Index into the list of partitions to open, or `None` (offline).
    slots: Vec<Option<usize>>,
}

impl ReplicaManager {
    /// Opens (recovering) every partition of `topics` at start, in parallel (see the module
    /// doc). On an error that stops the start, returns the topic it happened in.
    pub fn open_all_at<'a>(
        &self,
        topics: impl IntoIterator<Item = &'a TopicImage>,
        recovery_points: &DirCheckpoints,
        log_start_offsets: &DirCheckpoints,
        last_shutdown: &HashMap<PathBuf, LastShutdown>,
    ) -> Result<(), (String, OpenTopicError)> {
        let topics: Vec<&TopicImage> = topics.into_iter().collect();
        let mut settings = Vec::with_capacity(topics.len());
        for topic in &topics {
            let resolved = TopicSettings::resolve(&self.live_config(), &topic.configs)
                .map_err(|error| (topic.name.clone(), error.into()))?;
            settings.push(resolved);
        }
        let mut to_open = Vec::new();
        let mut placed = Vec::with_capacity(topics.len());
        let mut hosted = self.hosted_per_dir();
        for (topic, settings) in topics.iter().zip(&settings) {
            let mut slots = Vec::with_capacity(topic.partitions.len());
            for image in &topic.partitions {
                // Another broker's partition: nothing of it is kept here.
                if !image.is_replica(self.config.node_id) {
                    slots.push(None);
                    continue;
                }
                let Some(dir) = self
                    .place_at_start(topic, image, &mut hosted)
                    .map_err(|error| (topic.name.clone(), error))?
                else {
                    slots.push(None);
                    continue;
                };
                let absolute = dir.absolute();
                let key = (topic.name.clone(), image.partition);
                let checkpointed = |offsets: &DirCheckpoints| {
                    offsets
                        .get(&absolute)
                        .and_then(|offsets| offsets.get(&key))
                        .copied()
                        .unwrap_or(0)
                };
                slots.push(Some(to_open.len()));
                to_open.push(ToOpen {
                    topic,
                    image,
                    settings,
                    offsets: (
                        checkpointed(recovery_points),
                        checkpointed(log_start_offsets),
                    ),
                    last_shutdown: last_shutdown
                        .get(&absolute)
                        .copied()
                        .unwrap_or(LastShutdown::Unclean),
                    dir,
                });
            }
            placed.push(TopicSlots { topic, slots });
        }
        let started = std::time::Instant::now();
        let threads = open_close_threads();
        let mut opened: Vec<Option<Result<Arc<Partition>, OpenTopicError>>> =
            run_bounded(&to_open, threads, |p| {
                self.open_partition(
                    p.topic,
                    p.image,
                    p.settings,
                    &p.dir,
                    p.offsets,
                    partition_metadata::Sync::Now,
                    p.last_shutdown,
                )
            })
            .into_iter()
            .map(Some)
            .collect();
        tracing::info!(
            partitions = to_open.len(),
            threads,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened the hosted partitions"
        );
        for TopicSlots { topic, slots } in placed {
            let mut partitions = Vec::with_capacity(slots.len());
            for slot in slots {
                let Some(i) = slot else {
                    partitions.push(None);
                    continue;
                };
                let result = opened[i].take().expect("each partition is opened once");
                match result {
                    Ok(partition) => partitions.push(Some(partition)),
                    Err(OpenTopicError::Log(error)) if self.log_dirs.len() > 1 => {
                        // One directory's failure must not stop the broker (Kafka's
                        // `LogManager.loadLogs` takes the directory offline).
                        to_open[i].dir.fail(&error);
                        self.offline_partitions
                            .write()
                            .expect("offline partitions lock poisoned")
                            .insert((topic.name.clone(), to_open[i].image.partition));
                        partitions.push(None);
                    }
                    Err(error) => return Err((topic.name.clone(), error)),
                }
            }
            self.topics
                .write()
                .expect("topics lock poisoned")
                .insert(topic.name.clone(), partitions.into());
        }
        Ok(())
    }

    /// The log directory a partition named by the image is opened in at start: the one that
    /// holds it, or where [`log_dirs::choose_for_new`] puts a new one (counted in `hosted`).
    /// `None` when it may live in an offline directory: it is recorded offline.
    fn place_at_start(
        &self,
        topic: &TopicImage,
        image: &PartitionImage,
        hosted: &mut HashMap<PathBuf, usize>,
    ) -> Result<Option<Arc<LogDir>>, OpenTopicError> {
        let name = partition_dir_name(&topic.name, image.partition);
        let dir = match log_dirs::locate(&self.log_dirs, &name) {
            log_dirs::Located::In(dir) => dir,
            log_dirs::Located::Nowhere => log_dirs::choose_for_new(&self.log_dirs, hosted)
                .ok_or(OpenTopicError::NoOnlineLogDir)?,
            log_dirs::Located::Unknown => {
                tracing::error!(partition = %name,
                    "partition not found in any online log directory while one is offline: offline");
                self.offline_partitions
                    .write()
                    .expect("offline partitions lock poisoned")
                    .insert((topic.name.clone(), image.partition));
                return Ok(None);
            }
            log_dirs::Located::Duplicate(dirs) => {
                return Err(OpenTopicError::DuplicateDirs { dirs })
            }
        };
        *hosted.entry(dir.absolute()).or_insert(0) += 1;
        Ok(Some(dir))
    }

    /// Stops the flusher after a last pass, closes every log (in parallel), writes the
    /// checkpoints, then the clean-shutdown marker of each directory that closed cleanly.
    /// Partitions of offline log directories are left as they are.
    pub fn shutdown(&self) -> Result<(), LogError> {
        self.flusher.shutdown();
        if let Some(thread) = self
            .flusher_thread
            .lock()
            .expect("flusher lock poisoned")
            .take()
        {
            if thread.join().is_err() {
                tracing::error!("the flusher thread panicked");
            }
        }
        let topics = std::mem::take(&mut *self.topics.write().expect("topics lock poisoned"));
        let partitions: Vec<Mutex<Option<Arc<Partition>>>> = topics
            .into_values()
            .flat_map(|partitions| partitions.to_vec())
            .flatten()
            .filter(|partition| !partition.is_offline())
            .map(|partition| Mutex::new(Some(partition)))
            .collect();
        let started = std::time::Instant::now();
        let durable = self.is_durable();
        let closed = run_bounded(&partitions, open_close_threads(), |slot| {
            let partition = slot
                .lock()
                .expect("shutdown slot lock poisoned")
                .take()
                .expect("each partition is closed once");
            let dir = partition.log_dir().absolute();
            let key = (partition.topic.to_string(), partition.index);
            (
                dir,
                key,
                super::checkpoints::close_at_shutdown(partition, durable),
            )
        });
        tracing::info!(
            partitions = partitions.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "closed the hosted partitions"
        );
        let mut recovery_points = DirCheckpoints::new();
        let mut log_starts = DirCheckpoints::new();
        let mut unclean_dirs = std::collections::HashSet::new();
        let mut first_error = None;
        for (dir, key, result) in closed {
            match result {
                Ok(closed) => {
                    if !closed.closed {
                        unclean_dirs.insert(dir.clone());
                    }
                    recovery_points
                        .entry(dir.clone())
                        .or_default()
                        .insert(key.clone(), closed.recovery_point);
                    log_starts
                        .entry(dir)
                        .or_default()
                        .insert(key, closed.log_start_offset);
                }
                Err(error) => {
                    tracing::error!(dir = %dir.display(), topic = %key.0, partition = key.1,
                        %error, "closing a partition at shutdown failed");
                    unclean_dirs.insert(dir);
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        let _writer = self
            .checkpoint_writer
            .lock()
            .expect("checkpoint writer lock poisoned");
        self.write_checkpoint_files(&recovery_points, &log_starts)?;
        for dir in self.log_dirs.iter().filter(|dir| dir.is_online()) {
            if unclean_dirs.contains(&dir.absolute()) {
                continue;
            }
            // The checkpoints of this directory were just written (an offline one is skipped).
            debug_assert!(dir.path.join(RECOVERY_POINT_CHECKPOINT).exists());
            clean_shutdown::write_marker(&dir.path)?;
        }
        Ok(())
    }
}

/// Runs `f` on every item with up to `threads` threads (this one among them); the results
/// are in the items' order. A thread that cannot be started leaves its share to the others.
fn run_bounded<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut all: Vec<(usize, R)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.min(items.len()))
            .filter_map(|n| {
                std::thread::Builder::new()
                    .name(format!("runnel-partitions-{n}"))
                    .spawn_scoped(scope, work)
                    .map_err(|error| tracing::warn!(%error, "starting an open/close thread"))
                    .ok()
            })
            .collect();
        let mut all = work();
        for helper in helpers {
            match helper.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    all.sort_unstable_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, result)| result).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_bounded_keeps_the_order_and_runs_each_item_once() {
        let items: Vec<usize> = (0..1000).collect();
        let calls = AtomicUsize::new(0);
        let results = run_bounded(&items, 8, |&i| {
            calls.fetch_add(1, Ordering::Relaxed);
            i * 2
        });
        assert_eq!(calls.load(Ordering::Relaxed), 1000);
        assert_eq!(results, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
        assert!(run_bounded(&Vec::<usize>::new(), 8, |&i| i).is_empty());
        assert_eq!(run_bounded(&[7], 1, |&i| i + 1), vec![8]);
    }
}
