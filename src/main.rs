//! The `runnel` binary: a thin command line over the crates.
//!
//! - `runnel server`: a single-node broker ([`cli::server`]).
//! - `runnel bench produce|consume|e2e|disk|floor|tcp`: the benchmark and the machine baselines
//!   it is compared with ([`cli::bench`]).
//! - `runnel metadata rebuild`: a new metadata log for a stopped broker ([`cli::metadata`]).
//!
//! A failure prints one line on stderr, `error: ` and the causes joined by `: ` (a cause whose
//! text is already in the line is not repeated), and exits 1; no backtrace. A closed standard
//! output (`| head`) ends a command quietly with status 0. Log lines carry colour only when
//! stderr is a terminal and `NO_COLOR` is unset or empty.

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
    /// Run a cluster of N nodes on loopback, one process each, until Ctrl-C.
    DevCluster(cli::dev_cluster::DevClusterArgs),
    /// List, describe, create, alter and delete topics (kafka-topics).
    Topic(cli::topic::TopicArgs),
    /// List, describe and delete consumer groups; reset their offsets (kafka-consumer-groups).
    Group(cli::group::GroupArgs),
    /// List and describe transactions and a partition's producers (kafka-transactions).
    Txn(cli::txn::TxnArgs),
    /// Produce standard input's lines as records (kcat -P).
    Produce(cli::produce::ProduceArgs),
    /// Print a topic's records (kcat -C).
    Consume(cli::consume::ConsumeArgs),
    /// Measure throughput and latency against a running broker, or this machine's limits.
    Bench(cli::bench::BenchArgs),
    /// Repair a stopped broker's metadata (rebuild it from the partition directories).
    Metadata(cli::metadata::MetadataArgs),
    /// Format log directories for a cluster before their first start (kafka-storage).
    Storage(cli::storage::StorageArgs),
}

fn main() {
    if let Err(error) = run() {
        if cli::output::is_broken_pipe(&error) {
            std::process::exit(0);
        }
        eprintln!("error: {}", one_line(&error));
        std::process::exit(1);
    }
}

/// The causes of `error`, outermost first, joined by `: `, each said once: a cause whose text
/// the line already holds (a library error repeating its source's text) is left out.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Colour in log lines only for a person at a terminal (<https://no-color.org>).
fn colour_stderr() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The server and the benchmark report progress at INFO; the client tools print their
    // results on stdout and only warnings and errors on stderr.
    // openraft reports each failed replication to an unreachable voter (every 500 ms while
    // it is down) at ERROR: silenced by default, its other warnings kept.
    let default_level = match cli.command {
        Command::Server(_) | Command::Bench(_) => {
            "info,openraft=warn,openraft::replication=off,openraft::engine::handler::replication_handler=off"
        }
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_stderr())
        .init();
    match cli.command {
        Command::Server(args) => cli::server::run(args),
        Command::DevCluster(args) => cli::dev_cluster::run(args),
        Command::Topic(args) => cli::topic::run(args),
        Command::Group(args) => cli::group::run(args),
        Command::Txn(args) => cli::txn::run(args),
        Command::Produce(args) => cli::produce::run(args),
        Command::Consume(args) => cli::consume::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Metadata(args) => cli::metadata::run(args),
        Command::Storage(args) => cli::storage::run(args),
    }
}
