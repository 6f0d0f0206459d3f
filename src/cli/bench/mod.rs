//! `runnel bench`: what kafka-producer-perf-test and kafka-consumer-perf-test report, against
//! any Kafka-compatible broker, plus the machine limits those figures are compared with.
//!
//! - `produce`: records/s, MiB/s and send→ack latency (avg, p50, p99, p99.9, max).
//! - `consume`: records/s and MiB/s reading every partition from the start, by assignment.
//! - `e2e`: produce at a fixed rate while consuming; produce→consume latency.
//! - `disk`: sequential writes with fdatasync after each block: the durable-write limit, and
//!   the latency of one block's write + fdatasync.
//! - `floor`: the same bytes the broker receives, over loopback TCP in the same request sizes,
//!   written with O_DIRECT + fdatasync: the CPU per GB a durable ingest cannot go below.
//! - `tcp`: loopback TCP throughput between two local sockets: the network limit.
//!
//! Each prints a live progress line on stderr and a summary on stdout; `--json` prints the
//! summary as one JSON object instead, which `scripts/bench` collects. With `--broker-pid`,
//! `produce`, `consume` and `e2e` also report the broker's CPU-seconds per GB moved.

mod baseline;
mod consume;
mod cpu;
mod e2e;
mod floor;
mod produce;
mod stats;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use runnel_client::{Compression, ProducerOptions};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Produce records as fast as allowed and measure send→ack latency.
    Produce(Workload),
    /// Consume a topic from the beginning by assignment.
    Consume(Workload),
    /// Produce at a rate while consuming, measuring produce→consume latency.
    E2e(Workload),
    /// Sequential writes with fdatasync after each block, in a directory.
    Disk {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1 << 30)]
        total_bytes: u64,
        #[arg(long, default_value_t = 1 << 20)]
        block_bytes: usize,
        #[arg(long)]
        json: bool,
    },
    /// The durable-ingest floor: receive over loopback TCP, O_DIRECT write, fdatasync.
    Floor {
        /// Where the file is written: the broker's data directory.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1 << 30)]
        total_bytes: u64,
        /// Bytes per request, as the broker received them (bytes in / produce requests).
        #[arg(long, default_value_t = 393_216)]
        request_bytes: usize,
        /// fdatasync once at least this many bytes arrived since the last (0: after every
        /// request), e.g. the bytes a broker's flusher made durable per pass.
        #[arg(long, default_value_t = 0)]
        sync_bytes: u64,
        /// Write through the page cache instead of with O_DIRECT, for comparison.
        #[arg(long)]
        buffered: bool,
        #[arg(long)]
        json: bool,
    },
    /// Loopback TCP throughput between two local sockets.
    Tcp {
        #[arg(long, default_value_t = 4 << 30)]
        total_bytes: u64,
        #[arg(long)]
        json: bool,
    },
}

/// One benchmark workload, named as in Kafka's perf tools.
#[derive(Args, Clone, Debug)]
pub struct Workload {
    /// `-b`, `-X`, timeouts: as in every client subcommand.
    #[command(flatten)]
    cluster: super::cluster::ClusterArgs,
    #[arg(long, default_value = "runnel-bench")]
    topic: String,
    /// Partitions of the topic, created if missing.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Value bytes per record.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    #[arg(long, default_value_t = 1_000_000)]
    num_records: u64,
    /// Records per second for all producers together; -1 for as fast as possible.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    throughput: i64,
    /// 0, 1, or -1/all.
    #[arg(long, default_value = "all")]
    acks: String,
    #[arg(long, default_value = "none")]
    compression: Compression,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Producer batch.size in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    batch_size: usize,
    /// Producers running at once, each on its own connection.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Give records keys (10,000 distinct), so the partition follows the key hash.
    #[arg(long)]
    keyed: bool,
    /// The broker's process id, on this machine: report its CPU-seconds (utime + stime of
    /// /proc/PID/stat, before and after the run) per GB of record values moved.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

impl Workload {
    fn producer_options(&self) -> anyhow::Result<ProducerOptions> {
        let acks = match self.acks.as_str() {
            "all" | "-1" => -1,
            "1" => 1,
            "0" => 0,
            other => anyhow::bail!("--acks {other:?}: expected 0, 1, all or -1"),
        };
        Ok(ProducerOptions {
            acks,
            compression: self.compression,
            linger_ms: self.linger_ms,
            batch_size_bytes: self.batch_size,
            idempotence: false,
        })
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Produce(workload) => produce::run(&workload),
        BenchCommand::Consume(workload) => consume::run(&workload),
        BenchCommand::E2e(workload) => e2e::run(&workload),
        BenchCommand::Disk {
            dir,
            total_bytes,
            block_bytes,
            json,
        } => baseline::disk(&dir, total_bytes, block_bytes, json),
        BenchCommand::Floor {
            dir,
            total_bytes,
            request_bytes,
            sync_bytes,
            buffered,
            json,
        } => floor::floor(&dir, total_bytes, request_bytes, sync_bytes, buffered, json),
        BenchCommand::Tcp { total_bytes, json } => baseline::tcp(total_bytes, json),
    }
}
