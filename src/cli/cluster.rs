//! What every client subcommand (`topic`, `group`, `produce`, `consume`) takes to reach a
//! cluster, and the parsing of `key=value` arguments they share.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use runnel_client::admin::Admin;
use runnel_client::rdkafka::ClientConfig;

#[derive(Args, Clone)]
pub struct ClusterArgs {
    /// Bootstrap broker(s), host:port[,host:port...].
    #[arg(short = 'b', long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap: String,
    /// How long one call to the cluster may take, in milliseconds.
    #[arg(long, default_value_t = 30_000, global = true)]
    pub timeout_ms: u64,
    /// A librdkafka property, key=value (as kcat's -X), e.g. `-X security.protocol=SASL_PLAINTEXT
    /// -X sasl.mechanism=PLAIN -X sasl.username=alice -X sasl.password=...`; repeatable.
    #[arg(short = 'X', long = "property", global = true)]
    pub properties: Vec<String>,
}

impl ClusterArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// `-X` properties over `base` (which already says what the tool needs).
    pub fn apply(&self, base: &mut ClientConfig) -> anyhow::Result<()> {
        for (key, value) in key_values(&self.properties)? {
            base.set(key, value);
        }
        Ok(())
    }

    /// The configuration a client of this cluster starts from: the bootstrap servers and the
    /// `-X` properties.
    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        self.apply(&mut config)?;
        Ok(config)
    }

    pub fn admin(&self) -> anyhow::Result<Admin> {
        Admin::connect(&self.client_config()?, self.timeout())
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
