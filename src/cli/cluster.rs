//! What every client subcommand (`topic`, `group`, `produce`, `consume`, `bench`) takes to reach a
//! cluster, and the parsing of `key=value` arguments they share.

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use runnel_client::admin::Admin;
use runnel_client::rdkafka::ClientConfig;

#[derive(Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Bootstrap broker(s), host:port[,host:port...].
    #[arg(short = 'b', long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap: String,
    /// How long one call to the cluster may take, in milliseconds.
    #[arg(long, default_value_t = 30_000, global = true)]
    pub timeout_ms: u64,
    /// How long to wait for a first answer from the cluster before giving up on it, in
    /// milliseconds (an unreachable broker fails the command this soon).
    #[arg(long, default_value_t = 5_000, global = true)]
    pub connect_timeout_ms: u64,
    /// A librdkafka property, key=value (as kcat's -X), e.g. `-X security.protocol=SASL_PLAINTEXT
    /// -X sasl.mechanism=PLAIN -X sasl.username=alice -X sasl.password=...`; repeatable.
    #[arg(short = 'X', long = "property", global = true)]
    pub properties: Vec<String>,
}

impl ClusterArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Fails within the connect timeout unless a broker of the cluster answers `client`.
    pub fn probe<C: runnel_client::rdkafka::ClientContext>(
        &self,
        client: &runnel_client::rdkafka::client::Client<C>,
    ) -> anyhow::Result<()> {
        Ok(runnel_client::probe(
            client,
            &self.bootstrap,
            self.connect_timeout(),
        )?)
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
        Ok(Admin::connect(
            &self.client_config()?,
            self.timeout(),
            self.connect_timeout(),
        )?)
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
            Ok(item) => crate::outln!("{}", done(&item)),
            Err(error) => {
                eprintln!("error: {error}");
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

/// Whether librdkafka's report is a broker connection failing (refused, reset, all brokers
/// down). The client tools do not log those: a cluster that cannot be reached fails the
/// command with one line ([`ClusterArgs::probe`]), and a connection lost later shows as the
/// error of the call or record it failed.
pub fn is_connection_failure(error: &runnel_client::rdkafka::error::KafkaError) -> bool {
    use runnel_client::rdkafka::types::RDKafkaErrorCode;
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
        )
    )
}

/// librdkafka's log lines, less its `FAIL` lines (a connection failing: see
/// [`is_connection_failure`]).
pub fn log_librdkafka(
    level: runnel_client::rdkafka::config::RDKafkaLogLevel,
    facility: &str,
    message: &str,
) {
    use runnel_client::rdkafka::config::RDKafkaLogLevel;
    if facility == "FAIL" {
        return;
    }
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(facility, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(facility, "librdkafka: {message}"),
    }
}
