//! AlterReplicaLogDirs (key 34, KIP-113): move partitions between this broker's log
//! directories, as `kafka-reassign-partitions` with log dirs and the admin clients'
//! `alterReplicaLogDirs` ask.
//!
//! Each partition is answered as Kafka's `ReplicaManager.alterReplicaLogDirs` answers it
//! ([`crate::replica_move::alter_replica_log_dir`]); the move itself runs after the answer,
//! as in Kafka, and DescribeLogDirs shows its `-future` replica until it completes. As
//! Kafka's handler (a map from partition to directory) a partition named twice gets one
//! answer, for the last directory naming it; results are grouped by topic.

use std::collections::BTreeMap;
use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use runnel_protocol::messages::{AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse};

use super::{topic_name, Reply, Request};
use crate::broker::Broker;
use crate::replica_move::alter_replica_log_dir;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: AlterReplicaLogDirsRequest = request.decode()?;
    // The last directory naming a partition wins, as in Kafka's map.
    let mut wanted: BTreeMap<(String, i32), String> = BTreeMap::new();
    for dir in &body.dirs {
        for topic in &dir.topics {
            for &partition in &topic.partitions {
                wanted.insert((topic.name.to_string(), partition), dir.path.to_string());
            }
        }
    }
    let mut results: BTreeMap<String, Vec<AlterReplicaLogDirPartitionResult>> = BTreeMap::new();
    for ((topic, partition), dir) in wanted {
        let code = alter_replica_log_dir(broker, &topic, partition, &dir);
        if code != runnel_protocol::ErrorCode::None {
            tracing::warn!(%topic, partition, %dir, error = %code, "unable to alter log dir");
        }
        results.entry(topic).or_default().push(
            AlterReplicaLogDirPartitionResult::default()
                .with_partition_index(partition)
                .with_error_code(code.code()),
        );
    }
    let results = results
        .into_iter()
        .map(|(topic, partitions)| {
            AlterReplicaLogDirTopicResult::default()
                .with_topic_name(topic_name(&topic))
                .with_partitions(partitions)
        })
        .collect();
    let response = AlterReplicaLogDirsResponse::default().with_results(results);
    Ok(Reply::Ready(request.respond(&response)?))
}
