//! Transactional offsets (TxnOffsetCommit, KIP-98/KIP-447): offsets a producer commits inside
//! a transaction are pending until the transaction's marker reaches this partition, then they
//! become the group's committed offsets (COMMIT) or are dropped (ABORT), as Kafka's
//! `OffsetMetadataManager` keeps them.
//!
//! Invariants:
//! - A pending offset is stored in the log as an offset record inside a transactional batch of
//!   its producer ([`OutputBatch::Transactional`]); the marker that ends it is a control batch
//!   of the same producer in the same partition ([`OutputBatch::Marker`]). Both take effect
//!   only once the driver has appended them, by the same replay a load does
//!   ([`Coordinator::replay_transactional`], [`Coordinator::replay_marker`]): a batch the log
//!   refuses (a fenced epoch) leaves nothing pending, and a reload rebuilds exactly the state.
//! - OffsetFetch never shows a pending offset: it shows the committed one, or with
//!   `require_stable` answers UNSTABLE_OFFSET_COMMIT for the partition.

use runnel_protocol::ErrorCode;

use super::{Coordinator, Output, OutputBatch};
use crate::group::{Group, GroupState};
use crate::record::{CoordinatorRecord, OffsetValue};
use crate::request::*;

impl<T> Coordinator<T> {
    /// Kafka's `commitTransactionalOffset`: checks the group, then writes each partition's
    /// offset in the producer's transactional batch; it is pending once the driver replays
    /// the appended records ([`Coordinator::replay_transactional`]).
    pub(super) fn txn_commit(
        &mut self,
        commit: TxnCommitRequest,
        now_ms: i64,
        out: &mut Output<T>,
    ) -> CommitResult {
        let error = self.txn_commit_error(&commit);
        let metadata_max = self.config.offset_metadata_bytes_max;
        let mut results = Vec::with_capacity(commit.partitions.len());
        for partition in commit.partitions {
            let metadata = partition.metadata.unwrap_or_default();
            let error = if error != ErrorCode::None {
                error
            } else if metadata.len() > metadata_max {
                ErrorCode::OffsetMetadataTooLarge
            } else {
                let value = OffsetValue {
                    offset: partition.offset,
                    leader_epoch: partition.leader_epoch,
                    metadata,
                    commit_timestamp_ms: now_ms,
                };
                out.records.push(CoordinatorRecord::Offset {
                    group: commit.group_id.clone(),
                    topic: partition.topic.clone(),
                    partition: partition.partition,
                    value: Some(value),
                });
                ErrorCode::None
            };
            results.push((partition.topic, partition.partition, error));
        }
        if !out.records.is_empty() {
            out.batch = OutputBatch::Transactional {
                producer_id: commit.producer_id,
                producer_epoch: commit.producer_epoch,
            };
        }
        results
    }

    /// Kafka's `validateTransactionalOffsetCommit` and `ClassicGroup.validateOffsetCommit`
    /// with `isTransactional`: an unknown group is accepted only without a generation (a
    /// simple consumer, or TxnOffsetCommit v0-2 which carries none); a known one checks the
    /// member and generation when the request names them, and a rebalance does not refuse it.
    fn txn_commit_error(&self, commit: &TxnCommitRequest) -> ErrorCode {
        if commit.group_id.is_empty() {
            return ErrorCode::InvalidGroupId;
        }
        let Some(group) = self.groups.get(&commit.group_id) else {
            return if commit.generation_id < 0 {
                ErrorCode::None
            } else {
                ErrorCode::IllegalGeneration
            };
        };
        if group.state == GroupState::Dead {
            return ErrorCode::CoordinatorNotAvailable;
        }
        if commit.generation_id < 0 && group.state == GroupState::Empty {
            return ErrorCode::None;
        }
        let names_member = commit.generation_id >= 0
            || !commit.member_id.is_empty()
            || commit.group_instance_id.is_some();
        if !names_member {
            return ErrorCode::None;
        }
        if group.is_fenced(commit.group_instance_id.as_deref(), &commit.member_id) {
            return ErrorCode::FencedInstanceId;
        }
        if !group
            .members
            .iter()
            .any(|m| m.member_id == commit.member_id)
        {
            return ErrorCode::UnknownMemberId;
        }
        if commit.generation_id != group.generation_id {
            return ErrorCode::IllegalGeneration;
        }
        ErrorCode::None
    }

    /// Asks the driver to write the marker; its effect applies when the driver replays it
    /// once appended ([`Coordinator::replay_marker`]), so a marker that could not be written
    /// changes nothing.
    pub(super) fn complete_txn(&self, complete: CompleteTxnRequest, out: &mut Output<T>) {
        out.batch = OutputBatch::Marker {
            producer_id: complete.producer_id,
            producer_epoch: complete.producer_epoch,
            commit: complete.commit,
            coordinator_epoch: complete.coordinator_epoch,
        };
    }

    /// Applies one record of a transactional batch of `producer_id` (read back at load, or
    /// just appended): offsets are pending until that producer's marker.
    pub fn replay_transactional(&mut self, producer_id: i64, record: CoordinatorRecord, now: i64) {
        match record {
            CoordinatorRecord::Offset {
                group,
                topic,
                partition,
                value: Some(value),
            } => {
                self.pending_txn_offsets
                    .entry(producer_id)
                    .or_default()
                    .insert((group, topic, partition), value);
            }
            other => self.replay(other, now),
        }
    }

    /// Applies a transaction marker of `producer_id` (read back at load, or just appended):
    /// its pending offsets become the groups' committed offsets on COMMIT, vanish on ABORT.
    pub fn replay_marker(&mut self, producer_id: i64, commit: bool, now_ms: i64) {
        let Some(pending) = self.pending_txn_offsets.remove(&producer_id) else {
            return;
        };
        if !commit {
            return;
        }
        for ((group_id, topic, partition), value) in pending {
            self.groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(&group_id, now_ms))
                .offsets
                .insert((topic, partition), value);
        }
    }

    /// Whether some producer's open transaction holds an offset for this partition of the group.
    pub(super) fn has_pending_txn_offset(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
    ) -> bool {
        self.pending_txn_offsets.values().any(|offsets| {
            offsets
                .keys()
                .any(|(g, t, p)| g == group_id && t == topic && *p == partition)
        })
    }

    /// Producers with pending transactional offsets in this partition.
    pub fn pending_txn_producer_count(&self) -> usize {
        self.pending_txn_offsets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GroupConfig;

    const PRODUCER: i64 = 7;

    fn txn_commit(group: &str, producer_id: i64, offset: i64) -> Request {
        Request::TxnCommit(TxnCommitRequest {
            group_id: group.into(),
            producer_id,
            producer_epoch: 0,
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            partitions: vec![CommitPartition {
                topic: "t".into(),
                partition: 0,
                offset,
                leader_epoch: -1,
                metadata: None,
            }],
        })
    }

    fn fetch(c: &mut Coordinator<u32>, require_stable: bool) -> FetchedOffset {
        let request = Request::Fetch(FetchRequest {
            group_id: "g".into(),
            partitions: Some(vec![("t".into(), 0)]),
            require_stable,
        });
        let Response::Fetch(mut result) = c.handle(request, 0, 0).replies.remove(0).1 else {
            panic!("fetch");
        };
        result.offsets.remove(0)
    }

    /// Handles a TxnOffsetCommit and replays its records, as the driver does once appended.
    fn append(c: &mut Coordinator<u32>, request: Request) {
        let out = c.handle(request, 0, 0);
        for record in out.records {
            c.replay_transactional(PRODUCER, record, 0);
        }
    }

    fn marker(c: &mut Coordinator<u32>, producer_id: i64, commit: bool) -> OutputBatch {
        let request = Request::CompleteTxn(CompleteTxnRequest {
            producer_id,
            producer_epoch: 0,
            commit,
            coordinator_epoch: 0,
        });
        let out = c.handle(request, 0, 0);
        assert!(out.records.is_empty(), "a marker is the only thing written");
        out.batch
    }

    /// Kafka's OffsetMetadataManager: a transactional offset is invisible to OffsetFetch (the
    /// committed offset shows, or UNSTABLE_OFFSET_COMMIT under require_stable) until the
    /// COMMIT marker is applied.
    #[test]
    fn pending_offsets_show_only_after_the_commit_marker() {
        let mut c: Coordinator<u32> = Coordinator::new(GroupConfig::default(), 0);
        let out = c.handle(txn_commit("g", PRODUCER, 42), 1, 0);
        assert_eq!(
            out.batch,
            OutputBatch::Transactional {
                producer_id: PRODUCER,
                producer_epoch: 0
            }
        );
        assert!(matches!(&out.replies[0].1, Response::TxnCommit(r) if r[0].2 == ErrorCode::None));
        assert_eq!(out.records.len(), 1);
        assert_eq!(
            fetch(&mut c, true).error,
            ErrorCode::None,
            "nothing is pending before the batch is appended"
        );
        for record in out.records {
            c.replay_transactional(PRODUCER, record, 0);
        }
        assert_eq!(fetch(&mut c, false).offset, -1);
        assert_eq!(fetch(&mut c, true).error, ErrorCode::UnstableOffsetCommit);
        let batch = marker(&mut c, PRODUCER, true);
        assert!(matches!(batch, OutputBatch::Marker { commit: true, .. }));
        // Still pending: the marker applies once the driver has written it.
        assert_eq!(fetch(&mut c, false).offset, -1);
        c.replay_marker(PRODUCER, true, 0);
        let fetched = fetch(&mut c, true);
        assert_eq!((fetched.offset, fetched.error), (42, ErrorCode::None));
    }

    /// An ABORT marker drops the producer's pending offsets; the committed offset stays.
    #[test]
    fn an_abort_marker_drops_pending_offsets() {
        let mut c: Coordinator<u32> = Coordinator::new(GroupConfig::default(), 0);
        append(&mut c, txn_commit("g", PRODUCER, 10));
        c.replay_marker(PRODUCER, true, 0);
        append(&mut c, txn_commit("g", PRODUCER, 20));
        c.replay_marker(PRODUCER, false, 0);
        let fetched = fetch(&mut c, true);
        assert_eq!((fetched.offset, fetched.error), (10, ErrorCode::None));
        assert_eq!(c.pending_txn_producer_count(), 0);
    }

    /// A load replays transactional batches as pending and markers as their outcome, so a
    /// restart between TxnOffsetCommit and the marker keeps the offsets pending.
    #[test]
    fn a_load_rebuilds_pending_and_committed_offsets() {
        let mut c: Coordinator<u32> = Coordinator::new(GroupConfig::default(), 0);
        let first = c.handle(txn_commit("g", PRODUCER, 5), 1, 0).records;
        let second = c.handle(txn_commit("g", PRODUCER + 1, 9), 2, 0).records;
        let mut reloaded: Coordinator<u32> = Coordinator::new(GroupConfig::default(), 0);
        for record in first {
            reloaded.replay_transactional(PRODUCER, record, 0);
        }
        for record in second {
            reloaded.replay_transactional(PRODUCER + 1, record, 0);
        }
        reloaded.replay_marker(PRODUCER, true, 0);
        reloaded.finish_load();
        assert_eq!(
            fetch(&mut reloaded, true).error,
            ErrorCode::UnstableOffsetCommit
        );
        reloaded.replay_marker(PRODUCER + 1, false, 0);
        assert_eq!(fetch(&mut reloaded, true).offset, 5);
    }

    /// Kafka's validateOffsetCommit with isTransactional: a generation for an unknown group is
    /// ILLEGAL_GENERATION; without one the commit is a simple consumer's and accepted.
    #[test]
    fn an_unknown_group_with_a_generation_is_illegal_generation() {
        let mut c: Coordinator<u32> = Coordinator::new(GroupConfig::default(), 0);
        let Request::TxnCommit(mut request) = txn_commit("g", PRODUCER, 1) else {
            unreachable!()
        };
        request.generation_id = 3;
        request.member_id = "m".into();
        let out = c.handle(Request::TxnCommit(request), 1, 0);
        assert!(
            matches!(&out.replies[0].1, Response::TxnCommit(r) if r[0].2 == ErrorCode::IllegalGeneration)
        );
        assert!(out.records.is_empty());
        assert_eq!(out.batch, OutputBatch::Plain);
    }
}
