//! `runnel bench e2e`: produce at a fixed rate while a consumer reads the same records;
//! latency is consume time minus send time, which each payload carries in its first 8 bytes
//! (nanoseconds since the run started, on this process's monotonic clock).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use runnel_client::rdkafka::consumer::Consumer;
use runnel_client::rdkafka::{Message, Offset};

use super::consume::assigned_consumer;
use super::cpu::BrokerCpu;
use super::produce::{describe, run_producers};
use super::stats::{report_with, Counters, Latencies, Progress};
use super::Workload;

const STAMP_BYTES: usize = 8;
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(30);
/// The consumer gives up when nothing arrives for this long after producing ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(workload: &Workload) -> anyhow::Result<()> {
    anyhow::ensure!(
        workload.record_size >= STAMP_BYTES,
        "--record-size must be at least 8"
    );
    runnel_client::ensure_topic(
        &workload.cluster.admin()?,
        &workload.topic,
        workload.partitions,
    )
    .context("create the benchmark topic")?;
    // Start at each partition's current end, so only this run's records are read.
    let consumer = assigned_consumer(&workload.cluster, &workload.topic, |consumer, partition| {
        let (_, high) = consumer
            .fetch_watermarks(&workload.topic, partition, WATERMARK_TIMEOUT)
            .context("fetch watermarks")?;
        Ok(Offset::Offset(high))
    })?;
    // Covers producing and fetching: per GB delivered end to end.
    let broker = BrokerCpu::start(workload.broker_pid)?;
    let epoch = Instant::now();
    let produced = Arc::new(Counters::default());
    let consumed = Arc::new(Counters::default());
    let latencies = Latencies::new();
    let producing_done = AtomicBool::new(false);
    let stamp = |payload: &mut [u8]| {
        let nanos = epoch.elapsed().as_nanos() as u64;
        payload[..STAMP_BYTES].copy_from_slice(&nanos.to_be_bytes());
    };
    let _progress = Progress::start("e2e consumed", Arc::clone(&consumed));
    let elapsed = std::thread::scope(|scope| -> anyhow::Result<Duration> {
        let producer = scope.spawn(|| {
            let result = run_producers(
                workload,
                &produced,
                &Arc::new(Latencies::new()),
                &Arc::default(),
                &stamp,
            );
            producing_done.store(true, Ordering::Release);
            result
        });
        let mut last_record = Instant::now();
        let mut count = 0u64;
        while count < workload.num_records {
            if producing_done.load(Ordering::Acquire) && last_record.elapsed() > DRAIN_TIMEOUT {
                break;
            }
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = message.context("consume")?;
            let Some(payload) = message.payload().filter(|p| p.len() >= STAMP_BYTES) else {
                continue;
            };
            let mut sent = [0u8; STAMP_BYTES];
            sent.copy_from_slice(&payload[..STAMP_BYTES]);
            let sent = Duration::from_nanos(u64::from_be_bytes(sent));
            latencies.record(epoch.elapsed().saturating_sub(sent));
            consumed.add(1, payload.len() as u64);
            count += 1;
            last_record = Instant::now();
        }
        producer
            .join()
            .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
        Ok(epoch.elapsed())
    })?;
    drop(_progress);
    let figures = BrokerCpu::finish(broker, consumed.bytes.load(Ordering::Relaxed))?;
    report_with(
        "e2e",
        workload.json,
        &consumed,
        elapsed,
        Some(&latencies),
        describe(workload),
        figures,
    );
    Ok(())
}
