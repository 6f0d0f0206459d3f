//! `runnel produce`: kcat -P for Runnel (or any Kafka cluster). Each line of standard input
//! is one record (the newline is not part of it); `-K` splits a key off at the first
//! delimiter; `-H` adds headers to every record; `-p` picks the partition (otherwise the
//! key's hash, Kafka's murmur2, or sticky batches for keyless records). Exits non-zero if
//! any record was not acknowledged, after saying which error and how many.

use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use runnel_client::rdkafka::error::KafkaError;
use runnel_client::rdkafka::message::{Header, OwnedHeaders};
use runnel_client::rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use runnel_client::rdkafka::types::RDKafkaErrorCode;
use runnel_client::rdkafka::ClientContext;
use runnel_client::{producer_config, Compression, ProducerOptions};

use super::cluster::{is_connection_failure, key_values, log_librdkafka, ClusterArgs};
use runnel_client::rdkafka::config::RDKafkaLogLevel;

/// How long to wait for room in librdkafka's queue before giving up on a record.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(10);

#[derive(Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic to produce to.
    topic: String,
    /// Split each line into key and value at the first occurrence of this delimiter.
    #[arg(short = 'K', long)]
    key_delimiter: Option<String>,
    /// A header for every record, key=value; repeatable.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// The partition [default: by key hash, or sticky for keyless records].
    #[arg(short, long)]
    partition: Option<i32>,
    /// Compression: none, gzip, snappy, lz4, zstd.
    #[arg(short = 'z', long, default_value = "none")]
    compression: Compression,
    /// acks: 0, 1, or -1 (all).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    acks: i16,
}

/// Counts delivery outcomes; keeps the first failure.
#[derive(Default)]
struct Deliveries {
    acknowledged: u64,
    failed: u64,
    first_error: Option<KafkaError>,
}

struct Reports(Arc<Mutex<Deliveries>>);

impl ClientContext for Reports {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if !is_connection_failure(&error) {
            tracing::error!(%error, reason, "librdkafka");
        }
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut deliveries = self.0.lock().expect("delivery counts lock poisoned");
        match result {
            Ok(_) => deliveries.acknowledged += 1,
            Err((error, _)) => {
                deliveries.failed += 1;
                deliveries.first_error.get_or_insert_with(|| error.clone());
            }
        }
    }
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    if !(-1..=1).contains(&args.acks) {
        bail!("--acks must be 0, 1 or -1, not {}", args.acks);
    }
    let options = ProducerOptions {
        acks: args.acks,
        compression: args.compression,
        linger_ms: 5,
        idempotence: args.acks == -1,
        ..ProducerOptions::default()
    };
    let deliveries = Arc::new(Mutex::new(Deliveries::default()));
    let mut config = producer_config(&args.cluster.bootstrap, &options);
    args.cluster.apply(&mut config)?;
    let producer: ThreadedProducer<Reports> =
        config.create_with_context(Reports(Arc::clone(&deliveries)))?;
    args.cluster.probe(producer.client())?;
    let mut headers = OwnedHeaders::new();
    for (key, value) in key_values(&args.headers)? {
        headers = headers.insert(Header {
            key: &key,
            value: Some(value.as_bytes()),
        });
    }

    let stdin = std::io::stdin().lock();
    let mut sent: u64 = 0;
    for line in stdin.split(b'\n') {
        let line = line.context("read standard input")?;
        let (key, value) = split_key(&line, args.key_delimiter.as_deref());
        let mut record = BaseRecord::to(&args.topic)
            .payload(value)
            .headers(headers.clone());
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = args.partition {
            record = record.partition(partition);
        }
        send(&producer, record, args.cluster.timeout())?;
        sent += 1;
    }
    producer
        .flush(args.cluster.timeout())
        .context("wait for the last acknowledgements")?;

    let deliveries = deliveries.lock().expect("delivery counts lock poisoned");
    eprintln!(
        "{} of {sent} record(s) acknowledged by {}",
        deliveries.acknowledged, args.topic
    );
    if let Some(error) = &deliveries.first_error {
        bail!(
            "{} record(s) not acknowledged: {}",
            deliveries.failed,
            runnel_client::describe_kafka_error(error)
        );
    }
    Ok(())
}

/// Key and value of one input line: the key is what precedes the first delimiter.
fn split_key<'a>(line: &'a [u8], delimiter: Option<&str>) -> (Option<&'a [u8]>, &'a [u8]) {
    let Some(delimiter) = delimiter.map(str::as_bytes).filter(|d| !d.is_empty()) else {
        return (None, line);
    };
    match line.windows(delimiter.len()).position(|w| w == delimiter) {
        Some(at) => (Some(&line[..at]), &line[at + delimiter.len()..]),
        None => (None, line),
    }
}

/// Queues one record, waiting (up to `timeout`) while librdkafka's queue is full.
fn send(
    producer: &ThreadedProducer<Reports>,
    mut record: BaseRecord<'_, [u8], [u8]>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if Instant::now() < deadline =>
            {
                record = back;
                std::thread::sleep(QUEUE_FULL_WAIT);
            }
            Err((error, _)) => return Err(error).context("queue a record"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_key;

    #[test]
    fn keys_split_at_the_first_delimiter() {
        assert_eq!(
            split_key(b"user1:signed:up", Some(":")),
            (Some(&b"user1"[..]), &b"signed:up"[..])
        );
        assert_eq!(split_key(b"no key", Some(":")), (None, &b"no key"[..]));
        assert_eq!(split_key(b"a::b", Some("::")), (Some(&b"a"[..]), &b"b"[..]));
        assert_eq!(split_key(b"k:v", None), (None, &b"k:v"[..]));
    }
}
