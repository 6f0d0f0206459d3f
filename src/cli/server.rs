//! `runnel server`: a single-node broker. Configuration, lowest precedence first: Kafka's
//! defaults (durable flushing being Runnel's own), `--config server.properties`, each
//! `--override key=value`, then the explicit flags (`--listen`, `--advertised-listener`,
//! `--data-dir`, `--node-id`, `--http-listen`). SIGTERM or SIGINT stops it cleanly: no new connections,
//! in-flight requests finished, logs flushed, exit status 0.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use runnel_broker::config::{listen_address, parse_properties, AdvertisedListener};
use runnel_broker::BrokerConfig;

#[derive(Args)]
pub struct ServerArgs {
    /// host:port to listen on, the host an address or a name (`localhost:9092`)
    /// [default: 127.0.0.1:9092].
    #[arg(long)]
    listen: Option<String>,
    /// host:port clients are told to connect to [default: the bound address].
    #[arg(long)]
    advertised_listener: Option<String>,
    /// Directory holding the logs [default: ./data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// This broker's node id [default: 1].
    #[arg(long)]
    node_id: Option<i32>,
    /// Serve `GET /metrics` (Prometheus) and `GET /health` here [default: off; `http.listen`].
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// A Kafka `server.properties` file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A configuration with Kafka's name, e.g. `--override num.partitions=6`; repeatable.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = server_config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("runnel")
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        // Listened for before the start: a SIGTERM once the port accepts (a harness stopping
        // the node at once) must stop it cleanly, not kill it by the default action.
        let stop = StopSignals::listen()?;
        if config.role == runnel_broker::config::kraft::ProcessRole::Controller {
            let running = runnel_broker::start_controller(config)
                .await
                .context("start the controller")?;
            stop.wait().await;
            return running.shutdown().await.context("shut down the controller");
        }
        let running = runnel_broker::start(config)
            .await
            .context("start the broker")?;
        stop.wait().await;
        running.shutdown().await.context("shut down the broker")
    })
}

/// The configuration of `--config FILE` (Kafka's `server.properties`) and then each
/// `--override key=value` over Kafka's defaults; shared by the commands that read a node's
/// configuration (`server`, `storage format`).
pub fn broker_config(config: Option<&Path>, overrides: &[String]) -> anyhow::Result<BrokerConfig> {
    let mut properties = BTreeMap::new();
    if let Some(path) = config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read configuration file {}", path.display()))?;
        properties = parse_properties(&text)
            .with_context(|| format!("parse configuration file {}", path.display()))?;
    }
    for pair in overrides {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--override {pair:?} is not key=value");
        };
        properties.insert(key.trim().to_string(), value.trim().to_string());
    }
    BrokerConfig::from_properties(&properties).context("read configuration")
}

fn server_config(args: &ServerArgs) -> anyhow::Result<BrokerConfig> {
    let mut config = broker_config(args.config.as_deref(), &args.overrides)?;
    if let Some(listen) = &args.listen {
        let address = listen
            .split_once("://")
            .map_or(listen.as_str(), |(_, rest)| rest);
        (config.listen, config.listen_host) = listen_address(address)
            .map_err(|reason| anyhow::anyhow!("--listen {listen:?}: {reason}"))?;
    }
    if let Some(advertised) = &args.advertised_listener {
        let (host, port) = advertised
            .rsplit_once(':')
            .with_context(|| format!("--advertised-listener {advertised:?} is not host:port"))?;
        let port = port
            .parse()
            .with_context(|| format!("port of {advertised:?}"))?;
        config.advertised_listener = Some(AdvertisedListener {
            host: host.to_string(),
            port,
        });
    }
    if let Some(data_dir) = &args.data_dir {
        config.data_dir = data_dir.clone();
    }
    if let Some(node_id) = args.node_id {
        config.node_id = node_id;
    }
    if let Some(http_listen) = args.http_listen {
        config.http_listen = Some(http_listen);
    }
    Ok(config)
}

/// SIGTERM and SIGINT, each of which stops the server.
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn listen() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate()).context("listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("listen for SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => tracing::info!("SIGTERM received"),
            _ = self.interrupt.recv() => tracing::info!("SIGINT received"),
        }
    }
}
