//! The `runnel` binary: a thin command line over the crates.
//!
//! - `runnel server`: a single-node broker ([`cli::server`]).
//! - `runnel bench produce|consume|e2e|disk|tcp`: the benchmark and the machine baselines it is
//!   compared with ([`cli::bench`]).

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
    /// Measure throughput and latency against a running broker, or this machine's limits.
    Bench(cli::bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Server(args) => cli::server::run(args),
        Command::Bench(args) => cli::bench::run(args),
    }
}
