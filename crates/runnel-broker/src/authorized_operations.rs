//! KIP-430 authorized operations: the 32-bit field of ACL operations a client may perform on a
//! resource, which Metadata (topics; the cluster up to v10) and DescribeCluster return when
//! the request asks for them.
//!
//! Runnel has no authorizer yet, so it answers as Kafka answers without one
//! (`AuthHelper.authorizedOperations` with `authorizer = None`): every operation Kafka supports
//! on the resource type (`AclEntry.supportedOperations`), each as bit `1 << code` of its
//! `AclOperation` code. Not asked, the field is Kafka's schema default,
//! [`AUTHORIZED_OPERATIONS_OMITTED`].

/// Kafka's "authorized operations not requested" value (the schema default, `Int.MinValue`).
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Kafka's `AclOperation` codes (`org.apache.kafka.common.acl.AclOperation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AclOperation {
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
}

/// What Kafka supports on a topic: `AclEntry.supportedOperations(TOPIC)`.
pub const TOPIC_OPERATIONS: &[AclOperation] = &[
    AclOperation::Read,
    AclOperation::Write,
    AclOperation::Create,
    AclOperation::Describe,
    AclOperation::Delete,
    AclOperation::Alter,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
];

/// What Kafka supports on the cluster: `AclEntry.supportedOperations(CLUSTER)`.
pub const CLUSTER_OPERATIONS: &[AclOperation] = &[
    AclOperation::Create,
    AclOperation::ClusterAction,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
    AclOperation::IdempotentWrite,
    AclOperation::Alter,
    AclOperation::Describe,
];

/// Kafka's `Utils.to32BitField`: bit `code` set for each operation.
pub const fn bit_field(operations: &[AclOperation]) -> i32 {
    let mut field = 0i32;
    let mut i = 0;
    while i < operations.len() {
        field |= 1 << operations[i] as u8;
        i += 1;
    }
    field
}

/// The topic field a client gets without an authorizer.
pub const TOPIC_AUTHORIZED_OPERATIONS: i32 = bit_field(TOPIC_OPERATIONS);
/// The cluster field a client gets without an authorizer.
pub const CLUSTER_AUTHORIZED_OPERATIONS: i32 = bit_field(CLUSTER_OPERATIONS);

/// The field for a request that asked (`requested`) or did not.
pub fn topic(requested: bool) -> i32 {
    if requested {
        TOPIC_AUTHORIZED_OPERATIONS
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    }
}

/// The cluster field for a request that asked (`requested`) or did not.
pub fn cluster(requested: bool) -> i32 {
    if requested {
        CLUSTER_AUTHORIZED_OPERATIONS
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_kafkas_without_an_authorizer() {
        // READ..ALTER_CONFIGS but not CLUSTER_ACTION (9): bits 3-8, 10, 11.
        assert_eq!(TOPIC_AUTHORIZED_OPERATIONS, 0b1101_1111_1000);
        assert_eq!(TOPIC_AUTHORIZED_OPERATIONS, 3576);
        // CREATE (5), ALTER (7), DESCRIBE (8), CLUSTER_ACTION (9), DESCRIBE_CONFIGS (10),
        // ALTER_CONFIGS (11), IDEMPOTENT_WRITE (12).
        assert_eq!(CLUSTER_AUTHORIZED_OPERATIONS, 0b1_1111_1010_0000);
        assert_eq!(topic(false), i32::MIN);
        assert_eq!(cluster(true), CLUSTER_AUTHORIZED_OPERATIONS);
    }
}
