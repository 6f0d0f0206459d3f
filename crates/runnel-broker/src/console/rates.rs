//! Per-topic rates for the console: bytes and records in (produced) and out (fetched) per
//! second, from the partitions' counters sampled every [`SAMPLE_INTERVAL`] while the HTTP port
//! serves ([`run`]). The rate is the difference between the newest sample and the oldest kept,
//! over the time between them: a moving window of up to [`SAMPLES_KEPT`] samples (one minute).
//!
//! Bounds: at most [`SAMPLES_KEPT`] samples, each one entry per topic hosted at that moment;
//! a deleted topic leaves with the samples that name it. Sampling reads atomics and takes the
//! replica manager's map lock once; it never holds a partition's log lock.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::broker::Broker;

/// Time between samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept: the window the rates are measured over is up to `SAMPLES_KEPT - 1` intervals.
pub const SAMPLES_KEPT: usize = 13;

/// A topic's counters at one sample, summed over its partitions.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    bytes_in: u64,
    records_in: u64,
    bytes_out: u64,
    records_out: u64,
}

struct Sample {
    at: Instant,
    topics: HashMap<Arc<str>, Counters>,
}

/// A topic's rates, per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    pub bytes_in_per_second: f64,
    pub records_in_per_second: f64,
    pub bytes_out_per_second: f64,
    pub records_out_per_second: f64,
}

/// The samples of one broker.
#[derive(Default)]
pub struct TopicRates {
    samples: Mutex<VecDeque<Sample>>,
}

impl TopicRates {
    /// Takes a sample of every hosted partition's counters now.
    pub fn sample(&self, broker: &Broker) {
        let mut topics: HashMap<Arc<str>, Counters> = HashMap::new();
        for partition in broker.replicas.all_partitions() {
            let metrics = &partition.metrics;
            let counters = topics.entry(Arc::clone(&partition.topic)).or_default();
            counters.bytes_in += metrics.bytes_in.load(Ordering::Relaxed);
            counters.records_in += metrics.records_in.load(Ordering::Relaxed);
            counters.bytes_out += metrics.bytes_out.load(Ordering::Relaxed);
            counters.records_out += metrics.records_out.load(Ordering::Relaxed);
        }
        let mut samples = self.samples.lock().expect("rate samples lock poisoned");
        if samples.len() == SAMPLES_KEPT {
            samples.pop_front();
        }
        samples.push_back(Sample {
            at: Instant::now(),
            topics,
        });
    }

    /// `topic`'s rates over the window, or `None` before two samples name it.
    pub fn rates(&self, topic: &str) -> Option<Rates> {
        let samples = self.samples.lock().expect("rate samples lock poisoned");
        let newest = samples.back()?;
        let now = newest.topics.get(topic)?;
        let (then, oldest) = samples
            .iter()
            .find_map(|sample| sample.topics.get(topic).map(|c| (c, sample)))?;
        let seconds = newest.at.duration_since(oldest.at).as_secs_f64();
        if seconds <= 0.0 {
            return None;
        }
        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / seconds;
        Some(Rates {
            bytes_in_per_second: rate(now.bytes_in, then.bytes_in),
            records_in_per_second: rate(now.records_in, then.records_in),
            bytes_out_per_second: rate(now.bytes_out, then.bytes_out),
            records_out_per_second: rate(now.records_out, then.records_out),
        })
    }
}

/// Samples `broker`'s counters every [`SAMPLE_INTERVAL`] until `shutdown` turns true.
///
/// # Cancel safety
/// Cancel safe: it holds nothing across its awaits.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => broker.console_rates.sample(&broker),
            () = crate::server::stopped(&mut shutdown) => return,
        }
    }
}
