//! Runnel's metadata quorum: the cluster metadata log replicated by Raft.
//!
//! # What it owns
//! - The Raft types ([`types`]): entries carry [`MetadataRecords`], node ids are Kafka's
//!   `node.id`.
//! - The Raft log on disk in `<data dir>/__cluster_metadata-0/`, through `runnel-log`
//!   ([`log_store`], recovery rules in `log_scan.rs`), with the vote in `quorum-state`
//!   ([`quorum_state`]).
//! - The state machine: the `runnel-metadata` image, records folded in as they commit
//!   ([`state_machine`]); snapshots are the image serialized ([`snapshot`]).
//! - Raft's own messages between controllers ([`frame`] is the wire format, `network.rs` the
//!   client, `rpc_server.rs` the listener) over a [`transport::Transport`]: TCP in the
//!   product, a simulated network in a simulation.
//! - [`MetadataQuorum`] (`node.rs`): start a node, propose on the leader, watch the applied
//!   image, see the leader and term, change the voters, shut down.
//! - Carrying a change from a follower to the leader ([`forward`]): the leader alone proposes.
//! - Broker-only nodes as non-voting learners that join through the voters ([`learner`]).
//! - The quorum as the leader sees it, for DescribeQuorum ([`describe`]).
//! - When a voter campaigns (`election_timer`): Raft's timer, in place of openraft's.
//! - openraft's types in JSON on disk and on the wire, older forms included (`openraft_json`).
//!
//! It knows nothing of partitions' data or client connections. The broker's controller
//! (`runnel-broker/src/controller.rs`) runs on it: `runnel server` is a quorum of one, or one
//! voter of several (`controller.quorum.voters`).
//!
//! # Layout of `<data dir>/__cluster_metadata-0/`
//! ```text
//! 00000000000000000000.log (+ .index, .timeindex)  one record batch per Raft entry  (log_store.rs)
//! leader-epoch-checkpoint                          where each Raft term starts      (runnel-log)
//! quorum-state                                     vote, committed, last purged     (quorum_state.rs)
//! 00000000000000000041-0000000004.checkpoint       newest snapshot: index 41, term 4 (snapshot.rs)
//! ```
//!
//! # Why openraft is pinned to exactly 0.9.25
//! 0.9.25 is the newest stable openraft with the fix for its snapshot/membership safety bug
//! (openraft issue 1808); 0.10 is still alpha and its API moves between releases. The exact pin
//! (`=0.9.25`) keeps a `cargo update` from bringing in a release whose storage or network trait
//! contracts, or whose safety fixes, we have not read: a change of version is a reviewed change
//! of this crate, with its tests. The `storage-v2` feature is required because 0.9 seals
//! `RaftLogStorage` and `RaftStateMachine` without it.
//!
//! # One leader per term (`single-term-leader`)
//! openraft 0.9 by default identifies a leader by (term, node id): a voter may grant two
//! candidates of one term (the higher node id second), so a term can have two leaders, one
//! after the other. Runnel's term is Kafka's leader epoch (DescribeQuorum, the metadata log's
//! batches and leader-epoch checkpoint), which names one leader, so the crate builds openraft
//! with `single-term-leader`: Raft's standard rule, one vote per term, at the price of split
//! votes (two candidates of one term both lose, and campaign again after a random timeout).
//! `runnel-sim` checks one leader per term on every run. The feature changes the JSON of log ids
//! and votes; `openraft_json` reads the older form too.

pub mod describe;
mod election_timer;
pub mod forward;
pub mod frame;
pub mod learner;
mod log_scan;
pub mod log_store;
mod network;
mod node;
mod openraft_json;
pub mod quorum_state;
mod rpc_server;
pub mod snapshot;
pub mod state_machine;
pub mod transport;
pub mod types;

pub use describe::{QuorumDescription, ReplicaDescription};
pub use forward::{ForwardError, ForwardHandler, Forwarded};
pub use log_scan::MetadataLogDamage;
pub use log_store::{LogStore, LogStoreError, METADATA_LOG_DIR};
pub use node::{
    AppliedMetadata, ChangeVotersError, MetadataQuorum, ProposeError, QuorumConfig, StartError,
    Voter, VoterParseError, ENTRIES_PER_APPEND_MAX, PROPOSAL_BYTES_MAX,
};
pub use transport::{Tcp, Transport};
pub use types::{MetadataRecords, NodeId, TypeConfig};

/// What openraft reports of a node: its state, the leader, the term, log indexes.
pub type QuorumMetrics = openraft::metrics::RaftMetrics<NodeId, openraft::BasicNode>;
