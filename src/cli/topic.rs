//! `runnel topic`: kafka-topics for Runnel (or any Kafka cluster): list, describe, create,
//! alter (partitions and config overrides) and delete topics. `describe` prints
//! kafka-topics' own layout, so scripts written for it keep working.

use anyhow::bail;
use clap::{Args, Subcommand};
use runnel_client::rdkafka::types::RDKafkaErrorCode;
use runnel_client::ClientError;

use super::cluster::{key_values, report_each, ClusterArgs};

#[derive(Args)]
pub struct TopicArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Print every topic's name, one a line.
    List {
        /// Include internal topics (`__consumer_offsets`).
        #[arg(long)]
        internal: bool,
    },
    /// Print topics' partitions (leader, replicas, ISR) and config overrides.
    Describe {
        /// The topics [default: every topic but internal ones].
        topics: Vec<String>,
        /// Also print each partition's active producers (DescribeProducers), as
        /// kafka-transactions describe-producers does.
        #[arg(long)]
        producers: bool,
    },
    /// Create a topic.
    Create {
        topic: String,
        /// Partition count [default: the broker's num.partitions].
        #[arg(short, long)]
        partitions: Option<i32>,
        /// Replication factor [default: the broker's default.replication.factor].
        #[arg(short, long)]
        replication_factor: Option<i32>,
        /// A topic config, key=value (Kafka's names); repeatable.
        #[arg(short, long = "config")]
        configs: Vec<String>,
    },
    /// Grow a topic's partition count or change its config overrides.
    Alter {
        topic: String,
        /// The new (larger) partition count.
        #[arg(short, long)]
        partitions: Option<usize>,
        /// Set a topic config, key=value; repeatable.
        #[arg(short, long = "config")]
        configs: Vec<String>,
        /// Remove a topic config override (back to the broker's default); repeatable.
        #[arg(long = "delete-config")]
        delete_configs: Vec<String>,
    },
    /// Delete topics and their records.
    Delete {
        #[arg(required = true)]
        topics: Vec<String>,
    },
}

pub fn run(args: TopicArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin()?;
    match args.command {
        TopicCommand::List { internal } => {
            let metadata = admin.metadata(None)?;
            let mut names: Vec<&str> = metadata
                .topics()
                .iter()
                .map(|t| t.name())
                .filter(|name| internal || !name.starts_with("__"))
                .collect();
            names.sort_unstable();
            for name in names {
                crate::outln!("{name}");
            }
        }
        TopicCommand::Describe { topics, producers } => {
            let wire = producers
                .then(|| super::txn::Wire::new(&args.cluster))
                .transpose()?;
            describe(&admin, topics, wire.as_ref())?
        }
        TopicCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let configs = key_values(&configs)?;
            admin.create_topic(
                &topic,
                partitions.unwrap_or(-1),
                replication_factor.unwrap_or(-1),
                &configs,
            )?;
            crate::outln!("Created topic {topic}.");
        }
        TopicCommand::Alter {
            topic,
            partitions,
            configs,
            delete_configs,
        } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                bail!("nothing to alter: give --partitions, --config or --delete-config");
            }
            if let Some(partitions) = partitions {
                admin.create_partitions(&topic, partitions)?;
            }
            if !configs.is_empty() || !delete_configs.is_empty() {
                let configs = key_values(&configs)?;
                admin.alter_topic_configs(&topic, &configs, &delete_configs)?;
            }
            crate::outln!("Altered topic {topic}.");
        }
        TopicCommand::Delete { topics } => {
            let outcomes = admin.delete_topics(&topics)?;
            report_each(outcomes, |topic| format!("Deleted topic {topic}."))?;
        }
    }
    Ok(())
}

/// kafka-topics' describe; with `producers`, each partition's line is followed by one line per
/// active producer (kafka-transactions describe-producers' columns).
fn describe(
    admin: &runnel_client::admin::Admin,
    topics: Vec<String>,
    producers: Option<&super::txn::Wire>,
) -> anyhow::Result<()> {
    let names = if topics.is_empty() {
        let metadata = admin.metadata(None)?;
        let mut names: Vec<String> = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .filter(|name| !name.starts_with("__"))
            .collect();
        names.sort_unstable();
        names
    } else {
        topics
    };
    for name in names {
        // The admin's Metadata requests never create a topic: an unknown one is an error here.
        let metadata = admin.metadata(Some(&name))?;
        let Some(topic) = metadata.topics().first() else {
            bail!("topic {name}: no metadata");
        };
        if let Some(error) = topic.error() {
            return Err(ClientError::Topic {
                topic: name,
                code: RDKafkaErrorCode::from(error),
            }
            .into());
        }
        let overrides: Vec<String> = admin
            .topic_configs(&name)?
            .into_iter()
            .filter(|c| c.is_override)
            .map(|c| format!("{}={}", c.name, c.value.unwrap_or_default()))
            .collect();
        let partitions = topic.partitions();
        let replication = partitions.first().map_or(0, |p| p.replicas().len());
        crate::outln!(
            "Topic: {name}\tPartitionCount: {}\tReplicationFactor: {replication}\tConfigs: {}",
            partitions.len(),
            overrides.join(",")
        );
        let active: std::collections::HashMap<i32, Vec<_>> = match producers {
            Some(wire) => super::txn::describe_producers(admin, wire, &name, &[])?,
            None => Vec::new(),
        }
        .into_iter()
        .collect();
        for p in partitions {
            crate::outln!(
                "\tTopic: {name}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                p.id(),
                p.leader(),
                join(p.replicas()),
                join(p.isr())
            );
            if let Some(of_partition) = active.get(&p.id()) {
                for producer in of_partition {
                    let cells = super::txn::producer_cells(producer);
                    crate::outln!(
                        "\t\tProducerId: {}\tProducerEpoch: {}\tLatestCoordinatorEpoch: {}\t\
                         LastSequence: {}\tLastTimestamp: {}\tCurrentTransactionStartOffset: {}",
                        cells[0],
                        cells[1],
                        cells[2],
                        cells[3],
                        cells[4],
                        cells[5]
                    );
                }
            }
        }
    }
    Ok(())
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}
