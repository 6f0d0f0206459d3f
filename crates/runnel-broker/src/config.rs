//! Broker and topic configuration, with Kafka's names and (except where noted) defaults.
//!
//! Sources, lowest precedence first: built-in defaults, a `server.properties` file, then
//! `--override key=value` pairs; the binary merges the last two into one map and
//! [`BrokerConfig::from_properties`] reads it. Unknown keys are logged and ignored, as Kafka
//! does; Kafka's keys that Runnel has no use for are logged at INFO as such. The node's roles
//! and listeners (KRaft's keys) are read together in [`kraft`]. Topic-level overrides (given at CreateTopics) take precedence over the broker's `log.*`
//! defaults; [`TopicSettings::resolve`] applies that rule.
//!
//! Departure from Kafka: `log.flush.interval.messages` defaults to 1, not `Long.MAX_VALUE`.
//! Runnel is durable by default: a produce with acks=1 or acks=all is answered only after its
//! batch was fsync'd (group-committed with every other partition's pending appends).
//!
//! Departure from Kafka: `queued.max.request.bytes` defaults to 256 MiB, not -1 (unbounded).
//! Kafka bounds queued requests by count (`queued.max.requests`, 500) instead, which holds
//! up to 500 frames of `socket.request.max.bytes` (50 GB); Runnel has no request queue to
//! count, and bounds the bytes. It must be at least `socket.request.max.bytes`; ≤ 0 means
//! unbounded, as in Kafka.

mod known_keys;
pub mod kraft;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use runnel_coordinator::transaction::TxnConfig;
use runnel_coordinator::GroupConfig;
use runnel_log::{CompactionPolicy, LogConfig, RetentionPolicy};
use runnel_protocol::frame::SOCKET_REQUEST_MAX_BYTES_DEFAULT;
use runnel_protocol::records::Compression;

use crate::sasl::PlainUsers;
use thiserror::Error;

/// Runnel's default `queued.max.request.bytes` (Kafka's is -1, unbounded).
pub const QUEUED_MAX_REQUEST_BYTES_DEFAULT: usize = 256 << 20;

/// Kafka's default `message.max.bytes`: 1 MiB plus the record batch overhead.
pub const MESSAGE_MAX_BYTES_DEFAULT: usize = 1_048_588;

/// A configuration value that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid value {value:?} for configuration {key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    fn new(key: &str, value: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Where the listener binds and what it tells clients to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedListener {
    pub host: String,
    pub port: u16,
}

/// Default of `log.scrub.bytes.per.second`: 1 MiB/s, a small share of any disk.
pub const SCRUB_BYTES_PER_SECOND_DEFAULT: u64 = 1024 * 1024;
/// Default of `log.scrub.interval.ms`: one hour between passes.
pub const SCRUB_INTERVAL_MS_DEFAULT: u64 = 3_600_000;

/// The compaction task (`log.cleaner.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`.
    pub enable: bool,
    /// `log.cleaner.backoff.ms`: the pause between passes over the compacted partitions.
    pub backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: the bound on one pass's key → offset map.
    pub dedupe_buffer_bytes: usize,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            enable: true,
            backoff_ms: 15_000,
            dedupe_buffer_bytes: 128 * 1024 * 1024,
        }
    }
}

/// When appended data is fsync'd and when producers are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// `log.flush.interval.messages`: flush a partition once this many messages are unflushed.
    /// 1 (the default) means durable: acks=1/all wait for the fsync of their batch.
    pub interval_messages: u64,
    /// `log.flush.interval.ms`: flush every partition with unflushed data at least this often.
    pub interval_ms: u64,
    /// `log.flush.syncfs` (Runnel's own): one `syncfs` per log directory per flusher pass
    /// instead of one `fdatasync` per partition ([`crate::filesystem_sync`]).
    pub sync_filesystem: bool,
}

impl FlushPolicy {
    /// Whether producers (acks ≥ 1) and consumers (the high watermark) wait for fsync.
    pub fn is_durable(&self) -> bool {
        self.interval_messages <= 1
    }
}

/// Everything the broker reads from its configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`.
    pub node_id: i32,
    /// `broker.rack`: registered with the broker and listed in Metadata.
    pub rack: Option<String>,
    /// `process.roles`: a combined node, or broker-only (a learner of the metadata quorum) or
    /// controller-only (a voter that serves no clients).
    pub role: kraft::ProcessRole,
    /// `controller.quorum.voters` when it names several nodes, or when this node has a single
    /// role: the metadata quorum's voters (this node one of them unless broker-only). Empty:
    /// a quorum of one, this node its only voter.
    pub quorum_voters: Vec<runnel_controller::Voter>,
    /// Where the controller listener is bound when [`BrokerConfig::quorum_voters`] is set:
    /// the `listeners` entry named in `controller.listener.names`, else this node's voter
    /// address.
    pub controller_listen: Option<SocketAddr>,
    /// `broker.session.timeout.ms`: the active controller fences a broker it has not heard
    /// from for this long. Kafka's default 9000.
    pub broker_session_timeout_ms: u64,
    /// `replica.selector.class`: set to Kafka's `RackAwareReplicaSelector`, a partition leader
    /// points a consumer that names its rack (`client.rack`) at an in-sync replica on that
    /// rack (KIP-392). Kafka's default: none, every consumer reads from the leader.
    pub rack_aware_replica_selector: bool,
    /// `replica.lag.time.max.ms`: a partition leader drops a follower from the ISR that has
    /// not caught up for this long. Kafka's default 30000.
    pub replica_lag_time_max_ms: u64,
    /// `auto.leader.rebalance.enable`: the active controller moves the lead of partitions back
    /// to their preferred replicas. Kafka's default true.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms: the pause between two balancing
    /// passes. Kafka's default 300 s.
    pub leader_imbalance_check_interval_ms: u64,
    /// `broker.heartbeat.interval.ms`: how often this broker heartbeats to the active
    /// controller. Kafka's default 2000.
    pub broker_heartbeat_interval_ms: u64,
    /// `controller.quorum.election.timeout.ms`: how soon the voters replace a lost active
    /// controller (`runnel_controller::QuorumConfig::election_timeout_ms` says how). Kafka's
    /// default 1000.
    pub controller_election_timeout_ms: u64,
    /// `listeners` (`PLAINTEXT://host:port`) or `--listen`: the address bound, a host name
    /// resolved when the configuration is read (see [`listen_address`]).
    pub listen: SocketAddr,
    /// The host of `listeners` / `--listen` when it is a name (`localhost`), not an address:
    /// what Metadata tells clients when `advertised.listeners` is absent, as Kafka advertises
    /// its listeners as written.
    pub listen_host: Option<String>,
    /// `advertised.listeners` or `--advertised-listener`; the bound address when absent.
    pub advertised_listener: Option<AdvertisedListener>,
    /// The first of `log.dirs` (or `log.dir`), or `--data-dir`: the data directory, which also
    /// holds the metadata log and `meta.properties`.
    pub data_dir: PathBuf,
    /// The rest of `log.dirs` (JBOD, [`crate::log_dirs`]); empty for one directory.
    pub extra_log_dirs: Vec<PathBuf>,
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `message.max.bytes`: the largest record batch accepted (per topic: `max.message.bytes`).
    pub message_max_bytes: usize,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// `max.connections`.
    pub connections_max: usize,
    /// `max.connections.per.ip`.
    pub connections_max_per_ip: usize,
    /// `max.connections.per.ip.overrides`: `ip:count` pairs (IP addresses; host names are not
    /// resolved).
    pub connections_max_per_ip_overrides: HashMap<IpAddr, usize>,
    /// `connections.max.idle.ms`: connections with no bytes read or written for this long, and
    /// no request waiting on the broker, are closed; `None` (a negative value) never.
    pub connections_max_idle_ms: Option<u64>,
    /// `queued.max.request.bytes`: request bytes in flight, over all connections; `None`
    /// (a value ≤ 0) unbounded.
    pub queued_max_request_bytes: Option<usize>,
    /// The users of a `SASL_PLAINTEXT` listener (SASL/PLAIN, see [`crate::sasl`]); `None`
    /// for a `PLAINTEXT` one.
    pub sasl_plain_users: Option<PlainUsers>,
    /// `connection.failed.authentication.delay.ms`: how long a connection whose authentication
    /// failed stays open after the failure is answered (Kafka's KIP-306 delay).
    pub failed_authentication_delay_ms: u64,
    /// `http.listen` or `--http-listen`: where `GET /metrics` and `GET /health` are served;
    /// off when absent (Runnel's own key: Kafka has no HTTP port).
    pub http_listen: Option<SocketAddr>,
    /// `log.segment.bytes`, `log.roll.ms`, `log.index.interval.bytes`, `log.index.size.max.bytes`.
    pub log: LogConfig,
    pub flush: FlushPolicy,
    /// `log.flush.offset.checkpoint.interval.ms`: how often recovery points are checkpointed.
    pub checkpoint_interval_ms: u64,
    /// The properties this configuration was read from, as given (for DescribeConfigs'
    /// sources).
    pub properties: BTreeMap<String, String>,
    /// `log.retention.ms` (or `.minutes`, `.hours`) and `log.retention.bytes`.
    pub retention: RetentionPolicy,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: u64,
    /// `log.cleaner.*`: the compaction task.
    pub cleaner: CleanerConfig,
    /// `log.scrub.bytes.per.second` (Runnel's own key; Kafka has no scrubber): the rate at
    /// which the scrubber re-reads sealed segments to verify their CRCs; 0 turns it off.
    pub scrub_bytes_per_second: u64,
    /// `log.scrub.interval.ms` (Runnel's own key): the pause between two scrub passes over
    /// every partition.
    pub scrub_interval_ms: u64,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when it is created.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`: replicas of each `__consumer_offsets` partition
    /// (at most the cluster's size, see [`crate::broker::Broker::internal_topic_factor`]).
    pub offsets_topic_replication_factor: i16,
    /// `group.*` and `offsets.retention.*` settings of the group coordinator.
    pub groups: GroupConfig,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state` when it is
    /// created.
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor`: replicas of each `__transaction_state`
    /// partition (at most the cluster's size, as for `__consumer_offsets`).
    pub transaction_state_log_replication_factor: i16,
    /// `transaction.max.timeout.ms`, `transactional.id.expiration.ms` and the two cleanup
    /// intervals of the transaction coordinator. Its partition counts are the topics' own,
    /// filled in when the coordinator starts.
    pub transactions: TxnConfig,
    /// `log.open.files.max` (Runnel's own): segment files held open at once, process-wide
    /// (`runnel_log::open_files`); `None` derives it from `RLIMIT_NOFILE` (half of the soft
    /// limit).
    pub open_files_max: Option<usize>,
    /// `max.broker.partitions` (KIP-578's name): partitions this node hosts at most; a
    /// creation past it is refused with `POLICY_VIOLATION`.
    pub broker_partitions_max: usize,
}

/// Default of `max.broker.partitions`: twice the 50,000 partitions a start is tested with
/// under `ulimit -n 1024` (see README, "Limits").
pub const BROKER_PARTITIONS_MAX_DEFAULT: usize = 100_000;

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            rack: None,
            role: kraft::ProcessRole::Combined,
            quorum_voters: Vec::new(),
            controller_listen: None,
            broker_session_timeout_ms: 9000,
            replica_lag_time_max_ms: 30_000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            rack_aware_replica_selector: false,
            controller_election_timeout_ms: 1000,
            broker_heartbeat_interval_ms: 2000,
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            listen_host: None,
            advertised_listener: None,
            data_dir: PathBuf::from("./data"),
            extra_log_dirs: Vec::new(),
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics_enable: true,
            message_max_bytes: MESSAGE_MAX_BYTES_DEFAULT,
            socket_request_max_bytes: SOCKET_REQUEST_MAX_BYTES_DEFAULT,
            connections_max: 10_000,
            connections_max_per_ip: i32::MAX as usize,
            connections_max_per_ip_overrides: HashMap::new(),
            connections_max_idle_ms: Some(600_000),
            queued_max_request_bytes: Some(QUEUED_MAX_REQUEST_BYTES_DEFAULT),
            http_listen: None,
            sasl_plain_users: None,
            failed_authentication_delay_ms: 100,
            // Direct appends while durable; `from_properties` turns them off otherwise.
            log: LogConfig {
                direct_appends: true,
                ..LogConfig::default()
            },
            flush: FlushPolicy {
                interval_messages: 1,
                interval_ms: 1_000,
                sync_filesystem: false,
            },
            checkpoint_interval_ms: 60_000,
            properties: BTreeMap::new(),
            retention: RetentionPolicy::default(),
            retention_check_interval_ms: 300_000,
            cleaner: CleanerConfig::default(),
            scrub_bytes_per_second: SCRUB_BYTES_PER_SECOND_DEFAULT,
            scrub_interval_ms: SCRUB_INTERVAL_MS_DEFAULT,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            groups: GroupConfig::default(),
            transaction_state_log_num_partitions: 50,
            transaction_state_log_replication_factor: 3,
            // `transaction.version` 2 is finalized in ApiVersions, as a new Kafka 4.x cluster
            // has it: clients that know transactions v2 use it, the others v1 (each request
            // says which). The coordinator's own aborts bump the epoch as v2 does.
            transactions: TxnConfig::default(),
            open_files_max: None,
            broker_partitions_max: BROKER_PARTITIONS_MAX_DEFAULT,
        }
    }
}

impl BrokerConfig {
    /// Every log directory, the data directory first, each once.
    pub fn log_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.data_dir.clone()];
        for dir in &self.extra_log_dirs {
            if !dirs.contains(dir) {
                dirs.push(dir.clone());
            }
        }
        dirs
    }

    /// Reads Kafka-named properties over the defaults.
    pub fn from_properties(properties: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut config = BrokerConfig {
            properties: properties.clone(),
            ..Default::default()
        };
        for (key, value) in properties {
            let value = value.trim();
            match key.as_str() {
                "node.id" | "broker.id" => config.node_id = parse_at_least(key, value, 0)?,
                "broker.session.timeout.ms" => {
                    config.broker_session_timeout_ms = parse_at_least(key, value, 1)?
                }
                "broker.heartbeat.interval.ms" => {
                    config.broker_heartbeat_interval_ms = parse_at_least(key, value, 1)?
                }
                "replica.lag.time.max.ms" => {
                    config.replica_lag_time_max_ms = parse_at_least(key, value, 1)?
                }
                "auto.leader.rebalance.enable" => {
                    config.auto_leader_rebalance_enable = parse_bool(key, value)?
                }
                "leader.imbalance.check.interval.seconds" => {
                    config.leader_imbalance_check_interval_ms =
                        parse_at_least::<u64>(key, value, 1)?.saturating_mul(1000)
                }
                "replica.selector.class" => {
                    config.rack_aware_replica_selector = match value {
                        "" => false,
                        "org.apache.kafka.common.replica.RackAwareReplicaSelector" => true,
                        other => {
                            return Err(ConfigError::new(
                                key,
                                other,
                                "the one selector served is \
                                 org.apache.kafka.common.replica.RackAwareReplicaSelector",
                            ))
                        }
                    }
                }
                // A quarter of it (openraft's shortest election timeout) must stay above the
                // leader's 100 ms heartbeats.
                "controller.quorum.election.timeout.ms" => {
                    config.controller_election_timeout_ms = parse_at_least(key, value, 500)?
                }
                "broker.rack" => {
                    config.rack = Some(value.to_string()).filter(|rack| !rack.is_empty())
                }
                // Read together after this loop (`config/kraft.rs`): which listener is the
                // clients', what it advertises, and the roles of the node.
                "listeners"
                | "advertised.listeners"
                | "process.roles"
                | "controller.quorum.voters"
                | "controller.listener.names"
                | "inter.broker.listener.name" => {}
                // `log.dirs` wins over `log.dir` (it sorts after it), as in Kafka.
                "log.dirs" | "log.dir" => {
                    let mut dirs = value.split(',').map(str::trim).filter(|d| !d.is_empty());
                    config.data_dir = PathBuf::from(dirs.next().unwrap_or(value));
                    config.extra_log_dirs = dirs.map(PathBuf::from).collect();
                }
                "num.partitions" => config.num_partitions = parse_at_least(key, value, 1)?,
                "default.replication.factor" => {
                    config.default_replication_factor = parse_at_least(key, value, 1)?
                }
                "auto.create.topics.enable" => {
                    config.auto_create_topics_enable = parse_bool(key, value)?
                }
                "message.max.bytes" => config.message_max_bytes = parse_at_least(key, value, 0)?,
                "socket.request.max.bytes" => {
                    config.socket_request_max_bytes = parse_at_least(key, value, 1)?
                }
                "max.connections" => config.connections_max = parse_at_least(key, value, 1)?,
                "max.connections.per.ip" => {
                    config.connections_max_per_ip = parse_at_least(key, value, 0)?
                }
                "max.connections.per.ip.overrides" => {
                    config.connections_max_per_ip_overrides = parse_ip_overrides(key, value)?
                }
                "connections.max.idle.ms" => {
                    let ms: i64 = parse_at_least(key, value, i64::MIN)?;
                    config.connections_max_idle_ms = u64::try_from(ms).ok();
                }
                "queued.max.request.bytes" => {
                    let bytes: i64 = parse_at_least(key, value, i64::MIN)?;
                    config.queued_max_request_bytes =
                        usize::try_from(bytes).ok().filter(|&bytes| bytes > 0);
                }
                "log.open.files.max" => {
                    config.open_files_max = match parse_at_least::<i64>(key, value, -1)? {
                        -1 => None,
                        n => Some(
                            usize::try_from(n)
                                .unwrap_or(usize::MAX)
                                .max(runnel_log::open_files::OPEN_FILES_MIN),
                        ),
                    }
                }
                "max.broker.partitions" => {
                    config.broker_partitions_max = parse_at_least(key, value, 1)?
                }
                "connection.failed.authentication.delay.ms" => {
                    config.failed_authentication_delay_ms = parse_at_least(key, value, 0)?
                }
                "listener.security.protocol.map" | "sasl.enabled.mechanisms" => {}
                key if key.starts_with("listener.name.") && key.ends_with(".sasl.jaas.config") => {}
                "http.listen" => {
                    config.http_listen = Some(value.parse().map_err(|_| {
                        ConfigError::new(key, value, "expected host:port, such as 127.0.0.1:9644")
                    })?)
                }
                "log.segment.bytes" => config.log.segment_bytes = parse_at_least(key, value, 14)?,
                "log.roll.ms" => config.log.segment_ms = parse_at_least(key, value, 1)?,
                "log.roll.hours" => {
                    config.log.segment_ms = parse_at_least::<u64>(key, value, 1)? * 3_600_000
                }
                "log.index.interval.bytes" => {
                    config.log.index_interval_bytes = parse_at_least(key, value, 0)?
                }
                "log.index.size.max.bytes" => {
                    config.log.segment_index_bytes = parse_at_least(key, value, 4)?
                }
                "log.direct.io" => config.log.direct_appends = parse_bool(key, value)?,
                "log.flush.interval.messages" => {
                    config.flush.interval_messages = parse_at_least(key, value, 1)?
                }
                "log.flush.interval.ms" => {
                    config.flush.interval_ms = parse_at_least(key, value, 1)?
                }
                "log.flush.syncfs" => config.flush.sync_filesystem = parse_bool(key, value)?,
                // Read in key order: hours, minutes, then ms, so the finest unit wins, as in Kafka.
                "log.retention.hours" => {
                    config.retention.retention_ms = retention_ms(key, value, 3_600_000)?
                }
                "log.retention.minutes" => {
                    config.retention.retention_ms = retention_ms(key, value, 60_000)?
                }
                "log.retention.ms" => config.retention.retention_ms = retention_ms(key, value, 1)?,
                "log.retention.bytes" => {
                    config.retention.retention_bytes = parse_at_least(key, value, -1)?
                }
                "log.cleaner.enable" => config.cleaner.enable = parse_bool(key, value)?,
                "log.cleaner.backoff.ms" => {
                    config.cleaner.backoff_ms = parse_at_least(key, value, 1)?
                }
                "log.cleaner.dedupe.buffer.size" => {
                    config.cleaner.dedupe_buffer_bytes = parse_at_least(key, value, 1024)?
                }
                // Topic defaults read through topic_config's synonyms; checked here.
                "log.cleanup.policy"
                | "log.cleaner.delete.retention.ms"
                | "log.cleaner.min.compaction.lag.ms"
                | "log.cleaner.max.compaction.lag.ms"
                | "log.cleaner.min.cleanable.ratio"
                | "log.message.timestamp.type"
                | "log.message.timestamp.before.max.ms"
                | "log.message.timestamp.after.max.ms" => {
                    crate::topic_config::validate_broker_default(key, value)?
                }
                "log.retention.check.interval.ms" => {
                    config.retention_check_interval_ms = parse_at_least(key, value, 1)?
                }
                "log.scrub.bytes.per.second" => {
                    config.scrub_bytes_per_second = parse_at_least(key, value, 0)?
                }
                "log.scrub.interval.ms" => {
                    config.scrub_interval_ms = parse_at_least(key, value, 1)?
                }
                "log.flush.offset.checkpoint.interval.ms" => {
                    config.checkpoint_interval_ms = parse_at_least(key, value, 1)?
                }
                "offsets.topic.num.partitions" => {
                    config.offsets_topic_num_partitions = parse_at_least(key, value, 1)?
                }
                "offsets.topic.replication.factor" => {
                    config.offsets_topic_replication_factor = parse_at_least(key, value, 1)?
                }
                "group.initial.rebalance.delay.ms" => {
                    config.groups.initial_rebalance_delay_ms = parse_at_least(key, value, 0)?
                }
                "group.min.session.timeout.ms" => {
                    config.groups.session_timeout_ms_min = parse_at_least(key, value, 0)?
                }
                "group.max.session.timeout.ms" => {
                    config.groups.session_timeout_ms_max = parse_at_least(key, value, 0)?
                }
                "group.max.size" => config.groups.group_size_max = parse_at_least(key, value, 1)?,
                "offsets.retention.minutes" => {
                    config.groups.offsets_retention_ms =
                        parse_at_least::<i64>(key, value, 1)?.saturating_mul(60_000)
                }
                "offsets.retention.check.interval.ms" => {
                    config.groups.offsets_retention_check_interval_ms =
                        parse_at_least(key, value, 1)?
                }
                "offset.metadata.max.bytes" => {
                    config.groups.offset_metadata_bytes_max = parse_at_least(key, value, 0)?
                }
                "transaction.state.log.num.partitions" => {
                    config.transaction_state_log_num_partitions = parse_at_least(key, value, 1)?
                }
                "transaction.state.log.replication.factor" => {
                    config.transaction_state_log_replication_factor = parse_at_least(key, value, 1)?
                }
                "transaction.max.timeout.ms" => {
                    config.transactions.transaction_timeout_ms_max = parse_at_least(key, value, 1)?
                }
                "transactional.id.expiration.ms" => {
                    config.transactions.transactional_id_expiration_ms =
                        parse_at_least(key, value, 1)?
                }
                "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                    config
                        .transactions
                        .abort_timed_out_transaction_cleanup_interval_ms =
                        parse_at_least(key, value, 1)?
                }
                "transaction.remove.expired.transaction.cleanup.interval.ms" => {
                    config
                        .transactions
                        .remove_expired_transaction_cleanup_interval_ms =
                        parse_at_least(key, value, 1)?
                }
                _ if crate::broker_config_catalog::definition(key).is_some() => {
                    tracing::info!("config {key} is Kafka's but has no effect in Runnel (ignored)")
                }
                _ => match known_keys::suggest_key(key) {
                    Some(meant) => {
                        tracing::warn!("unknown config key {key} (ignored); did you mean {meant}?")
                    }
                    None => tracing::warn!("unknown config key {key} (ignored)"),
                },
            }
        }
        config.role = kraft::check_roles(properties, config.node_id)?;
        // A controller-only node has no listener for clients.
        let client = match config.role {
            kraft::ProcessRole::Controller => None,
            _ => kraft::client_listener(properties)?,
        };
        if let Some(listener) = &client {
            let listeners = properties.get("listeners").map_or("", String::as_str);
            (config.listen, config.listen_host) = listen_address(&listener.address)
                .map_err(|reason| ConfigError::new("listeners", listeners, reason))?;
        }
        let client_name = client.as_ref().map_or("PLAINTEXT", |l| l.name.as_str());
        if let Some(advertised) = kraft::advertised_for(properties, client_name)? {
            config.advertised_listener = Some(parse_advertised(
                "advertised.listeners",
                &advertised.address,
            )?);
        }
        if let Some(quorum) = kraft::quorum(properties, config.node_id)? {
            config.quorum_voters = quorum.voters;
            config.controller_listen = Some(quorum.listen);
        } else {
            for controller in kraft::controller_listeners(properties)? {
                tracing::info!(
                    "controller listener {}://{} not bound: a quorum of one has no peer to serve",
                    controller.name,
                    controller.address
                );
            }
        }
        config.sasl_plain_users = listener_security(properties, client_name)?;
        config.check_connection_limits()?;
        // Direct appends need every append fsync'd before it is read: only when durable.
        config.log.direct_appends &= config.flush.is_durable();
        Ok(config)
    }

    /// The rules between the connection settings, as Kafka checks them at start.
    fn check_connection_limits(&self) -> Result<(), ConfigError> {
        if let Some(queued) = self.queued_max_request_bytes {
            if self.socket_request_max_bytes > queued {
                return Err(ConfigError::new(
                    "queued.max.request.bytes",
                    &queued.to_string(),
                    format!(
                        "must be at least socket.request.max.bytes ({}): a frame larger than \
                         the pool could never be read",
                        self.socket_request_max_bytes
                    ),
                ));
            }
        }
        if self.connections_max_per_ip == 0 && self.connections_max_per_ip_overrides.is_empty() {
            return Err(ConfigError::new(
                "max.connections.per.ip",
                "0",
                "may be 0 only with max.connections.per.ip.overrides",
            ));
        }
        Ok(())
    }
}

/// `ip:count,ip:count` (an IPv6 address keeps its colons: the count follows the last one).
fn parse_ip_overrides(key: &str, value: &str) -> Result<HashMap<IpAddr, usize>, ConfigError> {
    let mut overrides = HashMap::new();
    for pair in value
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let (host, count) = pair
            .rsplit_once(':')
            .ok_or_else(|| ConfigError::new(key, value, "expected ip:count pairs"))?;
        let ip: IpAddr =
            host.trim().trim_matches(['[', ']']).parse().map_err(|_| {
                ConfigError::new(key, value, format!("{host:?} is not an IP address"))
            })?;
        overrides.insert(ip, parse_at_least(key, count.trim(), 0)?);
    }
    Ok(overrides)
}

/// Parses Java `.properties` text: `key=value` or `key: value` lines, `#` and `!` comments.
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut properties = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(split) = line.find(['=', ':']) else {
            return Err(ConfigError::new(line, "", "expected key=value"));
        };
        let (key, value) = (line[..split].trim(), line[split + 1..].trim());
        properties.insert(key.to_string(), value.to_string());
    }
    Ok(properties)
}

fn parse_at_least<T>(key: &str, value: &str, min: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let parsed: T = value
        .parse()
        .map_err(|_| ConfigError::new(key, value, "not a number"))?;
    if parsed < min {
        return Err(ConfigError::new(
            key,
            value,
            format!("must be at least {min}"),
        ));
    }
    Ok(parsed)
}

/// A retention time in `unit` milliseconds; -1 means unlimited.
fn retention_ms(key: &str, value: &str, unit: i64) -> Result<i64, ConfigError> {
    let parsed: i64 = parse_at_least(key, value, -1)?;
    Ok(if parsed < 0 {
        -1
    } else {
        parsed.saturating_mul(unit)
    })
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::new(key, value, "expected true or false")),
    }
}

/// `PLAINTEXT://127.0.0.1:9092` or `127.0.0.1:9092`.
/// The users of the listener when its security protocol is `SASL_PLAINTEXT` (directly, or
/// through `listener.security.protocol.map`); `None` for `PLAINTEXT`. SSL is not served.
fn listener_security(
    properties: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<PlainUsers>, ConfigError> {
    let Some(listeners) = properties.get("listeners") else {
        return Ok(None);
    };
    let map = properties
        .get("listener.security.protocol.map")
        .map(String::as_str)
        .unwrap_or_default();
    let protocol = map
        .split(',')
        .filter_map(|pair| pair.split_once(':'))
        .find(|(listener, _)| listener.trim().eq_ignore_ascii_case(name))
        .map_or(name, |(_, protocol)| protocol.trim());
    match protocol.to_ascii_uppercase().as_str() {
        "PLAINTEXT" => Ok(None),
        "SASL_PLAINTEXT" => {
            let mechanisms = properties
                .get("sasl.enabled.mechanisms")
                .map(String::as_str)
                .unwrap_or("GSSAPI");
            if !mechanisms
                .split(',')
                .any(|m| m.trim() == crate::sasl::PLAIN)
            {
                return Err(ConfigError::new(
                    "sasl.enabled.mechanisms",
                    mechanisms,
                    "must include PLAIN, the only SASL mechanism served",
                ));
            }
            let key = format!(
                "listener.name.{}.plain.sasl.jaas.config",
                name.to_lowercase()
            );
            let jaas = properties.get(&key).ok_or_else(|| {
                ConfigError::new(&key, "", "a SASL_PLAINTEXT listener needs its PLAIN users")
            })?;
            PlainUsers::from_jaas_config(jaas)
                .map(Some)
                .map_err(|reason| ConfigError::new(&key, jaas, reason))
        }
        other => Err(ConfigError::new(
            "listeners",
            listeners,
            format!("security protocol {other} is not served (PLAINTEXT and SASL_PLAINTEXT are)"),
        )),
    }
}

/// The address to bind for `host:port` (a listener without its `PROTOCOL://`), and the host
/// name when the host is one: an IP address is taken as it is, an empty host is every
/// interface (`:9092`, as in Kafka), and a name (`localhost:9092`, as Kafka's quickstarts write
/// it) is resolved now, its first IPv4 address preferred.
pub fn listen_address(address: &str) -> Result<(SocketAddr, Option<String>), String> {
    use std::net::ToSocketAddrs;
    let address = address.trim();
    if let Ok(ip) = address.parse::<SocketAddr>() {
        return Ok((ip, None));
    }
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("expected host:port, not {address:?}"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port:?} of {address:?} is not a number"))?;
    if host.is_empty() {
        return Ok((SocketAddr::from(([0, 0, 0, 0], port)), None));
    }
    let host = host.trim_matches(['[', ']']);
    let resolved: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|error| format!("resolve host {host:?}: {error}"))?
        .collect();
    let chosen = resolved
        .iter()
        .find(|candidate| candidate.is_ipv4())
        .or_else(|| resolved.first())
        .copied()
        .ok_or_else(|| format!("host {host:?} resolves to no address"))?;
    Ok((chosen, Some(host.to_string())))
}

fn parse_advertised(key: &str, value: &str) -> Result<AdvertisedListener, ConfigError> {
    let first = value.split(',').next().unwrap_or(value).trim();
    let address = first.split_once("://").map_or(first, |(_, rest)| rest);
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| ConfigError::new(key, value, "expected host:port"))?;
    let port = port
        .parse()
        .map_err(|_| ConfigError::new(key, value, "port is not a number"))?;
    Ok(AdvertisedListener {
        host: host.trim_matches(['[', ']']).to_string(),
        port,
    })
}

/// Kafka 4's `log.message.timestamp.after.max.ms` default (`ServerLogConfigs`): one hour.
pub const TIMESTAMP_AFTER_MAX_MS_DEFAULT: i64 = 3_600_000;

/// The settings one partition's log runs with: the broker's defaults under the topic's
/// overrides.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    pub max_message_bytes: usize,
    pub log: LogConfig,
    pub retention: RetentionPolicy,
    /// `message.timestamp.type=LogAppendTime`: the broker stamps batches with its own time.
    pub log_append_time: bool,
    /// `cleanup.policy` includes `delete`: retention applies.
    pub cleanup_delete: bool,
    /// `cleanup.policy` includes `compact`: the cleaner keeps the latest record per key, and
    /// records without a key are refused.
    pub cleanup_compact: bool,
    /// `delete.retention.ms`, `min.compaction.lag.ms`, `max.compaction.lag.ms`,
    /// `min.cleanable.dirty.ratio`.
    pub compaction: CompactionPolicy,
    /// `min.insync.replicas`: an acks=all produce needs at least this many in-sync replicas.
    pub min_insync_replicas: usize,
    /// `compression.type`: the codec batches are stored in (recompressed on append when they
    /// come in another); `None` for `producer`, which keeps each batch's own.
    pub compression: Option<Compression>,
    /// `message.timestamp.before.max.ms`: how far before the broker's clock a create time may
    /// lie (Kafka's default: unbounded).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far after it (Kafka 4's default: one hour).
    pub timestamp_after_max_ms: i64,
}

impl TopicSettings {
    /// Validates `overrides` (every key must be a topic config of
    /// [`crate::topic_config::TOPIC_CONFIGS`] with a legal value) and applies them over the
    /// broker's defaults.
    pub fn resolve(
        broker: &BrokerConfig,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        // Settings without a field of BrokerConfig start from the broker's value for them.
        let default = |name: &str| crate::topic_config::broker_default(name, broker);
        let mut settings = TopicSettings {
            max_message_bytes: broker.message_max_bytes,
            log: broker.log.clone(),
            retention: broker.retention,
            log_append_time: false,
            cleanup_delete: true,
            cleanup_compact: false,
            compaction: CompactionPolicy::default(),
            min_insync_replicas: 1,
            compression: None,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: TIMESTAMP_AFTER_MAX_MS_DEFAULT,
        };
        for name in [
            "cleanup.policy",
            "delete.retention.ms",
            "max.compaction.lag.ms",
            "message.timestamp.type",
            "message.timestamp.before.max.ms",
            "message.timestamp.after.max.ms",
            "min.cleanable.dirty.ratio",
            "min.compaction.lag.ms",
            "min.insync.replicas",
            "compression.type",
        ] {
            let value = overrides
                .get(name)
                .cloned()
                .unwrap_or_else(|| default(name));
            settings.apply_default_setting(name, &value)?;
        }
        for (key, value) in overrides {
            let value = value.as_str();
            crate::topic_config::validate(key, value)?;
            match key.as_str() {
                "max.message.bytes" => settings.max_message_bytes = parse_at_least(key, value, 0)?,
                "segment.bytes" => settings.log.segment_bytes = parse_at_least(key, value, 14)?,
                "segment.ms" => settings.log.segment_ms = parse_at_least(key, value, 1)?,
                "segment.index.bytes" => {
                    settings.log.segment_index_bytes = parse_at_least(key, value, 4)?
                }
                "index.interval.bytes" => {
                    settings.log.index_interval_bytes = parse_at_least(key, value, 0)?
                }
                "retention.ms" => settings.retention.retention_ms = retention_ms(key, value, 1)?,
                "retention.bytes" => {
                    settings.retention.retention_bytes = parse_at_least(key, value, -1)?
                }
                // Stored and described; applied by later work (see topic_config's docs).
                _ => {}
            }
        }
        settings.log.compacted = settings.cleanup_compact;
        Ok(settings)
    }

    /// Applies one of the settings that may come from a broker default as well as an override.
    fn apply_default_setting(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        crate::topic_config::validate(name, value)?;
        let value = value.trim();
        let number = |min| parse_at_least::<i64>(name, value, min);
        match name {
            "cleanup.policy" => {
                self.cleanup_delete = value.split(',').any(|p| p.trim() == "delete");
                self.cleanup_compact = value.split(',').any(|p| p.trim() == "compact");
            }
            "delete.retention.ms" => self.compaction.delete_retention_ms = number(0)?,
            "min.compaction.lag.ms" => self.compaction.min_compaction_lag_ms = number(0)?,
            "max.compaction.lag.ms" => self.compaction.max_compaction_lag_ms = number(1)?,
            "min.cleanable.dirty.ratio" => {
                self.compaction.min_cleanable_dirty_ratio = value
                    .parse()
                    .map_err(|_| ConfigError::new(name, value, "not a number"))?
            }
            "message.timestamp.type" => self.log_append_time = value == "LogAppendTime",
            "message.timestamp.before.max.ms" => self.timestamp_before_max_ms = number(0)?,
            "message.timestamp.after.max.ms" => self.timestamp_after_max_ms = number(0)?,
            "min.insync.replicas" => self.min_insync_replicas = parse_at_least(name, value, 1)?,
            "compression.type" => {
                self.compression = match value {
                    "uncompressed" => Some(Compression::None),
                    "gzip" => Some(Compression::Gzip),
                    "snappy" => Some(Compression::Snappy),
                    "lz4" => Some(Compression::Lz4),
                    "zstd" => Some(Compression::Zstd),
                    _ => None,
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
