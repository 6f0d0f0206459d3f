//! One partition this broker hosts, as leader or follower: its log behind a short lock, its
//! replicas as this broker sees them ([`ReplicaSet`]), and its high watermark.
//!
//! Invariants:
//! - The log has one writer at a time: the `Mutex` is held only for an append, a read plan, a
//!   flush plan, a retention step, or a compaction pass's plan and swap (renames and directory
//!   fsyncs; the pass's reading, writing and file fsyncs run without it). It is never held
//!   across an `.await` or a data fsync, and reads copy bytes after releasing it.
//! - The high watermark only moves forward (a follower's truncation is the exception). On the
//!   leader it is the least that every in-sync replica holds ([`ReplicaSet::high_watermark`]):
//!   its own part is the local end, the fsync'd offset in durable mode (consumers never see a
//!   record that a crash could take back) and the log end offset otherwise. Producers with
//!   acks=1 are answered when the local end passes their batch, with acks=all when the high
//!   watermark does. On a follower it is the leader's, as far as the follower holds the log.
//! - `high_watermark` (the `watch`) always equals the log's high watermark after the lock is
//!   released; waiters subscribe to it and never poll.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use runnel_log::{
    AppendError, AppendOutcome, FlushTarget, LogError, PartitionLog, ReadError, ReadSlice,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::TopicSettings;
use crate::log_dirs::LogDir;
use crate::replication::replica_set::{NotAReplica, ReplicaSet};
use crate::zero_copy::FileRange;
use runnel_metadata::PartitionImage;

/// A partition hosted by this broker.
pub struct Partition {
    pub topic: Arc<str>,
    pub topic_id: Uuid,
    pub index: i32,
    /// The leader epoch the image gives the partition, stamped on every batch appended; it
    /// moves up when the image's does (a fencing of this broker and its return bump it, as
    /// Kafka's controller bumps a partition's leader epoch on every leader change).
    leader_epoch: AtomicI32,
    /// The topic's settings; replaced live when its configs change.
    settings: RwLock<TopicSettings>,
    log: Mutex<PartitionLog>,
    high_watermark: watch::Sender<i64>,
    /// What this broker alone holds safely: the fsync'd offset in durable mode, else the log
    /// end offset. Written under the log's lock.
    local_end: watch::Sender<i64>,
    /// Leader or follower, the replicas and the ISR; taken after the log's lock when both are.
    replica_set: Mutex<ReplicaSet>,
    /// Copies of what the produce and fetch paths ask of `replica_set` on every request,
    /// written with it: whether this broker leads, whether others hold replicas, the ISR size.
    led_here: AtomicBool,
    has_followers: AtomicBool,
    isr_len: AtomicUsize,
    /// Set while the partition sits in the flusher's queue, so it is queued once.
    pub(crate) flush_queued: AtomicBool,
    /// Messages appended since the last flush (for `log.flush.interval.messages`).
    pub(crate) unflushed_messages: AtomicU64,
    /// Set (under the log's lock) once the partition's topic is deleted.
    deleted: AtomicBool,
    /// Set while `partition.metadata` was written without an fsync (a new partition): the
    /// first append fsyncs it first (`partition_metadata.rs`, "Durability").
    metadata_file_unsynced: AtomicBool,
    /// Bytes and records produced, bytes fetched.
    pub metrics: crate::metrics::PartitionMetrics,
    /// The log directory holding the partition's directory (replaced when it moves,
    /// `replica_move.rs`); offline with it ([`crate::log_dirs`]).
    log_dir: RwLock<Arc<LogDir>>,
    /// Bumped (under the log's lock) when a move swaps the log, so that a compaction pass
    /// planned on the old log applies nothing to the new one.
    log_generation: AtomicU64,
}

/// What a read found: whole batches and the offsets a fetch response reports.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    pub records: FileRange,
    pub high_watermark: i64,
    /// Kafka's last stable offset: below it no transaction is still open.
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// read_committed: the aborted transactions (producer id, first offset) the records
    /// overlap, for the consumer to skip; `None` for read_uncommitted.
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
}

impl PartitionRead {
    fn from_slice(
        slice: ReadSlice,
        last_stable_offset: i64,
        aborted_transactions: Option<Vec<(i64, i64)>>,
    ) -> Self {
        PartitionRead {
            records: FileRange {
                file: slice.file,
                position: slice.position,
                length: slice.length,
                offsets: u64::try_from(slice.next_offset - slice.base_offset).unwrap_or(0),
            },
            high_watermark: slice.high_watermark,
            last_stable_offset,
            log_start_offset: slice.log_start_offset,
            aborted_transactions,
        }
    }
}

/// The offsets a partition reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    /// Below it every transaction is decided (committed or aborted): what read_committed
    /// consumers may read.
    pub last_stable_offset: i64,
    /// Producers with a transaction open in this partition.
    pub ongoing_transactions: usize,
}

impl Partition {
    /// The partition's current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Takes the image's leader epoch when it is above the partition's (epochs never move
    /// back); the next append starts the epoch in the log's leader-epoch cache. Returns
    /// whether it moved.
    pub fn raise_leader_epoch(&self, epoch: i32) -> bool {
        let raised = self.leader_epoch.fetch_max(epoch, Ordering::AcqRel) < epoch;
        if raised {
            self.wake_produce_waits();
        }
        raised
    }

    /// Whether this broker leads the partition at `leader_epoch`.
    pub fn leads_at(&self, leader_epoch: i32) -> bool {
        self.is_led_here() && self.leader_epoch() == leader_epoch
    }

    /// Wakes the produces waiting on the high watermark or the local end, to look at the
    /// leadership again ([`Partition::wait_for_high_watermark_above_while_leading`]).
    fn wake_produce_waits(&self) {
        self.high_watermark.send_modify(|_| {});
        self.local_end.send_modify(|_| {});
    }

    /// A partition opened on broker `node_id` as `image` places it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topic: Arc<str>,
        topic_id: Uuid,
        node_id: i32,
        image: &PartitionImage,
        settings: TopicSettings,
        mut log: PartitionLog,
        log_dir: Arc<LogDir>,
    ) -> Self {
        // What the opened log holds is this replica's own: durable here, but known committed
        // only for a partition of one replica. With several, nothing is until the in-sync
        // replicas say so (a leader that restarts before it is fenced holds records it never
        // replicated, and a high watermark at its log end showed them to consumers and
        // answered retried produces of them at once). Kafka's replica without a high-watermark
        // checkpoint starts at its log start offset the same way; the leader's high watermark
        // then follows its followers' fetches, a follower's its leader's.
        let local_end = log.log_end_offset();
        if image.replicas.len() > 1 {
            let log_start_offset = log.log_start_offset();
            log.set_high_watermark(log_start_offset);
        }
        let (high_watermark, _) = watch::channel(log.high_watermark());
        let (local_end, _) = watch::channel(local_end);
        let replica_set = ReplicaSet::new(node_id, image, log.log_end_offset(), crate::now_ms());
        Partition {
            topic,
            topic_id,
            index: image.partition,
            leader_epoch: AtomicI32::new(image.leader_epoch),
            settings: RwLock::new(settings),
            log: Mutex::new(log),
            high_watermark,
            local_end,
            replica_set: Mutex::new(replica_set),
            led_here: AtomicBool::new(image.leader == node_id),
            has_followers: AtomicBool::new(image.replicas.iter().any(|&id| id != node_id)),
            isr_len: AtomicUsize::new(image.isr.len()),
            flush_queued: AtomicBool::new(false),
            unflushed_messages: AtomicU64::new(0),
            deleted: AtomicBool::new(false),
            metadata_file_unsynced: AtomicBool::new(false),
            metrics: Default::default(),
            log_dir: RwLock::new(log_dir),
            log_generation: AtomicU64::new(0),
        }
    }

    /// The log directory the partition lives in.
    pub fn log_dir(&self) -> Arc<LogDir> {
        Arc::clone(
            &self
                .log_dir
                .read()
                .expect("partition log dir lock poisoned"),
        )
    }

    /// Whether the partition's log directory has failed: it is not served
    /// (`KAFKA_STORAGE_ERROR`), as Kafka's offline partitions.
    pub fn is_offline(&self) -> bool {
        !self.log_dir().is_online()
    }

    /// Replaces the log with `log`, now in `log_dir`, once a move has made `log` a complete
    /// copy (`replica_move.rs`); the caller holds `guard`, the log's lock, taken through
    /// [`Partition::lock_for_move`]. Returns the replaced log.
    pub(crate) fn swap_log(
        &self,
        guard: &mut MutexGuard<'_, PartitionLog>,
        log: PartitionLog,
        log_dir: Arc<LogDir>,
    ) -> PartitionLog {
        let replaced = std::mem::replace(&mut **guard, log);
        self.log_generation.fetch_add(1, Ordering::AcqRel);
        *self
            .log_dir
            .write()
            .expect("partition log dir lock poisoned") = log_dir;
        self.high_watermark.send_replace(guard.high_watermark());
        self.local_end
            .send_modify(|local| *local = (*local).max(guard.high_watermark()));
        replaced
    }

    /// The log's lock, held by a move across its final catch-up and swap.
    pub(crate) fn lock_for_move(&self) -> MutexGuard<'_, PartitionLog> {
        self.lock()
    }

    /// The topic's current settings.
    pub fn settings(&self) -> TopicSettings {
        self.settings
            .read()
            .expect("partition settings lock poisoned")
            .clone()
    }

    /// Applies changed topic settings to the live partition: limits at once, segment settings
    /// from the next roll.
    pub fn set_settings(&self, settings: TopicSettings) {
        self.lock().set_config(settings.log.clone());
        *self
            .settings
            .write()
            .expect("partition settings lock poisoned") = settings;
    }

    fn lock(&self) -> MutexGuard<'_, PartitionLog> {
        // A panic while holding the lock means our own state may be inconsistent: stop.
        self.log.lock().expect("partition log lock poisoned")
    }

    /// Marks `partition.metadata` as written but not yet fsynced.
    pub(crate) fn sync_metadata_file_before_append(&self) {
        self.metadata_file_unsynced.store(true, Ordering::Release);
    }

    /// Appends one validated batch. When not durable, the high watermark follows the log end.
    /// The partition's first append makes `partition.metadata` durable first (outside the
    /// lock; concurrent first appends may both fsync it, and neither writes before it is).
    pub fn append(
        &self,
        batch: &mut [u8],
        now_ms: i64,
        durable: bool,
    ) -> Result<AppendOutcome, AppendError> {
        if self.metadata_file_unsynced.load(Ordering::Acquire) {
            let dir = self.with_log(|log| log.dir().to_path_buf());
            crate::partition_metadata::sync(&dir).map_err(|source| AppendError::Io {
                op: "fsync partition.metadata in",
                path: dir.clone(),
                source,
            })?;
            self.metadata_file_unsynced.store(false, Ordering::Release);
        }
        let mut log = self.lock();
        let outcome = log.append(batch, self.leader_epoch(), now_ms)?;
        if !durable && !outcome.duplicate {
            self.local_end.send_replace(log.log_end_offset());
            self.update_high_watermark(&mut log);
        }
        Ok(outcome)
    }

    /// Appends one batch copied from the leader, as the leader wrote it
    /// ([`PartitionLog::append_replicated`]). When not durable, the local end follows the log
    /// end; the high watermark is the leader's ([`Partition::follow_high_watermark`]).
    pub fn append_replicated(
        &self,
        batch: &[u8],
        now_ms: i64,
        durable: bool,
    ) -> Result<AppendOutcome, AppendError> {
        let mut log = self.lock();
        let outcome = log.append_replicated(batch, now_ms)?;
        if !durable {
            self.local_end.send_replace(log.log_end_offset());
        }
        Ok(outcome)
    }

    fn replica_set(&self) -> MutexGuard<'_, ReplicaSet> {
        self.replica_set
            .lock()
            .expect("partition replica set lock poisoned")
    }

    /// Whether this broker leads the partition (as the last image applied says).
    pub fn is_led_here(&self) -> bool {
        self.led_here.load(Ordering::Acquire)
    }

    /// A copy of the replicas as this broker sees them.
    pub fn replica_set_view(&self) -> ReplicaSet {
        self.replica_set().clone()
    }

    /// Takes the image's leader, replicas and ISR (see [`ReplicaSet::assign`]); the high
    /// watermark follows at once if the ISR shrank. Returns whether this broker now leads the
    /// partition and did not before (or at another leader epoch).
    pub fn assign(&self, image: &PartitionImage) -> bool {
        let mut log = self.lock();
        let end = log.log_end_offset();
        let became_leader = {
            let mut set = self.replica_set();
            let became_leader = set.assign(image, end, crate::now_ms());
            self.led_here.store(set.led_here(), Ordering::Release);
            self.has_followers
                .store(set.has_followers(), Ordering::Release);
            self.isr_len.store(set.isr().len(), Ordering::Release);
            became_leader
        };
        self.update_high_watermark(&mut log);
        drop(log);
        self.wake_produce_waits();
        became_leader
    }

    /// The ISR change this leader should propose ([`ReplicaSet::propose_isr`]), as (ISR,
    /// leader epoch, partition epoch) of the image it is based on, when this broker leads and
    /// the replicas as it last assigned them agree with `placed` (the newest image) on epochs.
    /// The high watermark it is checked against and the proposal's record are taken under
    /// the partition's lock, which every move of the high watermark holds.
    pub(crate) fn propose_isr(
        &self,
        placed: &PartitionImage,
        now_ms: i64,
        lag_max_ms: i64,
        fenced: impl Fn(i32) -> bool,
    ) -> Option<(Vec<i32>, i32, i32)> {
        let log = self.lock();
        let mut set = self.replica_set();
        let (leader_epoch, partition_epoch) = set.epochs();
        // Led here at the same leader epoch: `placed` names this broker as its leader too.
        if !set.led_here()
            || placed.leader_epoch != leader_epoch
            || placed.partition_epoch != partition_epoch
        {
            return None;
        }
        let isr = set.propose_isr(now_ms, lag_max_ms, log.high_watermark(), fenced)?;
        Some((isr, leader_epoch, partition_epoch))
    }

    /// The ISR change proposed at `partition_epoch` was not made ([`ReplicaSet::proposal_failed`]).
    pub(crate) fn isr_proposal_failed(&self, partition_epoch: i32, refused: bool) {
        let mut log = self.lock();
        self.replica_set().proposal_failed(partition_epoch, refused);
        self.update_high_watermark(&mut log);
    }

    /// The number of in-sync replicas the image names.
    pub fn isr_len(&self) -> usize {
        self.isr_len.load(Ordering::Acquire)
    }

    /// Whether other brokers hold replicas of the partition.
    pub fn has_followers(&self) -> bool {
        self.has_followers.load(Ordering::Acquire)
    }

    /// Records follower `node_id`'s fetch at `fetch_offset` on the leader; returns whether
    /// the high watermark moved.
    pub fn follower_fetched(
        &self,
        node_id: i32,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<bool, NotAReplica> {
        let mut log = self.lock();
        let end = log.log_end_offset();
        self.replica_set()
            .follower_fetched(node_id, fetch_offset, end, now_ms)?;
        Ok(self.update_high_watermark(&mut log))
    }

    /// On a follower: takes the leader's high watermark, as far as this log reaches.
    pub fn follow_high_watermark(&self, leader_high_watermark: i64) {
        let mut log = self.lock();
        let target = leader_high_watermark.min(log.log_end_offset());
        if target > log.high_watermark() {
            log.set_high_watermark(target);
            self.high_watermark.send_replace(log.high_watermark());
        }
    }

    /// Moves the high watermark up to what the in-sync replicas allow (on the leader; a
    /// follower's follows the leader's). Returns whether it moved.
    fn update_high_watermark(&self, log: &mut PartitionLog) -> bool {
        let local_end = *self.local_end.borrow();
        let Some(allowed) = self.replica_set().high_watermark(local_end) else {
            return false;
        };
        let target = allowed.min(log.log_end_offset());
        if target <= log.high_watermark() {
            return false;
        }
        log.set_high_watermark(target);
        self.high_watermark.send_replace(log.high_watermark());
        true
    }

    /// The log end offset: where a follower's next fetch starts.
    pub fn log_end_offset(&self) -> i64 {
        self.lock().log_end_offset()
    }

    /// What this broker alone holds safely ([`Partition::local_end`]'s doc).
    pub fn local_end(&self) -> i64 {
        *self.local_end.borrow()
    }

    /// Removes the batches at and after `offset` (a follower's truncation to where its log
    /// and the leader's agree): the local end and high watermark move back with it.
    pub fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        let mut log = self.lock();
        log.truncate_to(offset)?;
        self.clamp_after_truncation(&log);
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (a follower whose leader's log now starts
    /// past its end).
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), LogError> {
        let mut log = self.lock();
        log.truncate_fully_and_start_at(offset)?;
        self.clamp_after_truncation(&log);
        Ok(())
    }

    fn clamp_after_truncation(&self, log: &PartitionLog) {
        let end = log.log_end_offset();
        self.local_end
            .send_modify(|local| *local = (*local).min(end));
        self.high_watermark.send_replace(log.high_watermark());
    }

    /// Reads for a follower's fetch: whole batches from `offset` up to what the file holds
    /// (not the high watermark), at most `max_bytes` but at least one batch.
    pub fn read_for_follower(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<PartitionRead, ReadError> {
        let (slice, last_stable_offset) = {
            let log = self.lock();
            let slice = log.read(offset, max_bytes, log.log_end_offset(), true)?;
            (slice, log.last_stable_offset())
        };
        Ok(PartitionRead::from_slice(slice, last_stable_offset, None))
    }

    /// Waits until the local end is at least `offset`.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future only drops a `watch` receiver.
    pub async fn wait_for_local_end_at_least(&self, offset: i64) {
        let mut receiver = self.local_end.subscribe();
        let _ = receiver.wait_for(|end| *end >= offset).await;
    }

    /// Finds whole batches from `offset`, below the high watermark (the last stable offset
    /// when `read_committed`), at most `max_bytes` unless `min_one_batch` lets the first batch
    /// through whole: the range of a segment file that holds them, read (or sent) after the
    /// lock is released. A read_committed read also names the aborted transactions it overlaps.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        read_committed: bool,
    ) -> Result<PartitionRead, ReadError> {
        let (slice, last_stable_offset, aborted_transactions) = {
            let log = self.lock();
            let last_stable_offset = log.last_stable_offset();
            if read_committed {
                let (slice, aborted) = log.read_committed(offset, max_bytes, min_one_batch)?;
                (slice, last_stable_offset, Some(aborted))
            } else {
                let slice = log.read(offset, max_bytes, log.high_watermark(), min_one_batch)?;
                (slice, last_stable_offset, None)
            }
        };
        Ok(PartitionRead::from_slice(
            slice,
            last_stable_offset,
            aborted_transactions,
        ))
    }

    pub fn offsets(&self) -> PartitionOffsets {
        let log = self.lock();
        PartitionOffsets {
            log_start_offset: log.log_start_offset(),
            high_watermark: log.high_watermark(),
            log_end_offset: log.log_end_offset(),
            last_stable_offset: log.last_stable_offset(),
            ongoing_transactions: log.ongoing_transactions().len(),
        }
    }

    /// Bytes of the partition's segment files.
    pub fn size_bytes(&self) -> u64 {
        self.lock().size_bytes()
    }

    /// Runs `f` with the log locked, for lookups that need more than offsets.
    pub fn with_log<T>(&self, f: impl FnOnce(&PartitionLog) -> T) -> T {
        f(&self.lock())
    }

    /// Writes the active segment's new index entries to its index files, then returns the
    /// recovery point and log start offset: what a recovery-point checkpoint records. The
    /// index on disk then reaches at least the recovery point recorded, which is where
    /// recovery after a crash resumes its scan. A failed index write is a WARN only (the
    /// files are a cache: recovery then scans more). A partition idle since the last
    /// checkpoint also lets go of its direct tail's partial block
    /// ([`PartitionLog::release_idle_tail`]).
    pub(crate) fn checkpoint_offsets(&self) -> (i64, i64) {
        let mut log = self.lock();
        log.release_idle_tail();
        if let Err(error) = log.write_index_updates() {
            tracing::warn!(topic = %self.topic, partition = self.index, %error,
                "writing the active segment's index files failed");
        }
        (log.recovery_point(), log.log_start_offset())
    }

    /// Deletes the segments past the topic's retention; returns how many.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, runnel_log::LogError> {
        let settings = self.settings();
        if !settings.cleanup_delete {
            return Ok(0);
        }
        self.lock().apply_retention(&settings.retention, now_ms)
    }

    /// Runs one compaction pass if the topic is compacted and enough of it is dirty.
    ///
    /// Only the pass's first and last steps hold the partition's lock: planning (which
    /// segments, copies of their handles) and swapping the cleaned segments in (renames and
    /// directory fsyncs). Reading the dirty section, building the key map and writing and
    /// fsyncing the cleaned segments run without it, so produce and fetch go on meanwhile.
    /// A partition deleted or moved to another log directory meanwhile gets none of the
    /// pass's files.
    pub fn compact(
        &self,
        now_ms: i64,
        offset_map_bytes_max: usize,
    ) -> Result<Option<runnel_log::CompactionOutcome>, runnel_log::LogError> {
        let settings = self.settings();
        if !settings.cleanup_compact {
            return Ok(None);
        }
        let (plan, generation) = {
            let log = self.lock();
            let plan = log.plan_compaction(&settings.compaction, now_ms, offset_map_bytes_max)?;
            (plan, self.log_generation.load(Ordering::Acquire))
        };
        let Some(plan) = plan else {
            return Ok(Some(runnel_log::CompactionOutcome {
                cleaner_offset: self.cleaner_offset(),
                ..Default::default()
            }));
        };
        let compacted = plan.run()?;
        let mut log = self.lock();
        let moved = self.log_generation.load(Ordering::Acquire) != generation;
        if self.deleted.load(Ordering::Acquire) || moved {
            drop(log);
            compacted.discard()?;
            return Ok(None);
        }
        log.apply_compaction(compacted).map(Some)
    }

    /// Marks the partition deleted (its topic was): taken under the log's lock, so that a
    /// compaction pass either applies before the deletion or sees the mark and applies nothing.
    /// Returns the log's directory, for the caller to remove.
    pub(crate) fn mark_deleted(&self) -> std::path::PathBuf {
        let log = self.lock();
        self.deleted.store(true, Ordering::Release);
        log.dir().to_path_buf()
    }

    /// The log's damaged ranges (offsets lost or corrupt below the recovery point).
    pub fn damaged_ranges(&self) -> Vec<runnel_log::DamagedRange> {
        self.lock().damaged_ranges().to_vec()
    }

    /// Copies of the sealed segments for the scrubber to verify without the lock.
    pub(crate) fn scrub_candidates(&self) -> Vec<runnel_log::Segment> {
        self.lock().scrub_candidates()
    }

    /// Records damage the scrubber found in a segment whose next offset was
    /// `scrubbed_next_offset` (nothing for a partition deleted meanwhile).
    pub(crate) fn record_damage(
        &self,
        range: runnel_log::DamagedRange,
        scrubbed_next_offset: i64,
    ) -> Result<bool, runnel_log::LogError> {
        let mut log = self.lock();
        if self.deleted.load(Ordering::Acquire) {
            return Ok(false);
        }
        log.record_damage(range, scrubbed_next_offset)
    }

    /// Where the cleaner has reached: offsets below it are compacted.
    pub fn cleaner_offset(&self) -> i64 {
        self.lock().cleaner_offset()
    }

    pub fn set_cleaner_offset(&self, offset: i64) {
        self.lock().set_cleaner_offset(offset);
    }

    /// Moves the log start offset forward (DeleteRecords); returns the new one.
    pub fn advance_log_start_offset(&self, offset: i64) -> Result<i64, runnel_log::LogError> {
        self.lock().advance_log_start_offset(offset)
    }

    /// Waits, as an acks=all produce appended at `leader_epoch` does, until the high watermark
    /// is above `offset`; `false` as soon as this broker no longer leads the partition at that
    /// epoch (Kafka's DelayedProduce answers NOT_LEADER_OR_FOLLOWER then). Without that
    /// check a produce whose batch a new leader's log does not hold was answered as soon as
    /// this broker, now a follower, truncated the batch away and took the new leader's high
    /// watermark: acknowledged at offsets that hold other records (found by the history
    /// checker, `tests/clients/python/history_run.py`).
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future only drops a `watch` receiver.
    pub async fn wait_for_high_watermark_above_while_leading(
        &self,
        offset: i64,
        leader_epoch: i32,
    ) -> bool {
        self.wait_while_leading(&self.high_watermark, |hw| hw > offset, leader_epoch)
            .await
    }

    /// [`Partition::wait_for_high_watermark_above_while_leading`] for acks=1: until the local
    /// end reaches `end`.
    pub async fn wait_for_local_end_while_leading(&self, end: i64, leader_epoch: i32) -> bool {
        self.wait_while_leading(&self.local_end, |local_end| local_end >= end, leader_epoch)
            .await
    }

    /// Waits until `reached` holds for `offsets`' value or this broker no longer leads at
    /// `leader_epoch`; whether it still does.
    async fn wait_while_leading(
        &self,
        offsets: &watch::Sender<i64>,
        reached: impl Fn(i64) -> bool,
        leader_epoch: i32,
    ) -> bool {
        let mut receiver = offsets.subscribe();
        let _ = receiver
            .wait_for(|&offset| reached(offset) || !self.leads_at(leader_epoch))
            .await;
        self.leads_at(leader_epoch)
    }

    /// What the flusher must fsync, if anything, once the appends waiting in a direct tail are
    /// written to the file (under the lock, so that the writes of one segment stay in order).
    pub(crate) fn flush_target(&self) -> Result<Option<FlushTarget>, LogError> {
        self.lock().prepare_flush()
    }

    /// Records that everything below `up_to` is on stable storage.
    pub(crate) fn mark_flushed(&self, up_to: i64, durable: bool) {
        let mut log = self.lock();
        log.mark_flushed(up_to);
        if durable {
            let local_end = up_to.min(log.log_end_offset());
            self.local_end
                .send_modify(|local| *local = (*local).max(local_end));
            self.update_high_watermark(&mut log);
        }
    }

    /// Flushes and closes the log, consuming the partition's last handle.
    pub(crate) fn into_log(self) -> PartitionLog {
        self.log.into_inner().expect("partition log lock poisoned")
    }

    pub(crate) fn note_appended_messages(&self, count: u64) -> u64 {
        self.unflushed_messages.fetch_add(count, Ordering::Relaxed) + count
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use runnel_log::{LogConfig, PartitionLog};
    use runnel_metadata::PartitionImage;

    use super::*;
    use crate::config::BrokerConfig;

    fn image(leader: i32, leader_epoch: i32) -> PartitionImage {
        PartitionImage {
            partition: 0,
            leader,
            leader_epoch,
            replicas: vec![1, 2],
            isr: vec![1, 2],
            partition_epoch: leader_epoch,
        }
    }

    fn open_with(dir: &std::path::Path, image: &PartitionImage, records: usize) -> Partition {
        let settings =
            TopicSettings::resolve(&BrokerConfig::default(), &BTreeMap::new()).expect("settings");
        let mut log = PartitionLog::open(&dir.join("t-0"), LogConfig::default(), 0).expect("open");
        for i in 0..records {
            let value = bytes::Bytes::from(format!("v{i}"));
            let mut batch =
                runnel_protocol::record_batch::encode_internal_batch([(None, Some(value))], 0);
            log.append(&mut batch, 0, 0).expect("append");
        }
        // Opened again, as a restart opens it: everything it holds is on disk.
        log.close().expect("close");
        let log = PartitionLog::open(&dir.join("t-0"), LogConfig::default(), records as i64)
            .expect("reopen");
        Partition::new(
            Arc::from("t"),
            Uuid::new_v4(),
            1,
            image,
            settings,
            log,
            LogDir::new(dir.to_path_buf()),
        )
    }

    /// A replica opens its log with nothing known committed when the partition has other
    /// replicas (its high watermark at the log start offset, its local end at the log end),
    /// and with everything committed when it is the only one (as before replication).
    #[test]
    fn an_opened_replica_of_several_knows_nothing_committed_yet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let replicated = open_with(&dir.path().join("a"), &image(1, 0), 5);
        assert_eq!(replicated.offsets().log_end_offset, 5);
        assert_eq!(replicated.offsets().high_watermark, 0);
        assert_eq!(replicated.local_end(), 5);
        let alone = open_with(&dir.path().join("b"), &PartitionImage::led_by(0, 1), 5);
        assert_eq!(alone.offsets().high_watermark, 5);
        assert_eq!(alone.local_end(), 5);
    }

    /// Kafka's `DelayedProduce`: an acks=all produce waiting for the high watermark is
    /// answered NOT_LEADER_OR_FOLLOWER once its broker no longer leads at the epoch its batch
    /// was appended at, instead of waiting on (and being answered by) a later leadership's
    /// high watermark, which need not hold its batch. The history run found the lost writes
    /// this allowed.
    #[tokio::test]
    async fn a_produce_wait_ends_without_success_when_the_leadership_moves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let partition = Arc::new(open_with(dir.path(), &image(1, 0), 0));
        assert!(partition.leads_at(0));
        let waiting = {
            let partition = Arc::clone(&partition);
            tokio::spawn(async move {
                partition
                    .wait_for_high_watermark_above_while_leading(5, 0)
                    .await
            })
        };
        let acks_one = {
            let partition = Arc::clone(&partition);
            tokio::spawn(async move { partition.wait_for_local_end_while_leading(6, 0).await })
        };
        // Follower 2 takes the lead at epoch 1 while both wait (the image applier raises the
        // epoch, then assigns the replicas).
        partition.raise_leader_epoch(1);
        assert!(!partition.assign(&image(2, 1)));
        let deadline = Duration::from_secs(10);
        let still_leading = tokio::time::timeout(deadline, waiting)
            .await
            .expect("the wait ends")
            .expect("task");
        assert!(!still_leading);
        let still_leading = tokio::time::timeout(deadline, acks_one)
            .await
            .expect("the wait ends")
            .expect("task");
        assert!(!still_leading);
        // Leading again, at a later epoch, does not revive a wait for the old one.
        partition.raise_leader_epoch(2);
        assert!(partition.assign(&image(1, 2)));
        assert!(
            !partition
                .wait_for_high_watermark_above_while_leading(-1, 0)
                .await
        );
        assert!(
            partition
                .wait_for_high_watermark_above_while_leading(-1, 2)
                .await
        );
    }
}
