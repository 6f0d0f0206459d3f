//! `runnel metadata rebuild`: writes a new metadata log (`__cluster_metadata-0`) for a stopped
//! broker's data directory from what it still holds: the old log's records before any damage
//! and the partition directories. See `runnel_broker::metadata_rebuild` for what is kept and
//! what is lost; the report printed on stdout says it topic by topic.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct MetadataArgs {
    #[command(subcommand)]
    command: MetadataCommand,
}

#[derive(Subcommand)]
enum MetadataCommand {
    /// Rebuild a stopped broker's metadata log from its partition directories.
    Rebuild {
        /// The broker's data directory [default: ./data].
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// The broker's node id, checked against (or written to) meta.properties.
        #[arg(long, default_value_t = 1)]
        node_id: i32,
    },
}

pub fn run(args: MetadataArgs) -> anyhow::Result<()> {
    match args.command {
        MetadataCommand::Rebuild { data_dir, node_id } => {
            let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
            let report = runtime
                .block_on(runnel_broker::metadata_rebuild::rebuild(&data_dir, node_id))
                .context("rebuild the metadata")?;
            println!("{report}");
            Ok(())
        }
    }
}
