//! The `runnel` binary: a thin command line over the crates.
//!
//! - `runnel server`: a single-node broker ([`cli::server`]).
//! - `runnel bench produce|consume|e2e|disk|tcp`: the benchmark and the machine baselines it is
//!   compared with ([`cli::bench`]).
//! - `runnel metadata rebuild`: a new metadata log for a stopped broker ([`cli::metadata`]).
//!
//! A failure prints one line on stderr, `error: ` and the causes joined by `: `, and exits 1.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "runnel",
    version,
    about = "A Kafka-compatible event-streaming platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker.
    Server(cli::server::ServerArgs),
    /// List, describe, create, alter and delete topics (kafka-topics).
    Topic(cli::topic::TopicArgs),
    /// List, describe and delete consumer groups; reset their offsets (kafka-consumer-groups).
    Group(cli::group::GroupArgs),
    /// Produce standard input's lines as records (kcat -P).
    Produce(cli::produce::ProduceArgs),
    /// Print a topic's records (kcat -C).
    Consume(cli::consume::ConsumeArgs),
    /// Measure throughput and latency against a running broker, or this machine's limits.
    Bench(cli::bench::BenchArgs),
    /// Repair a stopped broker's metadata (rebuild it from the partition directories).
    Metadata(cli::metadata::MetadataArgs),
}

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The server and the benchmark report progress at INFO; the client tools print their
    // results on stdout and only warnings and errors on stderr.
    let default_level = match cli.command {
        Command::Server(_) | Command::Bench(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Server(args) => cli::server::run(args),
        Command::Topic(args) => cli::topic::run(args),
        Command::Group(args) => cli::group::run(args),
        Command::Produce(args) => cli::produce::run(args),
        Command::Consume(args) => cli::consume::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Metadata(args) => cli::metadata::run(args),
    }
}
