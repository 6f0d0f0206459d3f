//! The Runnel broker: everything between a client's socket and the storage engine.
//!
//! Owns the listener and connections ([`connection`], with their limits in
//! [`connection_quotas`] and [`request_memory`], the buffers frames are read into in
//! [`receive_buffers`]), one handler per Kafka API ([`api`]),
//! the partitions this broker hosts ([`replica_manager`], [`partition`]) in their log
//! directories ([`log_dirs`]: JBOD, placement, failed directories; moves between them in
//! [`replica_move`]), partition replication between brokers ([`replication`]: follower
//! fetchers, the leader's view of its in-sync replicas), KIP-430's authorized operations ([`authorized_operations`]), the group-commit
//! flusher that makes acknowledged writes durable ([`flusher`]; its opt-in one-`syncfs`-per-pass mode in
//! [`filesystem_sync`]), the consumer-group
//! coordinator's driver ([`group_coordinator`], around `runnel-coordinator`), the transaction
//! coordinator's driver and its markers ([`transaction_coordinator`]), which of their internal topics' partitions run here ([`coordinator_shards`]), the controller on the metadata
//! quorum ([`controller`], a quorum of one), producer ids from its blocks ([`producer_ids`]) and its log read at start ([`metadata_log`]: torn tail or damage), the data
//! directory's lock and stray partition directories ([`data_dir`]), Kafka's `partition.metadata`
//! ([`partition_metadata`]), `runnel metadata rebuild` ([`metadata_rebuild`]), `runnel storage format` ([`storage_format`]), configuration with Kafka's names ([`config`]; the catalog of broker configs in
//! [`broker_config_catalog`], the live view with dynamic broker configs in [`dynamic_config`]), sending fetched
//! records straight from segment files ([`zero_copy`]), metrics ([`metrics`]) and the web console
//! ([`console`]) on the HTTP port ([`http`]), and start/stop ([`server`]). Encodings belong to `runnel-protocol`, files to `runnel-log`, the meaning of
//! metadata to `runnel-metadata`.
//!
//! A produce, socket to disk: [`connection`] reads a frame and checks its size and API
//! version → [`api::dispatch`] → `api/produce.rs` → [`replica_manager::ReplicaManager::append`]
//! validates the batch and appends it to its [`partition::Partition`]'s log → the
//! [`flusher::Flusher`] fsyncs and advances the high watermark → the parked response is sent,
//! in request order.

pub mod api;
pub mod authorized_operations;
pub mod broker;
pub mod broker_config_catalog;
pub mod cleaner;
pub mod config;
pub mod connection;
pub mod connection_quotas;
pub mod console;
pub mod controller;
pub mod controller_change;
pub mod coordinator_shards;
pub mod data_dir;
pub mod dynamic_config;
pub mod filesystem_sync;
pub mod flusher;
pub mod group_coordinator;
pub mod group_offsets;
pub mod http;
pub mod idle_expiry;
pub mod image_applier;
pub mod inter_broker;
pub mod log_dirs;
pub mod meta_properties;
pub mod metadata_log;
pub mod metadata_rebuild;
pub mod metadata_staging;
pub mod metrics;
pub mod partition;
pub mod partition_metadata;
pub mod placement;
pub mod producer_ids;
pub mod receive_buffers;
pub mod record_errors;
pub mod replica_manager;
pub mod replica_move;
pub mod replication;
pub mod request_memory;
pub mod retention;
pub mod sasl;
pub mod scrubber;
pub mod server;
pub mod storage_format;
pub mod topic_config;
pub mod transaction_coordinator;
pub mod zero_copy;

pub use config::{BrokerConfig, ConfigError};
pub use server::{start, start_controller, RunningBroker, RunningController, ServerError};

/// Milliseconds since the Unix epoch, the unit of Kafka timestamps.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
