//! The subcommands of the `runnel` binary, one module each; `cluster` holds what the client
//! subcommands share.

pub mod bench;
pub mod cluster;
pub mod consume;
pub mod dev_cluster;
pub mod group;
pub mod metadata;
pub mod output;
pub mod produce;
pub mod reset_offsets;
pub mod server;
pub mod storage;
pub mod topic;
pub mod txn;
