//! The error codes a response carries, counted for `runnel_request_errors_total` as Kafka's
//! `AbstractResponse.errorCounts()` counts them (`kafka.network:type=RequestMetrics,
//! name=ErrorsPerSec`): one per partition for partition-level responses, one per resource,
//! group or member for those, plus the top-level code where the response has one. NONE is
//! counted too, as in Kafka.
//!
//! Every response type [`crate::api::Request::respond`] encodes implements [`ResponseErrors`];
//! those of the admin APIs still to be served (DescribeCluster, DescribeLogDirs, ...) are
//! implemented here already, so that a new handler counts its errors without more work.

use runnel_protocol::messages::*;

/// The error codes in a response.
pub trait ResponseErrors {
    /// Calls `count` once for each error code the response carries.
    fn each_error(&self, count: &mut dyn FnMut(i16));
}

/// Responses with one top-level code.
macro_rules! top_level {
    ($($response:ty),* $(,)?) => {$(
        impl ResponseErrors for $response {
            fn each_error(&self, count: &mut dyn FnMut(i16)) {
                count(self.error_code);
            }
        }
    )*};
}

top_level!(
    ApiVersionsResponse,
    InitProducerIdResponse,
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    ListGroupsResponse,
    DescribeClusterResponse,
    ListPartitionReassignmentsResponse,
    AddOffsetsToTxnResponse,
    EndTxnResponse,
    ListTransactionsResponse,
);

/// Responses with a code per item of a list (`$list`), and none at the top.
macro_rules! per_item {
    ($($response:ty => $list:ident),* $(,)?) => {$(
        impl ResponseErrors for $response {
            fn each_error(&self, count: &mut dyn FnMut(i16)) {
                self.$list.iter().for_each(|item| count(item.error_code));
            }
        }
    )*};
}

per_item!(
    CreateTopicsResponse => topics,
    DeleteTopicsResponse => responses,
    CreatePartitionsResponse => results,
    DescribeConfigsResponse => results,
    AlterConfigsResponse => responses,
    IncrementalAlterConfigsResponse => responses,
    DescribeGroupsResponse => groups,
    DeleteGroupsResponse => results,
    DescribeTransactionsResponse => transaction_states,
);

/// Responses with a code per partition of each topic (`$topics[].$partitions[]`).
macro_rules! per_partition {
    ($($response:ty => $topics:ident . $partitions:ident),* $(,)?) => {$(
        impl ResponseErrors for $response {
            fn each_error(&self, count: &mut dyn FnMut(i16)) {
                for topic in &self.$topics {
                    topic.$partitions.iter().for_each(|p| count(p.error_code));
                }
            }
        }
    )*};
}

per_partition!(
    ProduceResponse => responses.partition_responses,
    ListOffsetsResponse => topics.partitions,
    OffsetCommitResponse => topics.partitions,
    DeleteRecordsResponse => topics.partitions,
    OffsetForLeaderEpochResponse => topics.partitions,
    AlterReplicaLogDirsResponse => results.partitions,
    DescribeProducersResponse => topics.partitions,
    TxnOffsetCommitResponse => topics.partitions,
);

/// Kafka's `DescribeQuorumResponse.errorCounts`: the top-level code and each partition's.
impl ResponseErrors for DescribeQuorumResponse {
    fn each_error(&self, count: &mut dyn FnMut(i16)) {
        count(self.error_code);
        for topic in &self.topics {
            topic.partitions.iter().for_each(|p| count(p.error_code));
        }
    }
}

/// Kafka's `WriteTxnMarkersResponse.errorCounts`: one per partition of each marker.
impl ResponseErrors for WriteTxnMarkersResponse {
    fn each_error(&self, count: &mut dyn FnMut(i16)) {
        for marker in &self.markers {
            for topic in &marker.topics {
                topic.partitions.iter().for_each(|p| count(p.error_code));
            }
        }
    }
}

impl ResponseErrors for AddPartitionsToTxnResponse {
    fn each_error(&self, count: &mut dyn FnMut(i16)) {
        let partitions = |topic: &add_partitions_to_txn_response::AddPartitionsToTxnTopicResult,
                          count: &mut dyn FnMut(i16)| {
            for partition in &topic.results_by_partition {
                count(partition.partition_error_code);
            }
        };
        if self.results_by_transaction.is_empty() {
            for topic in &self.results_by_topic_v3_and_below {
                partitions(topic, count);
            }
            return;
        }
        count(self.error_code);
        for transaction in &self.results_by_transaction {
            for topic in &transaction.topic_results {
                partitions(topic, count);
            }
        }
    }
}

impl ResponseErrors for MetadataResponse {
    fn each_error(&self, count: &mut dyn FnMut(i16)) {
        for topic in &self.topics {
            count(topic.error_code);
            topic.partitions.iter().for_each(|p| count(p.error_code));
        }
    }
}

impl ResponseErrors for FindCoordinatorResponse {
    fn each_error(&self, count: &mut dyn FnMut(i16)) {
        if self.coordinators.is_empty() {
            count(self.error_code);
        } else {
            self.coordinators.iter().for_each(|c| count(c.error_code));
        }
    }
}

impl ResponseErrors for LeaveGroupResponse {
    fn each_error(&self, count: &mut dyn FnMut(i16)) {
        count(self.error_code);
        self.members.iter().for_each(|m| count(m.error_code));
    }
}

impl ResponseErrors for OffsetFetchResponse {
    fn each_error(&self, count: &mut dyn FnMut(i16)) {
        if self.groups.is_empty() {
            count(self.error_code);
            for topic in &self.topics {
                topic.partitions.iter().for_each(|p| count(p.error_code));
            }
        }
        for group in &self.groups {
            count(group.error_code);
            for topic in &group.topics {
                topic.partitions.iter().for_each(|p| count(p.error_code));
            }
        }
    }
}

impl ResponseErrors for OffsetDeleteResponse {
    fn each_error(&self, count: &mut dyn FnMut(i16)) {
        count(self.error_code);
        for topic in &self.topics {
            topic.partitions.iter().for_each(|p| count(p.error_code));
        }
    }
}

impl ResponseErrors for ElectLeadersResponse {
    fn each_error(&self, count: &mut dyn FnMut(i16)) {
        count(self.error_code);
        for result in &self.replica_election_results {
            result
                .partition_result
                .iter()
                .for_each(|p| count(p.error_code));
        }
    }
}

impl ResponseErrors for DescribeLogDirsResponse {
    fn each_error(&self, count: &mut dyn FnMut(i16)) {
        count(self.error_code);
        self.results.iter().for_each(|r| count(r.error_code));
    }
}

impl ResponseErrors for AlterPartitionReassignmentsResponse {
    fn each_error(&self, count: &mut dyn FnMut(i16)) {
        count(self.error_code);
        for topic in &self.responses {
            topic.partitions.iter().for_each(|p| count(p.error_code));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_level_errors_count_once_per_partition() {
        let response = ProduceResponse::default().with_responses(vec![
            produce_response::TopicProduceResponse::default().with_partition_responses(vec![
                produce_response::PartitionProduceResponse::default(),
                produce_response::PartitionProduceResponse::default().with_error_code(3),
            ]),
        ]);
        let mut codes = Vec::new();
        response.each_error(&mut |code| codes.push(code));
        assert_eq!(codes, [0, 3]);
    }
}
