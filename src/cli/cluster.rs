//! What every client subcommand (`topic`, `group`, `produce`, `consume`) takes to reach a
//! cluster, and the parsing of `key=value` arguments they share.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use runnel_client::admin::Admin;

#[derive(Args, Clone)]
pub struct ClusterArgs {
    /// Bootstrap broker(s), host:port[,host:port...].
    #[arg(short = 'b', long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap: String,
    /// How long one call to the cluster may take, in milliseconds.
    #[arg(long, default_value_t = 30_000, global = true)]
    pub timeout_ms: u64,
}

impl ClusterArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn admin(&self) -> anyhow::Result<Admin> {
        Admin::connect(&self.bootstrap, self.timeout())
            .with_context(|| format!("connect to {}", self.bootstrap))
    }
}

/// Prints `done` for each item that succeeded and the error of each that failed, on stderr;
/// fails if any did.
pub fn report_each<E: std::fmt::Display>(
    outcomes: Vec<Result<String, E>>,
    done: impl Fn(&str) -> String,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for outcome in outcomes {
        match outcome {
            Ok(item) => println!("{}", done(&item)),
            Err(error) => {
                eprintln!("Error: {error}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} failed");
    }
    Ok(())
}

/// `key=value` into its two halves.
pub fn key_value(pair: &str) -> anyhow::Result<(String, String)> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => bail!("expected key=value, got {pair:?}"),
    }
}

pub fn key_values(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs.iter().map(|pair| key_value(pair)).collect()
}
