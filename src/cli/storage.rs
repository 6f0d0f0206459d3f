//! `runnel storage`: Kafka's `kafka-storage` for a node's log directories. `format` gives them
//! their `meta.properties` before the first start (see `runnel_broker::storage_format`);
//! `random-uuid` prints a new cluster id. The flags are Kafka's (`-t/--cluster-id`,
//! `-c/--config`, `-g/--ignore-formatted`), with `--override`, `--data-dir` and `--node-id`
//! as `runnel server` takes them, so that one command line serves both.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct StorageArgs {
    #[command(subcommand)]
    command: StorageCommand,
}

#[derive(Subcommand)]
enum StorageCommand {
    /// Write meta.properties (cluster id, node id, directory id) in every log directory.
    Format {
        /// The cluster id, as `runnel storage random-uuid` prints one.
        #[arg(short = 't', long, allow_hyphen_values = true)]
        cluster_id: String,
        /// A Kafka `server.properties` file (`log.dirs`, `node.id`).
        #[arg(short = 'c', long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// A configuration with Kafka's name, e.g. `--override log.dirs=/a,/b`; repeatable.
        #[arg(long = "override", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// The first log directory [default: ./data, or the first of `log.dirs`].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// This node's id [default: 1, or `node.id`].
        #[arg(long)]
        node_id: Option<i32>,
        /// Leave directories already formatted for this cluster and node as they are.
        #[arg(short = 'g', long)]
        ignore_formatted: bool,
    },
    /// Print a new cluster id.
    RandomUuid,
}

pub fn run(args: StorageArgs) -> anyhow::Result<()> {
    match args.command {
        StorageCommand::Format {
            cluster_id,
            config,
            overrides,
            data_dir,
            node_id,
            ignore_formatted,
        } => {
            let mut config = super::server::broker_config(config.as_deref(), &overrides)?;
            if let Some(data_dir) = data_dir {
                config.data_dir = data_dir;
            }
            if let Some(node_id) = node_id {
                config.node_id = node_id;
            }
            let report =
                runnel_broker::storage_format::format(&config, &cluster_id, ignore_formatted)
                    .context("format the log directories")?;
            if report.formatted.is_empty() {
                println!("All of the log directories are already formatted.");
            }
            for dir in &report.formatted {
                println!(
                    "Formatting {} with cluster.id {cluster_id} for node.id {}.",
                    dir.display(),
                    config.node_id
                );
            }
            Ok(())
        }
        StorageCommand::RandomUuid => {
            println!("{}", runnel_broker::storage_format::random_cluster_id());
            Ok(())
        }
    }
}
