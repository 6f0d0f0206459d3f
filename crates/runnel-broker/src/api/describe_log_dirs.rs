//! DescribeLogDirs (key 35, KIP-113): per log directory, the size of each requested
//! partition's log, as `kafka-log-dirs --describe`, the admin clients' `describeLogDirs` and
//! UIs' broker pages ask for them.
//!
//! As Kafka's `ReplicaManager.describeLogDirs`: one result per configured log directory, its
//! absolute path; the partitions of the request (null topics: every hosted partition) that
//! live in it, grouped by topic, topics left out when none of their partitions is there; each
//! with its size in bytes, offset lag `max(high watermark - log end offset, 0)` (0 for a
//! current replica on a single node) and `is_future_key` false, and a move's `-future` replica too, `is_future_key` true with its lag
//! behind the current one (`replica_move.rs`); from v4 the file system's total and usable
//! bytes. An offline log directory ([`crate::log_dirs`]), or one whose space cannot be read,
//! is reported `KAFKA_STORAGE_ERROR` with no topics and -1 bytes, as Kafka reports it. The top-level error (v3+) is NONE: there is no
//! authorizer to refuse DESCRIBE on the cluster.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use runnel_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{topic_name, Reply, Request};
use crate::broker::Broker;
use crate::log_dirs;

/// Kafka's `DescribeLogDirsResponse.UNKNOWN_VOLUME_BYTES`.
const UNKNOWN_VOLUME_BYTES: i64 = -1;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: DescribeLogDirsRequest = request.decode()?;
    // None: every partition.
    let requested: Option<HashSet<(&str, i32)>> = body.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(move |&partition| (topic.topic.as_str(), partition))
            })
            .collect()
    });
    // By log directory, then topic: the requested partitions' replicas.
    let mut by_dir: BTreeMap<PathBuf, BTreeMap<String, Vec<Replica>>> = BTreeMap::new();
    let mut end_offsets = std::collections::HashMap::new();
    for partition in broker.replicas.all_partitions() {
        let wanted = requested
            .as_ref()
            .is_none_or(|set| set.contains(&(&*partition.topic, partition.index)));
        if !wanted {
            continue;
        }
        let log_dir = partition.log_dir();
        if !log_dir.is_online() {
            continue;
        }
        let size = i64::try_from(partition.size_bytes()).unwrap_or(i64::MAX);
        end_offsets.insert(
            (partition.topic.to_string(), partition.index),
            partition.offsets().log_end_offset,
        );
        by_dir
            .entry(log_dir.absolute())
            .or_default()
            .entry(partition.topic.to_string())
            .or_default()
            .push(Replica {
                index: partition.index,
                size,
                offset_lag: 0,
                is_future: false,
            });
    }
    // Kafka's future replicas: `log.logEndOffset - futureLog.logEndOffset` behind.
    for future in broker.replicas.future_replicas() {
        let Some(&end) = end_offsets.get(&(future.topic.clone(), future.partition)) else {
            continue;
        };
        if !future.log_dir.is_online() {
            continue;
        }
        by_dir
            .entry(future.log_dir.absolute())
            .or_default()
            .entry(future.topic.clone())
            .or_default()
            .push(Replica {
                index: future.partition,
                size: i64::try_from(future.size_bytes).unwrap_or(i64::MAX),
                offset_lag: end.saturating_sub(future.end_offset).max(0),
                is_future: true,
            });
    }
    let results = broker
        .replicas
        .log_dirs()
        .iter()
        .map(|dir| {
            let path = dir.absolute();
            let topics = by_dir.remove(&path).unwrap_or_default();
            describe_dir(dir, &path, topics)
        })
        .collect();
    let response = DescribeLogDirsResponse::default().with_results(results);
    Ok(Reply::Ready(request.respond(&response)?))
}

/// One replica in a log directory's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Replica {
    index: i32,
    size: i64,
    offset_lag: i64,
    is_future: bool,
}

fn describe_dir(
    dir: &log_dirs::LogDir,
    path: &std::path::Path,
    topics: BTreeMap<String, Vec<Replica>>,
) -> DescribeLogDirsResult {
    let log_dir = StrBytes::from_string(path.display().to_string());
    let space = if dir.is_online() {
        log_dirs::space(path).map_err(|error| error.to_string())
    } else {
        Err(dir.failure().unwrap_or_default())
    };
    let space = match space {
        Ok(space) => space,
        Err(error) => {
            tracing::warn!(dir = %path.display(), %error, "log directory offline or unreadable");
            return DescribeLogDirsResult::default()
                .with_log_dir(log_dir)
                .with_error_code(ErrorCode::KafkaStorageError.code())
                .with_total_bytes(UNKNOWN_VOLUME_BYTES)
                .with_usable_bytes(UNKNOWN_VOLUME_BYTES);
        }
    };
    let topics = topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_unstable();
            DescribeLogDirsTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|replica| {
                            DescribeLogDirsPartition::default()
                                .with_partition_index(replica.index)
                                .with_partition_size(replica.size)
                                .with_offset_lag(replica.offset_lag)
                                .with_is_future_key(replica.is_future)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeLogDirsResult::default()
        .with_log_dir(log_dir)
        .with_topics(topics)
        .with_total_bytes(space.total_bytes)
        .with_usable_bytes(space.usable_bytes)
}
