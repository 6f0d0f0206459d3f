//! One module per Kafka API, each with a `handle` function; [`dispatch`] picks one by key.
//!
//! A handler runs in the connection's reader, in request order. It does the part of its work
//! that must happen in that order (a produce appends its batches) before it returns, and
//! returns the rest as a [`Reply`]: the response now, a future for one that waits (for fsync,
//! for fetch data), or nothing (acks=0). The connection's writer awaits replies in order, so
//! responses leave in request order, as Kafka guarantees, while waits overlap. A handler whose
//! in-order part must itself wait returns [`Reply::Ordered`]: the reader awaits it before it
//! reads the connection's next request (a transactions-v2 produce that must add its partitions
//! to the transaction before it appends).

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod alter_partition_reassignments;
mod alter_replica_log_dirs;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_quorum;
mod describe_transactions;
mod elect_leaders;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_partition_reassignments;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod response_errors;
mod sync_group;
mod txn_offset_commit;
mod write_txn_markers;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use runnel_protocol::fetch_response::Piece;
use runnel_protocol::header::{self, CodecError};
use runnel_protocol::messages::{ApiKey, RequestHeader};
use runnel_protocol::{Decodable, Encodable};

use crate::broker::Broker;
pub use response_errors::ResponseErrors;

/// A decoded request: its header and the undecoded body.
pub struct Request {
    pub api: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: Bytes,
    /// The buffer the frame was read into, which a handler may write in place once it has
    /// dropped every [`Bytes`] of the frame (produce appends its batches from it).
    pub frame: Option<crate::receive_buffers::FrameBuffer>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The API's figures, where the response's error codes are counted.
    pub figures: Option<Arc<crate::metrics::ApiFigures>>,
}

impl Request {
    /// Decodes the body as `T` (trailing bytes are ignored, as by Kafka).
    pub fn decode<T: Decodable>(&mut self) -> Result<T, CodecError> {
        header::decode_body(self.api, self.version, &mut self.body)
    }

    /// The header's client id ("" when null).
    pub fn client_id(&self) -> String {
        self.header
            .client_id
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default()
    }

    /// The client's host as Kafka reports it in group descriptions: `/127.0.0.1`.
    pub fn client_host(&self) -> String {
        format!("/{}", self.peer.ip())
    }

    /// Encodes `body` as this request's response frame, counting its error codes.
    pub fn respond<T: Encodable + ResponseErrors>(&self, body: &T) -> Result<Bytes, CodecError> {
        if let Some(figures) = &self.figures {
            body.each_error(&mut |code| figures.count_error(code, 1));
        }
        header::encode_response(self.api, self.version, self.header.correlation_id, body)
    }
}

/// A response still being produced.
pub type PendingReply = Pin<Box<dyn Future<Output = Result<Bytes, CodecError>> + Send>>;

/// A response still being produced whose frame holds records to send from segment files.
pub type PendingPieces = Pin<
    Box<dyn Future<Output = Result<Vec<Piece<crate::zero_copy::FileRange>>, CodecError>> + Send>,
>;

/// The in-order part of a handler that must wait before it can be done: it yields the reply
/// the writer then gets.
pub type OrderedReply = Pin<Box<dyn Future<Output = Result<Reply, CodecError>> + Send>>;

/// What a handler leaves for the connection's writer.
pub enum Reply {
    Ready(Bytes),
    Pending(PendingReply),
    /// A Fetch response: encoded bytes and file ranges (see [`crate::zero_copy`]).
    PendingPieces(PendingPieces),
    /// acks=0 produce: Kafka sends nothing back.
    None,
    /// Awaited by the connection's reader before it reads the next request; never reaches the
    /// writer.
    Ordered(OrderedReply),
}

/// Routes a request to its API's handler. The caller has checked that the API and version
/// are served.
pub fn dispatch(broker: &Arc<Broker>, request: Request) -> Result<Reply, CodecError> {
    match request.api {
        ApiKey::ApiVersions => api_versions::handle(broker, request),
        ApiKey::Metadata => metadata::handle(broker, request),
        ApiKey::Produce => produce::handle(broker, request),
        ApiKey::Fetch => fetch::handle(broker, request),
        ApiKey::ListOffsets => list_offsets::handle(broker, request),
        ApiKey::CreateTopics => create_topics::handle(broker, request),
        ApiKey::CreatePartitions => create_partitions::handle(broker, request),
        ApiKey::ElectLeaders => elect_leaders::handle(broker, request),
        ApiKey::DeleteTopics => delete_topics::handle(broker, request),
        ApiKey::DeleteRecords => delete_records::handle(broker, request),
        ApiKey::DescribeConfigs => describe_configs::handle(broker, request),
        ApiKey::AlterConfigs => alter_configs::handle(broker, request),
        ApiKey::IncrementalAlterConfigs => incremental_alter_configs::handle(broker, request),
        ApiKey::InitProducerId => init_producer_id::handle(broker, request),
        ApiKey::AddPartitionsToTxn => add_partitions_to_txn::handle(broker, request),
        ApiKey::AddOffsetsToTxn => add_offsets_to_txn::handle(broker, request),
        ApiKey::EndTxn => end_txn::handle(broker, request),
        ApiKey::TxnOffsetCommit => txn_offset_commit::handle(broker, request),
        ApiKey::FindCoordinator => find_coordinator::handle(broker, request),
        ApiKey::JoinGroup => join_group::handle(broker, request),
        ApiKey::SyncGroup => sync_group::handle(broker, request),
        ApiKey::Heartbeat => heartbeat::handle(broker, request),
        ApiKey::LeaveGroup => leave_group::handle(broker, request),
        ApiKey::OffsetCommit => offset_commit::handle(broker, request),
        ApiKey::OffsetFetch => offset_fetch::handle(broker, request),
        ApiKey::ListGroups => list_groups::handle(broker, request),
        ApiKey::DescribeGroups => describe_groups::handle(broker, request),
        ApiKey::DeleteGroups => delete_groups::handle(broker, request),
        ApiKey::OffsetDelete => offset_delete::handle(broker, request),
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch::handle(broker, request),
        ApiKey::DescribeCluster => describe_cluster::handle(broker, request),
        ApiKey::DescribeQuorum => describe_quorum::handle(broker, request),
        ApiKey::WriteTxnMarkers => write_txn_markers::handle(broker, request),
        ApiKey::DescribeProducers => describe_producers::handle(broker, request),
        ApiKey::DescribeTransactions => describe_transactions::handle(broker, request),
        ApiKey::ListTransactions => list_transactions::handle(broker, request),
        ApiKey::DescribeLogDirs => describe_log_dirs::handle(broker, request),
        ApiKey::AlterReplicaLogDirs => alter_replica_log_dirs::handle(broker, request),
        ApiKey::ListPartitionReassignments => list_partition_reassignments::handle(broker, request),
        ApiKey::AlterPartitionReassignments => {
            alter_partition_reassignments::handle(broker, request)
        }
        other => unreachable!("{other:?} is not in the served table"),
    }
}

pub use api_versions::unsupported_api_versions_response;

/// Shorthand for a topic name in responses.
pub(crate) fn topic_name(name: &str) -> runnel_protocol::messages::TopicName {
    runnel_protocol::StrBytes::from_string(name.to_string()).into()
}
