//! `runnel txn`: kafka-transactions for Runnel (or any Kafka cluster): list the transactions
//! the coordinators hold, describe transactional ids, and describe a partition's active
//! producers. The tables have kafka-transactions' columns, values and `None`s.
//!
//! librdkafka has no call for these requests, so they go over [`runnel_client::wire_admin`];
//! the brokers, partition leaders and coordinators are found through librdkafka as for every
//! other command.

use anyhow::bail;
use clap::{Args, Subcommand};
use runnel_client::admin::Admin;
use runnel_client::wire_admin::{PartitionProducer, WireAdmin, WireSecurity};

use super::cluster::{key_values, ClusterArgs};

#[derive(Args)]
pub struct TxnArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: TxnCommand,
}

#[derive(Subcommand)]
enum TxnCommand {
    /// List the transactional ids every broker coordinates (ListTransactions).
    List {
        /// Only ids in this state (Kafka's names: Ongoing, PrepareCommit, CompleteCommit, ...);
        /// repeatable.
        #[arg(long = "state")]
        states: Vec<String>,
        /// Only ids whose producer id is this one; repeatable.
        #[arg(long = "producer-id")]
        producer_ids: Vec<i64>,
        /// Only transactions open for at least this long, in milliseconds.
        #[arg(long)]
        duration_ms: Option<i64>,
    },
    /// Describe transactional ids on their coordinators (DescribeTransactions).
    Describe {
        #[arg(required = true)]
        transactional_ids: Vec<String>,
    },
    /// Describe the active producers of a topic's partitions on their leaders
    /// (DescribeProducers).
    DescribeProducers {
        #[arg(long)]
        topic: String,
        /// The partitions [default: every partition of the topic]; repeatable.
        #[arg(long = "partition")]
        partitions: Vec<i32>,
    },
}

pub fn run(args: TxnArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin()?;
    let wire = Wire::new(&args.cluster)?;
    match args.command {
        TxnCommand::List {
            states,
            producer_ids,
            duration_ms,
        } => {
            let mut rows = vec![header(&[
                "TransactionalId",
                "Coordinator",
                "ProducerId",
                "TransactionState",
            ])];
            let mut listed = Vec::new();
            for (node_id, address) in brokers(&admin)? {
                let mut broker = wire.connect(&address, node_id)?;
                listed.extend(broker.list_transactions(
                    &states,
                    &producer_ids,
                    duration_ms.unwrap_or(-1),
                )?);
            }
            listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
            for txn in listed {
                rows.push(vec![
                    txn.transactional_id,
                    txn.coordinator.to_string(),
                    txn.producer_id.to_string(),
                    txn.state,
                ]);
            }
            print_table(&rows)?;
        }
        TxnCommand::Describe { transactional_ids } => {
            let (node_id, address) = brokers(&admin)?
                .into_iter()
                .next()
                .ok_or_else(|| anyhow::anyhow!("the cluster lists no broker"))?;
            let mut bootstrap = wire.connect(&address, node_id)?;
            let mut rows = vec![header(&[
                "CoordinatorId",
                "TransactionalId",
                "ProducerId",
                "ProducerEpoch",
                "TransactionState",
                "TransactionTimeoutMs",
                "CurrentTransactionStartTimeMs",
                "TransactionDurationMs",
                "TopicPartitions",
            ])];
            for id in transactional_ids {
                let (coordinator, address) = bootstrap.find_transaction_coordinator(&id)?;
                let described = wire
                    .connect(&address, coordinator)?
                    .describe_transaction(&id)?;
                let now_ms = now_ms();
                let started = described.start_time_ms;
                let partitions: Vec<String> = described
                    .partitions
                    .iter()
                    .map(|(topic, partition)| format!("{topic}-{partition}"))
                    .collect();
                rows.push(vec![
                    described.coordinator.to_string(),
                    described.transactional_id,
                    described.producer_id.to_string(),
                    described.producer_epoch.to_string(),
                    described.state,
                    described.timeout_ms.to_string(),
                    none_if_negative(started),
                    if started < 0 {
                        "None".to_string()
                    } else {
                        (now_ms - started).max(0).to_string()
                    },
                    partitions.join(","),
                ]);
            }
            print_table(&rows)?;
        }
        TxnCommand::DescribeProducers { topic, partitions } => {
            let described = describe_producers(&admin, &wire, &topic, &partitions)?;
            let mut rows = vec![header(&[
                "Partition",
                "ProducerId",
                "ProducerEpoch",
                "LatestCoordinatorEpoch",
                "LastSequence",
                "LastTimestamp",
                "CurrentTransactionStartOffset",
            ])];
            for (partition, producers) in described {
                for producer in producers {
                    let mut row = vec![partition.to_string()];
                    row.extend(producer_cells(&producer));
                    rows.push(row);
                }
            }
            print_table(&rows)?;
        }
    }
    Ok(())
}

/// Connections made as the cluster arguments say (the `-X` security properties).
pub struct Wire {
    security: WireSecurity,
    timeout: std::time::Duration,
    connect_timeout: std::time::Duration,
}

impl Wire {
    pub fn new(cluster: &ClusterArgs) -> anyhow::Result<Wire> {
        let properties = key_values(&cluster.properties)?;
        let security = WireSecurity::from_properties(
            properties.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        Ok(Wire {
            security,
            timeout: cluster.timeout(),
            connect_timeout: cluster.connect_timeout(),
        })
    }

    fn connect(&self, address: &str, node_id: i32) -> anyhow::Result<WireAdmin> {
        Ok(WireAdmin::connect(
            address,
            node_id,
            &self.security,
            self.timeout,
            self.connect_timeout,
        )?)
    }
}

/// Every broker of the cluster, (node id, host:port), by node id.
fn brokers(admin: &Admin) -> anyhow::Result<Vec<(i32, String)>> {
    let metadata = admin.metadata(None)?;
    let mut brokers: Vec<(i32, String)> = metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), format!("{}:{}", b.host(), b.port())))
        .collect();
    brokers.sort();
    Ok(brokers)
}

/// The active producers of `topic`'s `partitions` (every partition when empty), asked of
/// each partition's leader, in partition order.
pub fn describe_producers(
    admin: &Admin,
    wire: &Wire,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<Vec<(i32, Vec<PartitionProducer>)>> {
    let metadata = admin.metadata(Some(topic))?;
    let Some(described) = metadata.topics().first() else {
        bail!("topic {topic}: no metadata");
    };
    if let Some(error) = described.error() {
        return Err(runnel_client::ClientError::Topic {
            topic: topic.to_string(),
            code: runnel_client::rdkafka::types::RDKafkaErrorCode::from(error),
        }
        .into());
    }
    let brokers = brokers(admin)?;
    let mut wanted: Vec<(i32, i32)> = described
        .partitions()
        .iter()
        .filter(|p| partitions.is_empty() || partitions.contains(&p.id()))
        .map(|p| (p.id(), p.leader()))
        .collect();
    for partition in partitions {
        if !wanted.iter().any(|(id, _)| id == partition) {
            bail!("topic {topic} has no partition {partition}");
        }
    }
    wanted.sort();
    let mut out = Vec::new();
    for (partition, leader) in wanted {
        let Some((_, address)) = brokers.iter().find(|(id, _)| *id == leader) else {
            bail!("topic {topic} partition {partition}: no leader (LEADER_NOT_AVAILABLE)");
        };
        let mut broker = wire.connect(address, leader)?;
        for (index, producers) in broker.describe_producers(topic, &[partition])? {
            out.push((index, producers?));
        }
    }
    Ok(out)
}

/// A producer's cells in kafka-transactions' describe-producers order.
pub fn producer_cells(producer: &PartitionProducer) -> Vec<String> {
    vec![
        producer.producer_id.to_string(),
        producer.producer_epoch.to_string(),
        none_if_negative(i64::from(producer.coordinator_epoch)),
        producer.last_sequence.to_string(),
        producer.last_timestamp.to_string(),
        none_if_negative(producer.current_txn_start_offset),
    ]
}

/// kafka-transactions prints an absent value (-1) as `None`.
fn none_if_negative(value: i64) -> String {
    if value < 0 {
        "None".to_string()
    } else {
        value.to_string()
    }
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Columns padded to their widest cell, as kafka-transactions prints its tables.
fn print_table(rows: &[Vec<String>]) -> anyhow::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        crate::outln!("{}", cells.join(" ").trim_end());
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
