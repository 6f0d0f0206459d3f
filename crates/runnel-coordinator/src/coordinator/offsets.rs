//! Committed offsets of the coordinator's groups: OffsetCommit (with Kafka's generation and
//! membership checks, and commits of simple consumers with generation -1), OffsetFetch,
//! OffsetDelete and `offsets.retention.minutes` expiry. Each stored or removed offset is an
//! offset record (a tombstone for a removal) in the [`Output`].

use runnel_protocol::ErrorCode;

use super::{Coordinator, Output};
use crate::group::{Group, GroupState};
use crate::record::{CoordinatorRecord, OffsetValue};
use crate::request::*;

impl<T> Coordinator<T> {
    pub(super) fn commit(
        &mut self,
        commit: CommitRequest,
        now_ms: i64,
        out: &mut Output<T>,
    ) -> CommitResult {
        let error = self.commit_error(&commit, now_ms);
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
                let group = self
                    .groups
                    .entry(commit.group_id.clone())
                    .or_insert_with(|| Group::new(&commit.group_id, now_ms));
                group.offsets.insert(
                    (partition.topic.clone(), partition.partition),
                    value.clone(),
                );
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
        results
    }

    /// Kafka's checks before a commit is stored, in Kafka's order.
    fn commit_error(&mut self, commit: &CommitRequest, now_ms: i64) -> ErrorCode {
        if commit.group_id.is_empty() {
            return ErrorCode::InvalidGroupId;
        }
        let Some(group) = self.groups.get_mut(&commit.group_id) else {
            return if commit.generation_id < 0 {
                ErrorCode::None
            } else {
                ErrorCode::IllegalGeneration
            };
        };
        if group.state == GroupState::Dead {
            return ErrorCode::CoordinatorNotAvailable;
        }
        if group.is_fenced(commit.group_instance_id.as_deref(), &commit.member_id) {
            return ErrorCode::FencedInstanceId;
        }
        if commit.generation_id < 0 && group.state == GroupState::Empty {
            return ErrorCode::None;
        }
        let Some(member) = group.member_mut(&commit.member_id) else {
            return ErrorCode::UnknownMemberId;
        };
        member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
        if commit.generation_id != group.generation_id {
            return ErrorCode::IllegalGeneration;
        }
        if group.state == GroupState::CompletingRebalance {
            return ErrorCode::RebalanceInProgress;
        }
        ErrorCode::None
    }

    pub(super) fn fetch(&self, fetch: FetchRequest) -> FetchResult {
        let group = self.groups.get(&fetch.group_id);
        let unstable = |topic: &str, partition: i32| {
            fetch.require_stable && self.has_pending_txn_offset(&fetch.group_id, topic, partition)
        };
        let offsets = match fetch.partitions {
            Some(partitions) => partitions
                .into_iter()
                .map(|(topic, partition)| {
                    if unstable(&topic, partition) {
                        return unstable_offset(topic, partition);
                    }
                    let value = group.and_then(|g| g.offsets.get(&(topic.clone(), partition)));
                    fetched(topic, partition, value)
                })
                .collect(),
            None => group
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|((topic, partition), value)| {
                            if unstable(topic, *partition) {
                                unstable_offset(topic.clone(), *partition)
                            } else {
                                fetched(topic.clone(), *partition, Some(value))
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        FetchResult {
            error: ErrorCode::None,
            offsets,
        }
    }

    pub(super) fn delete_offsets(
        &mut self,
        request: OffsetDeleteRequest,
        out: &mut Output<T>,
    ) -> OffsetDeleteResult {
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return OffsetDeleteResult {
                error: ErrorCode::GroupIdNotFound,
                partitions: Vec::new(),
            };
        };
        if group.state == GroupState::Dead {
            return OffsetDeleteResult {
                error: ErrorCode::GroupIdNotFound,
                partitions: Vec::new(),
            };
        }
        let subscribed = if group.members.is_empty() {
            Some(Vec::new())
        } else {
            group.subscribed_topics()
        };
        let Some(subscribed) = subscribed else {
            return OffsetDeleteResult {
                error: ErrorCode::NonEmptyGroup,
                partitions: Vec::new(),
            };
        };
        let mut partitions = Vec::with_capacity(request.partitions.len());
        for (topic, partition) in request.partitions {
            if subscribed.contains(&topic) {
                partitions.push((topic, partition, ErrorCode::GroupSubscribedToTopic));
                continue;
            }
            if group.offsets.remove(&(topic.clone(), partition)).is_some() {
                out.records.push(CoordinatorRecord::Offset {
                    group: request.group_id.clone(),
                    topic: topic.clone(),
                    partition,
                    value: None,
                });
            }
            partitions.push((topic, partition, ErrorCode::None));
        }
        OffsetDeleteResult {
            error: ErrorCode::None,
            partitions,
        }
    }

    /// `offsets.retention.minutes`: an empty group's offsets expire once both their commit
    /// and the group's becoming empty are older than the retention; a group left with
    /// nothing is removed.
    pub(super) fn expire_offsets(&mut self, now_ms: i64, out: &mut Output<T>) {
        let retention_ms = self.config.offsets_retention_ms;
        let mut removed_groups = Vec::new();
        for group in self.groups.values_mut() {
            if group.state != GroupState::Empty {
                continue;
            }
            let empty_since = group.state_timestamp_ms;
            let expired: Vec<(String, i32)> = group
                .offsets
                .iter()
                .filter(|(_, v)| v.commit_timestamp_ms.max(empty_since) + retention_ms <= now_ms)
                .map(|(key, _)| key.clone())
                .collect();
            for (topic, partition) in expired {
                group.offsets.remove(&(topic.clone(), partition));
                out.records.push(CoordinatorRecord::Offset {
                    group: group.group_id.clone(),
                    topic,
                    partition,
                    value: None,
                });
            }
            if group.offsets.is_empty() && group.members.is_empty() {
                removed_groups.push(group.group_id.clone());
            }
        }
        for group_id in removed_groups {
            self.groups.remove(&group_id);
            out.records.push(CoordinatorRecord::Group {
                group: group_id,
                value: None,
            });
        }
    }
}

fn fetched(topic: String, partition: i32, value: Option<&OffsetValue>) -> FetchedOffset {
    match value {
        Some(value) => FetchedOffset {
            topic,
            partition,
            error: ErrorCode::None,
            offset: value.offset,
            leader_epoch: value.leader_epoch,
            metadata: value.metadata.clone(),
        },
        None => FetchedOffset {
            topic,
            partition,
            error: ErrorCode::None,
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
        },
    }
}

/// Kafka's answer for a partition whose transactional offsets are still pending under
/// `require_stable`: UNSTABLE_OFFSET_COMMIT with no offset.
fn unstable_offset(topic: String, partition: i32) -> FetchedOffset {
    FetchedOffset {
        topic,
        partition,
        error: ErrorCode::UnstableOffsetCommit,
        offset: -1,
        leader_epoch: -1,
        metadata: String::new(),
    }
}
