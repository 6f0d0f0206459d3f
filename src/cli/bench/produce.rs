//! `runnel bench produce`: producers sending fixed-size records, send→ack latency per record.
//!
//! Send→ack includes the time a record waits in librdkafka for its batch (`linger.ms`, the
//! batch filling), so the summary also splits it as librdkafka sees it, from its statistics
//! every second ([`ClientWindows`]): the queue wait (`int_latency`) and the produce request's
//! round trip (`rtt`: the wire and the broker). Each second's window has its own p99; the
//! largest of them bounds the run's p99 from above (no window has more than 1% above it).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use runnel_client::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use runnel_client::rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use runnel_client::rdkafka::statistics::Statistics;
use runnel_client::rdkafka::ClientContext;
use serde_json::json;

use super::cpu::BrokerCpu;
use super::stats::{report_with, Counters, Latencies, Progress};
use super::Workload;

/// Distinct keys of a keyed workload.
pub const KEY_COUNT: u64 = 10_000;
/// How long a final flush may take before the run is declared failed.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause when librdkafka's local queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(1);

/// How often librdkafka reports its statistics to [`ClientWindows`].
const STATISTICS_INTERVAL_MS: &str = "1000";

/// Counts acknowledged records and their latency from the send time carried as the opaque.
pub struct DeliveryCounter {
    pub latencies: Arc<Latencies>,
    pub counters: Arc<Counters>,
    pub record_bytes: u64,
    pub windows: Arc<ClientWindows>,
}

impl ClientContext for DeliveryCounter {
    fn stats(&self, statistics: Statistics) {
        self.windows.add(&statistics);
    }
}

/// The largest p99 (µs) of librdkafka's one-second windows over a run, per figure, across the
/// brokers it produced to; windows with no samples are skipped.
#[derive(Default)]
pub struct ClientWindows {
    p99_us: Mutex<[Option<i64>; 3]>,
}

impl ClientWindows {
    const NAMES: [&'static str; 3] = ["queue_p99_ms", "outbuf_p99_ms", "rtt_p99_ms"];

    fn add(&self, statistics: &Statistics) {
        let Ok(mut largest) = self.p99_us.lock() else {
            return;
        };
        for broker in statistics.brokers.values().filter(|b| b.nodeid >= 0) {
            let windows = [&broker.int_latency, &broker.outbuf_latency, &broker.rtt];
            for (slot, window) in largest.iter_mut().zip(windows) {
                if let Some(window) = window.as_ref().filter(|w| w.cnt > 0) {
                    *slot = Some(slot.map_or(window.p99, |p99| p99.max(window.p99)));
                }
            }
        }
    }

    /// `{"queue_p99_ms": …, "outbuf_p99_ms": …, "rtt_p99_ms": …}` (null where no window had
    /// samples), the largest window p99 of each.
    pub fn summary(&self) -> serde_json::Value {
        let largest = self.p99_us.lock().map(|l| *l).unwrap_or_default();
        let mut out = serde_json::Map::new();
        for (name, p99) in Self::NAMES.iter().zip(largest) {
            out.insert(name.to_string(), json!(p99.map(|us| us as f64 / 1000.0)));
        }
        serde_json::Value::Object(out)
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at: Box<Instant>) {
        match result {
            Ok(_) => {
                self.latencies.record(sent_at.elapsed());
                self.counters.add(1, self.record_bytes);
            }
            Err(_) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Bytes that do not compress to nothing, so codecs are measured honestly.
pub fn payload_pool(record_size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..record_size * 2 + 8)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Sends `count` records from one producer at up to `rate` records/s (None: unlimited).
/// `fill` may overwrite the start of each payload (e2e stamps its send time there).
pub fn send_records(
    producer: &ThreadedProducer<DeliveryCounter>,
    workload: &Workload,
    count: u64,
    rate: Option<f64>,
    seed: u64,
    fill: &dyn Fn(&mut [u8]),
) -> anyhow::Result<()> {
    let pool = payload_pool(workload.record_size, seed);
    let mut payload = vec![0u8; workload.record_size];
    let started = Instant::now();
    for i in 0..count {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let start = (i as usize * 7) % workload.record_size.max(1);
        payload.copy_from_slice(&pool[start..start + workload.record_size]);
        fill(&mut payload);
        let key = format!("key-{:05}", (seed.wrapping_add(i)) % KEY_COUNT);
        let mut record = BaseRecord::with_opaque_to(&workload.topic, Box::new(Instant::now()))
            .payload(&payload[..]);
        if workload.keyed {
            record = record.key(key.as_bytes());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(QUEUE_FULL_BACKOFF);
                }
                Err((error, _)) => return Err(error).context("send a record"),
            }
        }
    }
    producer
        .flush(FLUSH_TIMEOUT)
        .context("flush the producer")?;
    Ok(())
}

/// Starts `workload.producers` producers; returns when all records are acknowledged.
pub fn run_producers(
    workload: &Workload,
    counters: &Arc<Counters>,
    latencies: &Arc<Latencies>,
    windows: &Arc<ClientWindows>,
    fill: &(dyn Fn(&mut [u8]) + Sync),
) -> anyhow::Result<Duration> {
    let mut config =
        runnel_client::producer_config(&workload.cluster.bootstrap, &workload.producer_options()?);
    config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    workload.cluster.apply(&mut config)?;
    let producers = workload.producers.max(1) as u64;
    let rate = (workload.throughput > 0).then(|| workload.throughput as f64 / producers as f64);
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut workers = Vec::new();
        for index in 0..producers {
            let count = workload.num_records / producers
                + u64::from(index < workload.num_records % producers);
            let context = DeliveryCounter {
                latencies: Arc::clone(latencies),
                counters: Arc::clone(counters),
                record_bytes: workload.record_size as u64,
                windows: Arc::clone(windows),
            };
            let producer: ThreadedProducer<DeliveryCounter> = config
                .create_with_context(context)
                .context("create a producer")?;
            workers.push(scope.spawn(move || {
                send_records(&producer, workload, count, rate, index * 1_000_003, fill)
            }));
        }
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a producer thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(started.elapsed())
}

pub fn run(workload: &Workload) -> anyhow::Result<()> {
    runnel_client::ensure_topic(
        &workload.cluster.admin()?,
        &workload.topic,
        workload.partitions,
    )
    .context("create the benchmark topic")?;
    let broker = BrokerCpu::start(workload.broker_pid)?;
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Latencies::new());
    let windows = Arc::new(ClientWindows::default());
    let elapsed = {
        let _progress = Progress::start("produce", Arc::clone(&counters));
        run_producers(workload, &counters, &latencies, &windows, &|_| {})?
    };
    let mut figures = BrokerCpu::finish(broker, counters.bytes.load(Ordering::Relaxed))?;
    let client = windows.summary();
    figures.text.push_str(&format!(
        "; librdkafka p99 ms (largest 1 s window): queue {}, request round trip {}",
        client["queue_p99_ms"], client["rtt_p99_ms"]
    ));
    figures.add("librdkafka_window_p99", client);
    report_with(
        "produce",
        workload.json,
        &counters,
        elapsed,
        Some(&latencies),
        describe(workload),
        figures,
    );
    Ok(())
}

/// The workload's parameters, for the JSON summary.
pub fn describe(workload: &Workload) -> serde_json::Value {
    json!({
        "topic": workload.topic,
        "partitions": workload.partitions,
        "record_size": workload.record_size,
        "num_records": workload.num_records,
        "throughput": workload.throughput,
        "acks": workload.acks,
        "compression": workload.compression.name(),
        "linger_ms": workload.linger_ms,
        "batch_size": workload.batch_size,
        "producers": workload.producers,
        "keyed": workload.keyed,
    })
}
