//! What the coordinator is asked and what it answers, free of wire versions: the broker's
//! handlers fill these from any version of a request and shape the answers back per version.

use bytes::Bytes;
use runnel_protocol::ErrorCode;

/// JoinGroup.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+ (KIP-394): a new dynamic member first gets MEMBER_ID_REQUIRED and an id.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: ErrorCode,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member's metadata for the chosen protocol, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    pub fn error(error: ErrorCode, member_id: &str) -> JoinResult {
        JoinResult {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// SyncGroup.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v5+; checked when present.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// (member id, assignment): sent by the leader only.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: ErrorCode) -> SyncResult {
        SyncResult {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// Heartbeat.
#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// One member leaving: by member id, or by group instance id (static members).
#[derive(Debug, Clone)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveResult {
    pub error: ErrorCode,
    /// Per leaving member, in request order: (member id, group instance id, error).
    pub members: Vec<(String, Option<String>, ErrorCode)>,
}

/// One partition's offset in an OffsetCommit.
#[derive(Debug, Clone)]
pub struct CommitPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// OffsetCommit. `generation_id` -1 with an empty member id is a simple (non-member) commit.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub partitions: Vec<CommitPartition>,
}

/// Per partition, in request order: (topic, partition, error).
pub type CommitResult = Vec<(String, i32, ErrorCode)>;

/// OffsetFetch for one group: `None` partitions means every committed partition.
/// TxnOffsetCommit: offsets that take effect when the producer's transaction commits (Kafka's
/// pending transactional offsets), and are dropped if it aborts.
#[derive(Debug, Clone)]
pub struct TxnCommitRequest {
    pub group_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// v3+; -1 (and an empty member id) below, or from a client outside group management.
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub partitions: Vec<CommitPartition>,
}

/// A transaction marker for this partition: the transaction coordinator's COMMIT or ABORT of
/// `producer_id`, which this coordinator writes to its own partition so that it lands in
/// order with its other records (Kafka's `CoordinatorRuntime.completeTransaction`).
#[derive(Debug, Clone)]
pub struct CompleteTxnRequest {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
}

#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub group_id: String,
    pub partitions: Option<Vec<(String, i32)>>,
    /// OffsetFetch v7+ (KIP-447): a partition with pending transactional offsets answers
    /// UNSTABLE_OFFSET_COMMIT instead of its committed offset.
    pub require_stable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub topic: String,
    pub partition: i32,
    /// UNSTABLE_OFFSET_COMMIT for a partition with pending transactional offsets under
    /// `require_stable`; NONE otherwise.
    pub error: ErrorCode,
    /// -1 when nothing is committed.
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResult {
    pub error: ErrorCode,
    pub offsets: Vec<FetchedOffset>,
}

/// DescribeGroups' view of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub error: ErrorCode,
    /// Kafka's state name: "Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead".
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<DescribedMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

/// OffsetDelete: (topic, partition) pairs.
#[derive(Debug, Clone)]
pub struct OffsetDeleteRequest {
    pub group_id: String,
    pub partitions: Vec<(String, i32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetDeleteResult {
    pub error: ErrorCode,
    pub partitions: Vec<(String, i32, ErrorCode)>,
}

/// Everything the coordinator is asked.
#[derive(Debug, Clone)]
pub enum Request {
    Join(JoinRequest),
    Sync(SyncRequest),
    Heartbeat(HeartbeatRequest),
    Leave {
        group_id: String,
        members: Vec<LeavingMember>,
    },
    Commit(CommitRequest),
    TxnCommit(TxnCommitRequest),
    CompleteTxn(CompleteTxnRequest),
    Fetch(FetchRequest),
    Describe(Vec<String>),
    /// ListGroups with a states filter (empty = all), matched case-insensitively.
    List(Vec<String>),
    Delete(Vec<String>),
    OffsetDelete(OffsetDeleteRequest),
}

/// Everything the coordinator answers; one variant per [`Request`] variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Join(JoinResult),
    Sync(SyncResult),
    Heartbeat(ErrorCode),
    Leave(LeaveResult),
    Commit(CommitResult),
    TxnCommit(CommitResult),
    /// The marker is written (NONE) or could not be.
    CompleteTxn(ErrorCode),
    Fetch(FetchResult),
    Describe(Vec<GroupDescription>),
    List(Vec<ListedGroup>),
    Delete(Vec<(String, ErrorCode)>),
    OffsetDelete(OffsetDeleteResult),
}
