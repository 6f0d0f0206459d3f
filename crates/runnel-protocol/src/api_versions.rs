//! The API keys and version ranges Runnel serves: the one table every other part consults.
//!
//! The ranges follow ../shared/PROTOCOL-NOTES.md: never below Kafka 4.1's minimums, and low
//! enough for every client we test (librdkafka 2.0.2 and kafkajs included). A request for a
//! key or version outside this table is answered `UNSUPPORTED_VERSION`.

use kafka_protocol::messages::ApiKey;

/// One served API: its key and the inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedApi {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
}

const fn served(key: ApiKey, min_version: i16, max_version: i16) -> ServedApi {
    ServedApi {
        key,
        min_version,
        max_version,
    }
}

/// Every API Runnel answers on its client listener.
pub const SERVED_APIS: &[ServedApi] = &[
    served(ApiKey::Produce, 3, 12),
    served(ApiKey::Fetch, 4, 16),
    served(ApiKey::ListOffsets, 1, 8),
    served(ApiKey::Metadata, 0, 12),
    served(ApiKey::ApiVersions, 0, 4),
    served(ApiKey::SaslHandshake, 0, 1),
    served(ApiKey::SaslAuthenticate, 0, 2),
    served(ApiKey::CreateTopics, 2, 7),
    served(ApiKey::DeleteTopics, 1, 6),
    served(ApiKey::CreatePartitions, 0, 3),
    served(ApiKey::ElectLeaders, 0, 2),
    served(ApiKey::DeleteRecords, 0, 2),
    served(ApiKey::DescribeConfigs, 1, 4),
    served(ApiKey::AlterConfigs, 0, 2),
    served(ApiKey::IncrementalAlterConfigs, 0, 1),
    served(ApiKey::InitProducerId, 0, 5),
    served(ApiKey::FindCoordinator, 0, 6),
    served(ApiKey::AddPartitionsToTxn, 0, 5),
    served(ApiKey::AddOffsetsToTxn, 0, 4),
    served(ApiKey::EndTxn, 0, 5),
    served(ApiKey::TxnOffsetCommit, 0, 5),
    served(ApiKey::JoinGroup, 0, 9),
    served(ApiKey::SyncGroup, 0, 5),
    served(ApiKey::Heartbeat, 0, 4),
    served(ApiKey::LeaveGroup, 0, 5),
    served(ApiKey::OffsetCommit, 2, 9),
    served(ApiKey::OffsetFetch, 1, 9),
    served(ApiKey::ListGroups, 0, 5),
    served(ApiKey::DescribeGroups, 0, 5),
    served(ApiKey::DeleteGroups, 0, 2),
    served(ApiKey::OffsetDelete, 0, 0),
    served(ApiKey::OffsetForLeaderEpoch, 2, 4),
    served(ApiKey::DescribeCluster, 0, 2),
    served(ApiKey::DescribeQuorum, 0, 2),
    served(ApiKey::WriteTxnMarkers, 1, 1),
    served(ApiKey::DescribeProducers, 0, 0),
    served(ApiKey::DescribeTransactions, 0, 0),
    served(ApiKey::ListTransactions, 0, 1),
    served(ApiKey::DescribeLogDirs, 1, 4),
    served(ApiKey::AlterReplicaLogDirs, 1, 2),
    served(ApiKey::ListPartitionReassignments, 0, 0),
    served(ApiKey::AlterPartitionReassignments, 0, 0),
];

/// The served range for a raw API key, or `None` when the key is not served.
pub fn served_api(api_key: i16) -> Option<ServedApi> {
    SERVED_APIS
        .iter()
        .copied()
        .find(|api| api.key as i16 == api_key)
}

/// Whether `(api_key, api_version)` is served.
pub fn is_served(api_key: i16, api_version: i16) -> bool {
    served_api(api_key)
        .is_some_and(|api| (api.min_version..=api.max_version).contains(&api_version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_range_is_within_what_the_codec_supports() {
        for api in SERVED_APIS {
            let valid = api.key.valid_versions();
            assert!(
                api.min_version >= valid.min && api.max_version <= valid.max,
                "{:?} {}..{} outside codec range {}",
                api.key,
                api.min_version,
                api.max_version,
                valid
            );
        }
    }

    #[test]
    fn lookups() {
        assert!(is_served(18, 3));
        assert!(!is_served(18, 5));
        assert!(!is_served(0, 2));
        assert!(served_api(9999).is_none());
    }
}
