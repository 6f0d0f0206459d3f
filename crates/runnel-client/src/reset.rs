//! A consumer group's offset reset, as `kafka-consumer-groups --reset-offsets` plans and
//! executes it (Kafka's `GroupOffsetsResetter`): which partitions, the new offset of each, and
//! the commit.
//!
//! Kafka's rules, kept here:
//! - Only an inactive group (state `Empty`, or `Dead`: no such group yet) is reset; any other
//!   state is refused with Kafka's sentence, before anything is read or planned.
//! - `--topic t` means every partition of `t`, `--topic t:0,2` those partitions (each must
//!   exist); all topics means every partition the group has a commit for.
//! - An explicit offset and a shifted one are clamped to [log start offset, log end offset],
//!   with a warning saying so; a timestamp (`--to-datetime`, `--by-duration`) maps to the
//!   earliest offset whose timestamp is at or after it (ListOffsets by timestamp), or to the
//!   log end offset when no record is that late; `--shift-by` needs a commit to shift.

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::admin::Admin;
use crate::ClientError;

/// Where the new offsets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset.
    Latest,
    /// The committed offset (the log end offset where there is none).
    Current,
    /// This offset, clamped to the log's range.
    Offset(i64),
    /// The committed offset plus this (negative: back), clamped to the log's range.
    ShiftBy(i64),
    /// The earliest offset whose timestamp (ms since the epoch) is at or after this.
    Timestamp(i64),
}

/// Which partitions to reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetScope {
    /// `--topic` arguments: a topic, with the partitions named after `:` (every partition if
    /// none).
    Topics(Vec<(String, Option<Vec<i32>>)>),
    /// `--all-topics`: every partition the group has committed an offset for.
    AllTopics,
}

/// One partition of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A plan: the new offsets, and the warnings about offsets that were moved into range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResetPlan {
    pub offsets: Vec<PlannedOffset>,
    pub warnings: Vec<String>,
}

/// Group states in which Kafka lets a group's offsets be reset.
const INACTIVE_STATES: &[&str] = &["Empty", "Dead"];

impl Admin {
    /// The new offsets `spec` gives `group` on the partitions of `scope`; changes nothing.
    /// Refused unless the group is inactive.
    pub fn plan_offset_reset(
        &self,
        group: &str,
        scope: &ResetScope,
        spec: ResetSpec,
    ) -> Result<ResetPlan, ClientError> {
        self.check_inactive(group)?;
        let consumer = self.group_consumer(group)?;
        let partitions = self.reset_partitions(group, scope)?;
        let committed = self.committed(group, &partitions)?;
        let mut plan = ResetPlan::default();
        let stamped = match spec {
            ResetSpec::Timestamp(timestamp) => {
                Some(self.offsets_at(group, &partitions, timestamp)?)
            }
            _ => None,
        };
        for (topic, partition) in partitions {
            let (low, high) = consumer.fetch_watermarks(&topic, partition, self.timeout())?;
            let current = committed
                .iter()
                .find(|(t, p, _)| *t == topic && *p == partition)
                .map(|(_, _, offset)| *offset);
            let offset = match spec {
                ResetSpec::Earliest => low,
                ResetSpec::Latest => high,
                ResetSpec::Current => current.unwrap_or(high),
                ResetSpec::Offset(offset) => clamp(&mut plan, &topic, partition, offset, low, high),
                ResetSpec::ShiftBy(shift) => {
                    let Some(current) = current else {
                        return Err(ClientError::Refused(format!(
                            "Cannot shift offset for partition {topic}-{partition} since there \
                             is no current committed offset"
                        )));
                    };
                    let shifted = current.saturating_add(shift);
                    clamp(&mut plan, &topic, partition, shifted, low, high)
                }
                ResetSpec::Timestamp(_) => {
                    let found = stamped.as_ref().and_then(|found| {
                        found
                            .iter()
                            .find(|(t, p, _)| *t == topic && *p == partition)
                            .map(|(_, _, offset)| *offset)
                    });
                    found.unwrap_or_else(|| {
                        plan.warnings.push(format!(
                            "Partition {partition} from topic {topic} has no record that \
                             late. Falling back to the log end offset ({high})."
                        ));
                        high
                    })
                }
            };
            plan.offsets.push(PlannedOffset {
                topic,
                partition,
                offset,
            });
        }
        Ok(plan)
    }

    /// Commits `plan` for `group` (what `--execute` does), as a consumer that never joins the
    /// group. Refused unless the group is inactive, checked again just before.
    pub fn commit_offset_reset(&self, group: &str, plan: &ResetPlan) -> Result<(), ClientError> {
        self.check_inactive(group)?;
        let mut offsets = TopicPartitionList::new();
        for planned in &plan.offsets {
            offsets.add_partition_offset(
                &planned.topic,
                planned.partition,
                Offset::Offset(planned.offset),
            )?;
        }
        if offsets.count() == 0 {
            return Ok(());
        }
        self.group_consumer(group)?
            .commit(&offsets, CommitMode::Sync)?;
        Ok(())
    }

    fn check_inactive(&self, group: &str) -> Result<(), ClientError> {
        let state = self
            .groups(Some(group))?
            .into_iter()
            .next()
            .map_or_else(|| "Dead".to_string(), |g| g.state);
        if INACTIVE_STATES.contains(&state.as_str()) || state.is_empty() {
            return Ok(());
        }
        Err(ClientError::Refused(format!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current \
             state is {state}."
        )))
    }

    fn reset_partitions(
        &self,
        group: &str,
        scope: &ResetScope,
    ) -> Result<Vec<(String, i32)>, ClientError> {
        match scope {
            ResetScope::AllTopics => {
                let metadata = self.metadata(None)?;
                let every: Vec<(String, i32)> = metadata
                    .topics()
                    .iter()
                    .filter(|topic| !topic.name().starts_with("__"))
                    .flat_map(|topic| {
                        topic
                            .partitions()
                            .iter()
                            .map(|p| (topic.name().to_string(), p.id()))
                    })
                    .collect();
                let mut committed: Vec<(String, i32)> = self
                    .committed(group, &every)?
                    .into_iter()
                    .map(|(topic, partition, _)| (topic, partition))
                    .collect();
                committed.sort();
                Ok(committed)
            }
            ResetScope::Topics(topics) => {
                let mut partitions = Vec::new();
                for (topic, chosen) in topics {
                    let existing = self.partitions_of(group, std::slice::from_ref(topic))?;
                    match chosen {
                        None => partitions.extend(existing),
                        Some(chosen) => {
                            for &partition in chosen {
                                if !existing.iter().any(|(_, p)| *p == partition) {
                                    return Err(ClientError::Topic {
                                        topic: format!("{topic}-{partition}"),
                                        code: RDKafkaErrorCode::UnknownTopicOrPartition,
                                    });
                                }
                                partitions.push((topic.clone(), partition));
                            }
                        }
                    }
                }
                partitions.sort();
                partitions.dedup();
                Ok(partitions)
            }
        }
    }

    /// The group's committed offsets among `partitions`, (topic, partition, offset).
    fn committed(
        &self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<(String, i32, i64)>, ClientError> {
        let mut request = TopicPartitionList::new();
        for (topic, partition) in partitions {
            request.add_partition(topic, *partition);
        }
        if request.count() == 0 {
            return Ok(Vec::new());
        }
        let committed = self
            .group_consumer(group)?
            .committed_offsets(request, self.timeout())?;
        Ok(known_offsets(&committed))
    }

    /// ListOffsets by timestamp: per partition the earliest offset at or after `timestamp`;
    /// partitions with no record that late are left out.
    fn offsets_at(
        &self,
        group: &str,
        partitions: &[(String, i32)],
        timestamp: i64,
    ) -> Result<Vec<(String, i32, i64)>, ClientError> {
        // ListOffsets reads -1 and -2 as latest and earliest: a time before the epoch asks
        // for what the epoch asks for, every record.
        let timestamp = timestamp.max(0);
        let mut request = TopicPartitionList::new();
        for (topic, partition) in partitions {
            request.add_partition_offset(topic, *partition, Offset::Offset(timestamp))?;
        }
        if request.count() == 0 {
            return Ok(Vec::new());
        }
        let found = self
            .group_consumer(group)?
            .offsets_for_times(request, self.timeout())?;
        Ok(known_offsets(&found))
    }
}

/// `offset` moved into [low, high], with Kafka's warning when it had to move.
fn clamp(
    plan: &mut ResetPlan,
    topic: &str,
    partition: i32,
    offset: i64,
    low: i64,
    high: i64,
) -> i64 {
    if offset > high {
        plan.warnings.push(format!(
            "New offset ({offset}) is higher than latest offset for topic partition \
             {topic}-{partition}. Value will be set to {high}."
        ));
        high
    } else if offset < low {
        plan.warnings.push(format!(
            "New offset ({offset}) is lower than earliest offset for topic partition \
             {topic}-{partition}. Value will be set to {low}."
        ));
        low
    } else {
        offset
    }
}

fn known_offsets(list: &TopicPartitionList) -> Vec<(String, i32, i64)> {
    list.elements()
        .iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) if element.error().is_ok() => {
                Some((element.topic().to_string(), element.partition(), offset))
            }
            _ => None,
        })
        .collect()
}
