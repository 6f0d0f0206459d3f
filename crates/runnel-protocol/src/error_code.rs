//! Kafka's error codes, with Kafka's names verbatim.
//!
//! Only the codes Runnel answers with are listed; the numbers are fixed by the protocol
//! (`org.apache.kafka.common.protocol.Errors`) and must never change.

macro_rules! error_codes {
    ($($variant:ident = $code:literal, $name:literal;)*) => {
        /// A Kafka protocol error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i16)]
        pub enum ErrorCode {
            $($variant = $code,)*
        }

        impl ErrorCode {
            /// The i16 sent on the wire.
            pub const fn code(self) -> i16 {
                self as i16
            }

            /// Kafka's name for the code, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }

            /// The code for a wire value, if Runnel knows it.
            pub const fn from_code(code: i16) -> Option<ErrorCode> {
                match code {
                    $($code => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    UnknownServerError = -1, "UNKNOWN_SERVER_ERROR";
    None = 0, "NONE";
    OffsetOutOfRange = 1, "OFFSET_OUT_OF_RANGE";
    CorruptMessage = 2, "CORRUPT_MESSAGE";
    UnknownTopicOrPartition = 3, "UNKNOWN_TOPIC_OR_PARTITION";
    InvalidFetchSize = 4, "INVALID_FETCH_SIZE";
    LeaderNotAvailable = 5, "LEADER_NOT_AVAILABLE";
    NotLeaderOrFollower = 6, "NOT_LEADER_OR_FOLLOWER";
    RequestTimedOut = 7, "REQUEST_TIMED_OUT";
    MessageTooLarge = 10, "MESSAGE_TOO_LARGE";
    OffsetMetadataTooLarge = 12, "OFFSET_METADATA_TOO_LARGE";
    CoordinatorLoadInProgress = 14, "COORDINATOR_LOAD_IN_PROGRESS";
    CoordinatorNotAvailable = 15, "COORDINATOR_NOT_AVAILABLE";
    NotCoordinator = 16, "NOT_COORDINATOR";
    InvalidTopicException = 17, "INVALID_TOPIC_EXCEPTION";
    RecordListTooLarge = 18, "RECORD_LIST_TOO_LARGE";
    NotEnoughReplicas = 19, "NOT_ENOUGH_REPLICAS";
    NotEnoughReplicasAfterAppend = 20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND";
    InvalidRequiredAcks = 21, "INVALID_REQUIRED_ACKS";
    IllegalGeneration = 22, "ILLEGAL_GENERATION";
    InconsistentGroupProtocol = 23, "INCONSISTENT_GROUP_PROTOCOL";
    InvalidGroupId = 24, "INVALID_GROUP_ID";
    UnknownMemberId = 25, "UNKNOWN_MEMBER_ID";
    InvalidSessionTimeout = 26, "INVALID_SESSION_TIMEOUT";
    RebalanceInProgress = 27, "REBALANCE_IN_PROGRESS";
    InvalidTimestamp = 32, "INVALID_TIMESTAMP";
    UnsupportedSaslMechanism = 33, "UNSUPPORTED_SASL_MECHANISM";
    IllegalSaslState = 34, "ILLEGAL_SASL_STATE";
    UnsupportedVersion = 35, "UNSUPPORTED_VERSION";
    TopicAlreadyExists = 36, "TOPIC_ALREADY_EXISTS";
    InvalidPartitions = 37, "INVALID_PARTITIONS";
    InvalidReplicationFactor = 38, "INVALID_REPLICATION_FACTOR";
    InvalidReplicaAssignment = 39, "INVALID_REPLICA_ASSIGNMENT";
    InvalidConfig = 40, "INVALID_CONFIG";
    InvalidRequest = 42, "INVALID_REQUEST";
    UnsupportedForMessageFormat = 43, "UNSUPPORTED_FOR_MESSAGE_FORMAT";
    PolicyViolation = 44, "POLICY_VIOLATION";
    OutOfOrderSequenceNumber = 45, "OUT_OF_ORDER_SEQUENCE_NUMBER";
    DuplicateSequenceNumber = 46, "DUPLICATE_SEQUENCE_NUMBER";
    InvalidProducerEpoch = 47, "INVALID_PRODUCER_EPOCH";
    InvalidTxnState = 48, "INVALID_TXN_STATE";
    InvalidProducerIdMapping = 49, "INVALID_PRODUCER_ID_MAPPING";
    TransactionalIdAuthorizationFailed = 53, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED";
    KafkaStorageError = 56, "KAFKA_STORAGE_ERROR";
    SaslAuthenticationFailed = 58, "SASL_AUTHENTICATION_FAILED";
    UnknownProducerId = 59, "UNKNOWN_PRODUCER_ID";
    NonEmptyGroup = 68, "NON_EMPTY_GROUP";
    GroupIdNotFound = 69, "GROUP_ID_NOT_FOUND";
    UnsupportedCompressionType = 76, "UNSUPPORTED_COMPRESSION_TYPE";
    OffsetNotAvailable = 78, "OFFSET_NOT_AVAILABLE";
    MemberIdRequired = 79, "MEMBER_ID_REQUIRED";
    PreferredLeaderNotAvailable = 80, "PREFERRED_LEADER_NOT_AVAILABLE";
    GroupMaxSizeReached = 81, "GROUP_MAX_SIZE_REACHED";
    FencedInstanceId = 82, "FENCED_INSTANCE_ID";
    ElectionNotNeeded = 84, "ELECTION_NOT_NEEDED";
    EligibleLeadersNotAvailable = 83, "ELIGIBLE_LEADERS_NOT_AVAILABLE";
    GroupSubscribedToTopic = 86, "GROUP_SUBSCRIBED_TO_TOPIC";
    FetchSessionIdNotFound = 70, "FETCH_SESSION_ID_NOT_FOUND";
    FencedLeaderEpoch = 74, "FENCED_LEADER_EPOCH";
    UnknownLeaderEpoch = 75, "UNKNOWN_LEADER_EPOCH";
    InvalidRecord = 87, "INVALID_RECORD";
    ProducerFenced = 90, "PRODUCER_FENCED";
    UnknownTopicId = 100, "UNKNOWN_TOPIC_ID";
    InconsistentTopicId = 103, "INCONSISTENT_TOPIC_ID";
    ReplicaNotAvailable = 9, "REPLICA_NOT_AVAILABLE";
    LogDirNotFound = 57, "LOG_DIR_NOT_FOUND";
    NoReassignmentInProgress = 85, "NO_REASSIGNMENT_IN_PROGRESS";
    MismatchedEndpointType = 114, "MISMATCHED_ENDPOINT_TYPE";
    UnsupportedEndpointType = 115, "UNSUPPORTED_ENDPOINT_TYPE";
    InvalidTransactionTimeout = 50, "INVALID_TRANSACTION_TIMEOUT";
    ConcurrentTransactions = 51, "CONCURRENT_TRANSACTIONS";
    TransactionCoordinatorFenced = 52, "TRANSACTION_COORDINATOR_FENCED";
    OperationNotAttempted = 55, "OPERATION_NOT_ATTEMPTED";
    UnstableOffsetCommit = 88, "UNSTABLE_OFFSET_COMMIT";
    TransactionalIdNotFound = 105, "TRANSACTIONAL_ID_NOT_FOUND";
    TransactionAbortable = 120, "TRANSACTION_ABORTABLE";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn codes_and_names_match_kafka() {
        assert_eq!(ErrorCode::UnknownTopicOrPartition.code(), 3);
        assert_eq!(ErrorCode::UnsupportedVersion.code(), 35);
        assert_eq!(ErrorCode::InvalidRecord.code(), 87);
        assert_eq!(ErrorCode::CorruptMessage.name(), "CORRUPT_MESSAGE");
        assert_eq!(ErrorCode::from_code(10), Some(ErrorCode::MessageTooLarge));
        assert_eq!(ErrorCode::from_code(9999), None);
    }

    #[test]
    fn codes_agree_with_the_kafka_protocol_crate() {
        use kafka_protocol::error::ResponseError;
        for code in -1..=120i16 {
            if let (Some(ours), Some(theirs)) = (
                ErrorCode::from_code(code),
                ResponseError::try_from_code(code),
            ) {
                let theirs = format!("{theirs:?}");
                let ours_camel: String = ours
                    .name()
                    .split('_')
                    .map(|w| w[..1].to_string() + &w[1..].to_lowercase())
                    .collect();
                assert_eq!(ours_camel, theirs, "code {code}");
            }
        }
    }
}
