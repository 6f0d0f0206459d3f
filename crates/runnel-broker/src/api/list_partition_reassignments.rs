//! ListPartitionReassignments (key 46, KIP-455): the reassignments in progress, as
//! `kafka-reassign-partitions --list` and the admin clients' `listPartitionReassignments`
//! ask for them.
//!
//! As Kafka's `ReplicationControlManager.listPartitionReassignments`: a partition is listed
//! only while it is reassigning; with null topics every reassigning partition is listed, with
//! named topics those of their partitions that are, unknown topics and partitions are left
//! out (not errors). A single node has one possible replica set, itself, so no partition is
//! ever reassigning (see `alter_partition_reassignments.rs`): the answer lists none.

use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::{Reply, Request};
use crate::broker::Broker;

pub fn handle(_broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    // Decoded so that a malformed request is refused as any other.
    let _body: ListPartitionReassignmentsRequest = request.decode()?;
    let response = ListPartitionReassignmentsResponse::default();
    Ok(Reply::Ready(request.respond(&response)?))
}
