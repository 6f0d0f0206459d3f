//! Consumer lag: the one definition that `runnel group describe`, the console and `/metrics`
//! share, so that the same group shows the same figures in all three.
//!
//! The definition is the one of Kafka's `kafka-consumer-groups --describe`
//! (`tools/.../consumer/group/ConsumerGroupCommand.java`: `collectGroupsOffsets`,
//! `describePartitions`, `getLag`):
//!
//! - **Which partitions.** Every partition assigned to a member of the group, and every
//!   partition the group has a committed offset for (assigned or not). Nothing else: a partition
//!   of a consumed topic that is neither assigned nor committed is not the group's.
//! - **End offset.** What ListOffsets answers for `latest` under `read_uncommitted`, which is
//!   the **high watermark** (Kafka's tool names that column LOG-END-OFFSET; the records between
//!   the high watermark and the log end offset cannot be consumed yet, so they are not lag). A
//!   partition whose end offset is unknown (not hosted here, no leader) has an unknown lag.
//!   Future hook: a `read_committed` group will be measured against the last stable offset once
//!   transactions exist; the caller passes that offset as `end_offset` then.
//! - **Lag.** End offset minus committed offset, not clamped (a commit past the end shows a
//!   negative lag, as in Kafka). A partition without a committed offset has **no** lag (Kafka
//!   prints `-`): it is listed but not counted. The group's total is the sum of the known lags.

use std::collections::BTreeMap;

/// One partition of a group's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset, if it has one.
    pub committed: Option<i64>,
    /// The high watermark (the last stable offset under read_committed, later), if known.
    pub end_offset: Option<i64>,
}

impl PartitionLag {
    /// End offset minus committed offset, when both are known.
    pub fn lag(&self) -> Option<i64> {
        Some(self.end_offset? - self.committed?)
    }
}

/// The lag of every partition of a group, in topic and partition order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupLag {
    pub partitions: Vec<PartitionLag>,
}

impl GroupLag {
    /// The rows of a group: every `assigned` (topic, partition) and every `committed`
    /// (topic, partition, offset), once each, with `end_offset` for each. A committed offset
    /// below 0 (OffsetFetch's -1, "none") counts as no commit.
    pub fn compute<'a>(
        assigned: impl IntoIterator<Item = (&'a str, i32)>,
        committed: impl IntoIterator<Item = (&'a str, i32, i64)>,
        mut end_offset: impl FnMut(&str, i32) -> Option<i64>,
    ) -> GroupLag {
        let mut rows: BTreeMap<(&str, i32), Option<i64>> = BTreeMap::new();
        for key in assigned {
            rows.entry(key).or_insert(None);
        }
        for (topic, partition, offset) in committed {
            if offset >= 0 {
                rows.insert((topic, partition), Some(offset));
            } else {
                rows.entry((topic, partition)).or_insert(None);
            }
        }
        GroupLag {
            partitions: rows
                .into_iter()
                .map(|((topic, partition), committed)| PartitionLag {
                    topic: topic.to_string(),
                    partition,
                    committed,
                    end_offset: end_offset(topic, partition),
                })
                .collect(),
        }
    }

    /// The sum of the known lags (partitions without a commit or end offset add nothing).
    pub fn total(&self) -> i64 {
        self.partitions.iter().filter_map(PartitionLag::lag).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigned_and_committed_partitions_each_once_and_uncommitted_ones_have_no_lag() {
        let assigned = [("a", 0), ("a", 1), ("b", 0)];
        let committed = [("a", 0, 4), ("c", 2, 7), ("b", 0, -1)];
        let ends = |topic: &str, partition: i32| match (topic, partition) {
            ("a", 0) => Some(10),
            ("a", 1) => Some(5),
            ("b", 0) => Some(3),
            ("c", 2) => Some(6),
            _ => None,
        };
        let lag = GroupLag::compute(assigned, committed, ends);
        let rows: Vec<_> = lag
            .partitions
            .iter()
            .map(|p| (p.topic.as_str(), p.partition, p.committed, p.lag()))
            .collect();
        assert_eq!(
            rows,
            [
                ("a", 0, Some(4), Some(6)),
                ("a", 1, None, None),
                ("b", 0, None, None),
                // A commit past the end: negative, as Kafka's tool shows it.
                ("c", 2, Some(7), Some(-1)),
            ]
        );
        assert_eq!(lag.total(), 5);
    }

    #[test]
    fn an_unknown_end_offset_leaves_the_lag_unknown() {
        let lag = GroupLag::compute([], [("gone", 0, 3)], |_, _| None);
        assert_eq!(lag.partitions[0].lag(), None);
        assert_eq!(lag.total(), 0);
    }
}
