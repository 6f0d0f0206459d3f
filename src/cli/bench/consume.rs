//! `runnel bench consume`: read a topic's partitions from the start, by assignment.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use runnel_client::rdkafka::consumer::{BaseConsumer, Consumer};
use runnel_client::rdkafka::{Message, Offset, TopicPartitionList};

use super::cpu::BrokerCpu;
use super::produce::describe;
use super::stats::{report_with, Counters, Progress};
use super::Workload;
use crate::cli::cluster::ClusterArgs;

/// A run ends when no record arrives for this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// A consumer assigned to every partition of `topic` at `offset` (per partition when given).
pub fn assigned_consumer(
    cluster: &ClusterArgs,
    topic: &str,
    offsets: impl Fn(&BaseConsumer, i32) -> anyhow::Result<Offset>,
) -> anyhow::Result<BaseConsumer> {
    let mut config = runnel_client::assigned_consumer_config(&cluster.bootstrap);
    cluster.apply(&mut config)?;
    let consumer: BaseConsumer = config.create().context("create a consumer")?;
    cluster.probe(consumer.client())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .context("fetch metadata")?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len() as i32)
        .filter(|count| *count > 0)
        .with_context(|| format!("topic {topic} has no partitions"))?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        let offset = offsets(&consumer, partition)?;
        assignment
            .add_partition_offset(topic, partition, offset)
            .context("assignment")?;
    }
    consumer.assign(&assignment).context("assign")?;
    Ok(consumer)
}

pub fn run(workload: &Workload) -> anyhow::Result<()> {
    let consumer = assigned_consumer(&workload.cluster, &workload.topic, |_, _| {
        Ok(Offset::Beginning)
    })?;
    let broker = BrokerCpu::start(workload.broker_pid)?;
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let mut last_record = Instant::now();
    {
        let _progress = Progress::start("consume", Arc::clone(&counters));
        let mut consumed = 0u64;
        while consumed < workload.num_records && last_record.elapsed() < IDLE_TIMEOUT {
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = message.context("consume")?;
            let bytes = message.payload_len() + message.key().map_or(0, <[u8]>::len);
            counters.add(1, bytes as u64);
            consumed += 1;
            last_record = Instant::now();
        }
    }
    let elapsed = last_record.duration_since(started);
    let figures = BrokerCpu::finish(broker, counters.bytes.load(Ordering::Relaxed))?;
    report_with(
        "consume",
        workload.json,
        &counters,
        elapsed,
        None,
        describe(workload),
        figures,
    );
    Ok(())
}
