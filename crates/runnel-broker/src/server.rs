//! Starting and stopping a broker: recovery, the listener, and a clean shutdown.
//!
//! Start: the data directory's lock (one server per directory), the clean-shutdown markers
//! (taken: read and removed), `meta.properties`, the metadata quorum (its log replayed into the
//! image; a log from before the quorum migrated first, [`crate::metadata_staging`]),
//! every partition log (opened in parallel, recovered from the last recovery-point checkpoint,
//! trusting the active segment's index after a clean shutdown), removal of directories of
//! topics deleted before a crash (only those the metadata log accounts for; other stray
//! directories are kept and reported, see [`crate::data_dir`]), then the listener. A data
//! directory holding partition data is never given a new `meta.properties` or an empty
//! metadata log: a missing `meta.properties`, a missing or empty metadata log, or a damaged one
//! (not just a torn tail, [`crate::metadata_log`]) refuses the start with what to do, `runnel
//! metadata rebuild` among it. Shutdown: stop accepting, answer parked fetches at once, let
//! connections finish their in-flight requests (bounded by [`SHUTDOWN_DRAIN`]), then flush and
//! close every log (in parallel), write the checkpoints and then the clean-shutdown markers.
//! The accept loop applies `max.connections.per.ip` ([`crate::connection_quotas`]) and
//! `max.connections`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::broker::Broker;
use crate::config::kraft::ProcessRole;
use crate::config::{AdvertisedListener, BrokerConfig};
use crate::controller::{Controller, ControllerError, METADATA_LOG_DIR};
use crate::data_dir::{self, DataDirError, DataDirLock};
use crate::group_coordinator::GroupCoordinator;
use crate::meta_properties::{self, MetaPropertiesError, META_PROPERTIES};
use crate::metadata_log::{self, MetadataLogDamage};
use crate::replica_manager::{OpenTopicError, ReplicaManager};

/// How long in-flight requests may take to finish at shutdown.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(30);
/// Pause after a failed `accept` (out of file descriptors, say) before the next.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Partition directories named in a start-refusal message; the rest are counted.
const DIRS_NAMED_MAX: usize = 5;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(
        "{dir}/{META_PROPERTIES} is missing, but {dir} holds data ({holds}); refusing to start \
         rather than adopt it under a new cluster id. Restore {META_PROPERTIES} from a backup, \
         or adopt the data with `runnel metadata rebuild --data-dir {dir}`, which writes a new \
         one"
    )]
    MetaPropertiesMissing { dir: String, holds: String },
    #[error(
        "the metadata log {dir}/{METADATA_LOG_DIR} is missing or empty, but {dir} holds \
         partition directories ({partitions}); refusing to start, so that no partition data \
         is deleted or hidden. Restore {METADATA_LOG_DIR} from a backup, or rebuild it from the \
         partition directories with `runnel metadata rebuild --data-dir {dir}` (it reports the \
         topic configs it cannot recover)"
    )]
    MetadataMissing { dir: String, partitions: String },
    #[error(
        "{damage}. Refusing to start: recovering past this point would drop acknowledged \
         metadata. Restore {METADATA_LOG_DIR} from a backup, or run `runnel metadata rebuild \
         --data-dir {dir}`: it keeps the damaged log aside, keeps the records before the damage \
         and recreates the topics from the partition directories"
    )]
    MetadataDamaged {
        dir: String,
        damage: MetadataLogDamage,
    },
    #[error(transparent)]
    MetaProperties(#[from] MetaPropertiesError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("migrating the metadata log of {dir} to the metadata quorum's format (the old log is untouched): {source}")]
    Migration {
        dir: String,
        source: crate::metadata_staging::StagingError,
    },
    #[error("settling an interrupted metadata log swap in {dir}: {source}")]
    Staging {
        dir: String,
        source: crate::metadata_staging::StagingError,
    },
    #[error("opening topic {topic}: {source}")]
    OpenTopic {
        topic: String,
        source: OpenTopicError,
    },
    #[error("storage: {0}")]
    Log(#[from] runnel_log::LogError),
    #[error("binding {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the flusher: {0}")]
    Flusher(std::io::Error),
    #[error(
        "{dir}/meta.properties names cluster {local}, but the metadata quorum this node is a \
         voter of is cluster {quorum}: the data directory belongs to another cluster; refusing \
         to start (give this node an empty data directory to join the quorum's cluster)"
    )]
    OtherCluster {
        dir: String,
        local: String,
        quorum: String,
    },
    #[error("a startup task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A started broker.
pub struct RunningBroker {
    /// Held until the broker is shut down or dropped: one server per log directory.
    _data_dir_locks: Vec<DataDirLock>,
    local_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    http: Option<JoinHandle<()>>,
    broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    accept_loop: JoinHandle<()>,
    checkpoints: JoinHandle<()>,
    retention: JoinHandle<()>,
    cleaner: JoinHandle<()>,
    scrubber: JoinHandle<()>,
    /// Applies each new metadata image ([`crate::image_applier`]).
    image_applier: JoinHandle<()>,
}

impl RunningBroker {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the HTTP port (`http.listen`) is bound to, if it is on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, drains connections, flushes and closes the logs.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        tracing::info!("shutting down");
        crate::replication::controlled_shutdown(&self.broker).await;
        self.shutdown.send_replace(true);
        self.broker.begin_shutdown();
        if self.accept_loop.await.is_err() {
            tracing::error!("the accept loop panicked");
        }
        if let Some(http) = self.http {
            if http.await.is_err() {
                tracing::error!("the HTTP port panicked");
            }
        }
        // A creation under way (an internal topic's, say) ends first, installed or undone:
        // stopped between its directories and its record's outcome, it would leave
        // directories the next start cannot match to the metadata. None starts after this.
        let creations = self.broker.lock_creations().await;
        self.checkpoints.abort();
        self.retention.abort();
        self.cleaner.abort();
        self.scrubber.abort();
        self.image_applier.abort();
        self.broker.txns.shutdown().await;
        self.broker.groups.shutdown().await;
        let broker = Arc::clone(&self.broker);
        tokio::task::spawn_blocking(move || broker.replicas.shutdown()).await??;
        self.broker.controller.shutdown().await;
        drop(creations);
        tracing::info!("shut down cleanly");
        Ok(())
    }
}

/// Recovers the data directory and starts serving.
pub async fn start(config: BrokerConfig) -> Result<RunningBroker, ServerError> {
    let started = std::time::Instant::now();
    let config = Arc::new(config);
    let (prepared, metadata) = {
        let config = Arc::clone(&config);
        tokio::task::spawn_blocking(move || prepare(config)).await??
    };
    let controller = open_metadata(&config, metadata).await?;
    let mut prepared = prepared;
    prepared.cluster_id = Some(settle_cluster_id(&config, &controller, &prepared).await?);
    let (broker, data_dir_lock, opened_from) =
        tokio::task::spawn_blocking(move || open(prepared, controller)).await??;
    let broker = Arc::new(broker);
    let image_applier = tokio::spawn(crate::image_applier::run(Arc::clone(&broker), opened_from));
    tokio::spawn(crate::replication::isr::run(Arc::clone(&broker)));
    GroupCoordinator::start_if_present(&broker).await;
    crate::transaction_coordinator::TransactionCoordinator::start_if_present(&broker).await;

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            address: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        address: config.listen,
        source,
    })?;
    let advertised = config
        .advertised_listener
        .clone()
        .unwrap_or_else(|| AdvertisedListener {
            host: match &config.listen_host {
                Some(name) => name.clone(),
                None if local_addr.ip().is_unspecified() => "localhost".to_string(),
                None => local_addr.ip().to_string(),
            },
            port: local_addr.port(),
        });
    broker.set_advertised_listener(advertised.clone());
    // Kafka's BrokerRegistration: the address other nodes' Metadata lists for this one.
    broker
        .controller
        .register_broker(
            &advertised.host,
            i32::from(advertised.port),
            config.rack.clone(),
        )
        .await?;
    broker.controller.start_liveness(
        std::time::Duration::from_millis(config.broker_session_timeout_ms),
        std::time::Duration::from_millis(config.broker_heartbeat_interval_ms),
    );
    if config.auto_leader_rebalance_enable {
        broker
            .controller
            .start_leader_balancing(std::time::Duration::from_millis(
                config.leader_imbalance_check_interval_ms,
            ));
    }

    let http_listener = match config.http_listen {
        Some(address) => Some(
            crate::http::bind(address)
                .await
                .map_err(|source| ServerError::Bind { address, source })?,
        ),
        None => None,
    };
    let http_addr = http_listener
        .as_ref()
        .and_then(|listener| listener.local_addr().ok());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let http = http_listener.map(|listener| {
        tokio::spawn(crate::http::serve(
            listener,
            Arc::clone(&broker),
            shutdown_rx.clone(),
        ))
    });
    let accept_loop = tokio::spawn(accept_loop(
        listener,
        Arc::clone(&broker),
        shutdown_rx.clone(),
    ));
    let checkpoints = tokio::spawn(checkpoint_loop(Arc::clone(&broker)));
    let retention = tokio::spawn(crate::retention::retention_loop(Arc::clone(&broker)));
    let cleaner = tokio::spawn(crate::cleaner::cleaner_loop(Arc::clone(&broker)));
    let scrubber = tokio::spawn(crate::scrubber::scrub_loop(Arc::clone(&broker)));
    tracing::info!(
        listen = %local_addr,
        advertised = %format!("{}:{}", advertised.host, advertised.port),
        data_dir = %config.data_dir.display(),
        durable = config.flush.is_durable(),
        http = ?http_addr,
        startup_ms = started.elapsed().as_millis() as u64,
        "runnel listening on {local_addr}"
    );
    Ok(RunningBroker {
        _data_dir_locks: data_dir_lock,
        local_addr,
        http_addr,
        http,
        broker,
        shutdown,
        accept_loop,
        checkpoints,
        retention,
        cleaner,
        scrubber,
        image_applier,
    })
}

/// A controller-only node (`process.roles=controller`): one voter of the metadata quorum that
/// serves no clients and holds no partitions. While it leads it runs the changes brokers
/// carry to it and fences brokers that stop heartbeating, as any active controller.
pub struct RunningController {
    _data_dir_locks: Vec<DataDirLock>,
    controller: Controller,
}

impl RunningController {
    /// Stops the quorum (its log and snapshots stay as they are on disk).
    pub async fn shutdown(self) -> Result<(), ServerError> {
        tracing::info!("shutting down");
        self.controller.shutdown().await;
        tracing::info!("shut down cleanly");
        Ok(())
    }
}

/// Starts a controller-only node: the data directory's checks and `meta.properties` as for any
/// node, then its voter of the metadata quorum.
pub async fn start_controller(config: BrokerConfig) -> Result<RunningController, ServerError> {
    let started = std::time::Instant::now();
    let config = Arc::new(config);
    let (prepared, metadata) = {
        let config = Arc::clone(&config);
        tokio::task::spawn_blocking(move || prepare(config)).await??
    };
    let controller = open_metadata(&config, metadata).await?;
    let cluster_id = settle_cluster_id(&config, &controller, &prepared).await?;
    crate::log_dirs::ensure_meta_properties(&prepared.log_dirs, config.node_id, &cluster_id)?;
    controller.start_fencing(
        Duration::from_millis(config.broker_session_timeout_ms),
        Duration::from_millis(config.broker_heartbeat_interval_ms),
    );
    if config.auto_leader_rebalance_enable {
        controller.start_leader_balancing(Duration::from_millis(
            config.leader_imbalance_check_interval_ms,
        ));
    }
    tracing::info!(
        node_id = config.node_id,
        controller_listener = ?config.controller_listen,
        cluster_id,
        startup_ms = started.elapsed().as_millis() as u64,
        "runnel controller-only node started"
    );
    Ok(RunningController {
        _data_dir_locks: prepared.locks,
        controller,
    })
}

/// What the start found before the metadata is opened.
struct Prepared {
    config: Arc<BrokerConfig>,
    log_dirs: Vec<Arc<crate::log_dirs::LogDir>>,
    locks: Vec<DataDirLock>,
    last_shutdown: std::collections::HashMap<std::path::PathBuf, runnel_log::LastShutdown>,
    inventory: data_dir::Inventory,
    /// From `meta.properties`; `None` until the quorum names it (see [`settle_cluster_id`]).
    cluster_id: Option<String>,
}

/// The metadata log's format, as found.
enum MetadataFormat {
    /// The Raft log of the metadata quorum (or no log yet).
    Quorum,
    /// A log the single writer wrote before the quorum (its records, read): migrated before
    /// the quorum starts.
    SingleWriter(metadata_log::MetadataLogScan),
}

/// Starts the metadata quorum, first migrating the log of an older data directory into it
/// ([`crate::metadata_staging`]). The quorum's own scan refuses a damaged Raft log as the
/// migration's scan refused a damaged old log.
async fn open_metadata(
    config: &BrokerConfig,
    metadata: MetadataFormat,
) -> Result<Controller, ServerError> {
    let data_dir = config.data_dir.clone();
    let node_id = config.node_id;
    if let MetadataFormat::SingleWriter(scan) = metadata {
        migrate(&data_dir, node_id, scan).await?;
    }
    let started = match config.controller_listen {
        Some(listen) if !config.quorum_voters.is_empty() => {
            let listener = TcpListener::bind(listen)
                .await
                .map_err(|source| ServerError::Bind {
                    address: listen,
                    source,
                })?;
            let mut quorum = runnel_controller::QuorumConfig::new(
                node_id,
                config.quorum_voters.clone(),
                data_dir.clone(),
                listen,
            );
            quorum.learner = config.role == ProcessRole::Broker;
            quorum.election_timeout_ms = config.controller_election_timeout_ms;
            if quorum.learner {
                tracing::info!(
                    voters = config.quorum_voters.len(),
                    learner_listener = ?listener.local_addr().ok(),
                    "starting as a broker-only node: a learner of the metadata quorum"
                );
            } else {
                tracing::info!(
                    voters = config.quorum_voters.len(),
                    controller_listener = %listen,
                    "starting as one voter of the metadata quorum"
                );
            }
            Controller::start(quorum, listener).await
        }
        _ => Controller::start_quorum(&data_dir, node_id).await,
    };
    match started {
        Ok(controller) => Ok(controller),
        Err(ControllerError::Start(runnel_controller::StartError::Log(
            runnel_controller::LogStoreError::Damaged(damage),
        ))) => Err(ServerError::MetadataDamaged {
            dir: data_dir.display().to_string(),
            damage,
        }),
        Err(error) => Err(error.into()),
    }
}

/// The cluster id, as the metadata quorum records it: the first node to start records its
/// own (from its `meta.properties`, or a new one), and every node takes the recorded one. A
/// node whose `meta.properties` names another cluster is refused.
async fn settle_cluster_id(
    config: &BrokerConfig,
    controller: &Controller,
    prepared: &Prepared,
) -> Result<String, ServerError> {
    let local = prepared.cluster_id.clone();
    let claim = local
        .clone()
        .unwrap_or_else(crate::storage_format::random_cluster_id);
    let recorded = controller.settle_cluster_id(&claim).await?;
    match local {
        Some(local) if local != recorded => Err(ServerError::OtherCluster {
            dir: config.data_dir.display().to_string(),
            local,
            quorum: recorded,
        }),
        _ => Ok(recorded),
    }
}

/// Rewrites the single writer's metadata log as the quorum's: its records proposed in order to
/// a quorum of one in the staging directory, then swapped in with the old log kept as
/// `__cluster_metadata-0.<ms>-single-writer`. A torn tail stays in the kept copy.
async fn migrate(
    data_dir: &std::path::Path,
    node_id: i32,
    scan: metadata_log::MetadataLogScan,
) -> Result<(), ServerError> {
    use crate::metadata_staging;
    let failed = |source| ServerError::Migration {
        dir: data_dir.display().to_string(),
        source,
    };
    let count = scan.records.len();
    tracing::info!(
        records = count,
        "the metadata log is in the single writer's format (from before the metadata quorum); migrating it"
    );
    let records = scan.records.into_iter().map(|(_, record)| record).collect();
    metadata_staging::stage(data_dir, node_id, records)
        .await
        .map_err(failed)?;
    let dir = data_dir.to_path_buf();
    let kept = tokio::task::spawn_blocking(move || {
        metadata_staging::swap_in(&dir, &metadata_staging::kept_name("single-writer"))
    })
    .await?
    .map_err(failed)?;
    tracing::info!(
        records = count,
        kept = ?kept,
        "metadata log migrated to the metadata quorum's format; the old log is kept"
    );
    Ok(())
}

/// The metadata log's format (see [`MetadataFormat`]): the Raft log once it has a
/// `quorum-state` or holds Raft entries, the single writer's when its batches are metadata
/// records; damage in the single writer's format is refused here.
fn metadata_format(
    metadata_dir: &std::path::Path,
    dir: &str,
) -> Result<MetadataFormat, ServerError> {
    if !metadata_dir.is_dir()
        || metadata_dir
            .join(runnel_controller::quorum_state::QUORUM_STATE_FILE)
            .exists()
    {
        return Ok(MetadataFormat::Quorum);
    }
    // Without `quorum-state` a Raft log holds at most its first membership entry (a vote is
    // saved before any other entry), which yields no record: it is the quorum's.
    match metadata_log::scan(metadata_dir) {
        Ok(scan) if !scan.records.is_empty() => Ok(MetadataFormat::SingleWriter(scan)),
        Ok(_) => Ok(MetadataFormat::Quorum),
        Err(damage) => Err(ServerError::MetadataDamaged {
            dir: dir.to_string(),
            damage,
        }),
    }
}

/// Whether the metadata log directory holds any byte of log or snapshot.
fn metadata_log_holds_data(metadata_dir: &std::path::Path) -> bool {
    std::fs::read_dir(metadata_dir)
        .map(|entries| {
            entries.flatten().any(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                (name.ends_with(".log") || name.ends_with(".checkpoint"))
                    && entry.metadata().is_ok_and(|m| m.len() > 0)
            })
        })
        .unwrap_or(false)
}

fn prepare(config: Arc<BrokerConfig>) -> Result<(Prepared, MetadataFormat), ServerError> {
    let data_dir = &config.data_dir;
    let dir = data_dir.display().to_string();
    let (log_dirs, locks) = crate::log_dirs::open_all(&config.log_dirs())?;
    // Before anything in the directories is written: a crash from here on is unclean.
    let last_shutdown = crate::replica_manager::take_clean_shutdown_markers(&log_dirs)?;
    let open_files = runnel_log::OpenFiles::global();
    open_files.set_capacity(
        config
            .open_files_max
            .unwrap_or_else(runnel_log::open_files::default_capacity),
    );
    tracing::info!(
        open_files_max = open_files.capacity(),
        rlimit_nofile = ?runnel_log::open_files::soft_open_files_limit(),
        "segment files held open at most"
    );
    let inventory = crate::log_dirs::scan_inventory(&log_dirs)?;
    crate::metadata_staging::settle_interrupted_swap(data_dir).map_err(|source| {
        ServerError::Staging {
            dir: dir.clone(),
            source,
        }
    })?;
    let metadata_dir = data_dir.join(METADATA_LOG_DIR);
    let metadata = metadata_format(&metadata_dir, &dir)?;
    let holds_metadata = metadata_log_holds_data(&metadata_dir);
    // Directories without a record byte (what a creation interrupted by a crash leaves) are
    // no data to protect: they alone never refuse a start.
    let partitions_with_records = || {
        if inventory.partitions.is_empty() {
            None
        } else {
            inventory.examples_with_records(DIRS_NAMED_MAX)
        }
    };
    // One voter of several learns the cluster id from the quorum (recorded by the first node
    // to start), so a fresh data dir, or one whose start stopped before it wrote
    // `meta.properties`, waits for it; a quorum of one makes its own.
    let several = !config.quorum_voters.is_empty();
    let cluster_id = match meta_properties::load(data_dir, config.node_id)? {
        Some(cluster_id) => Some(cluster_id),
        None => match (partitions_with_records(), holds_metadata) {
            (Some(holds), _) => return Err(ServerError::MetaPropertiesMissing { dir, holds }),
            (None, _) if several => None,
            (None, true) => {
                let holds = format!("the metadata log {METADATA_LOG_DIR}");
                return Err(ServerError::MetaPropertiesMissing { dir, holds });
            }
            (None, false) => Some(meta_properties::create(data_dir, config.node_id)?),
        },
    };
    if !holds_metadata {
        if let Some(partitions) = partitions_with_records() {
            return Err(ServerError::MetadataMissing { dir, partitions });
        }
    }
    let prepared = Prepared {
        config,
        log_dirs,
        locks,
        last_shutdown,
        inventory,
        cluster_id,
    };
    Ok((prepared, metadata))
}

/// Opens the partitions the image places here; returns the broker and the image it opened
/// them from (the image applier applies every later one).
fn open(
    prepared: Prepared,
    controller: Controller,
) -> Result<
    (
        Broker,
        Vec<DataDirLock>,
        Arc<runnel_metadata::MetadataImage>,
    ),
    ServerError,
> {
    let Prepared {
        config,
        log_dirs,
        locks,
        last_shutdown,
        inventory,
        cluster_id,
    } = prepared;
    let cluster_id = cluster_id.unwrap_or_default();
    crate::log_dirs::ensure_meta_properties(&log_dirs, config.node_id, &cluster_id)?;
    let dynamic =
        crate::dynamic_config::DynamicBrokerConfig::open(Arc::clone(&config), &controller.image());
    let image = controller.image();
    crate::log_dirs::settle_future_dirs(&log_dirs, &image);
    let replicas =
        ReplicaManager::new(dynamic.current(), log_dirs).map_err(ServerError::Flusher)?;
    let recovery_points = replicas.read_recovery_points()?;
    let log_start_offsets = replicas.read_log_start_offsets()?;
    replicas
        .open_all_at(
            image.topics().map(|topic| &**topic),
            &recovery_points,
            &log_start_offsets,
            &last_shutdown,
        )
        .map_err(|(topic, source)| ServerError::OpenTopic { topic, source })?;
    replicas.load_cleaner_checkpoint()?;
    let stray = data_dir::settle_stray(&inventory, &image, controller.removed_topics());
    replicas.set_stray_partition_dirs(stray);
    let broker = Broker::new(config, cluster_id, controller, replicas, dynamic);
    Ok((broker, locks, image))
}

async fn accept_loop(listener: TcpListener, broker: Arc<Broker>, shutdown: watch::Receiver<bool>) {
    // `max.connections`, read per accept: it changes with the dynamic broker configs. Only
    // this loop adds to the count, so checking then adding is not racy.
    let open_connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut connections = JoinSet::new();
    let mut stopping = shutdown.clone();
    loop {
        tokio::select! {
            () = stopped(&mut stopping) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(ip_slot) = broker.connection_quotas.try_acquire(peer.ip()) else {
                        tracing::warn!(
                            %peer,
                            limit = broker.connection_quotas.limit(peer.ip()),
                            "max.connections.per.ip reached for this IP; closing the new connection"
                        );
                        broker.metrics.connections_refused_per_ip.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let connections_max = broker.dynamic.current().connections_max;
                    if open_connections.load(Ordering::Acquire) >= connections_max {
                        tracing::warn!(%peer, "max.connections reached; closing the new connection");
                        broker.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    open_connections.fetch_add(1, Ordering::AcqRel);
                    let slot = ConnectionSlot(Arc::clone(&open_connections));
                    broker.metrics.connections_accepted.fetch_add(1, Ordering::Relaxed);
                    broker.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
                    let broker = Arc::clone(&broker);
                    let shutdown = shutdown.clone();
                    connections.spawn(async move {
                        crate::connection::serve(Arc::clone(&broker), stream, peer, shutdown).await;
                        broker.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
                        drop((slot, ip_slot));
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_DRAIN, drained).await.is_err() {
        tracing::warn!("in-flight requests did not finish in time; closing their connections");
        connections.abort_all();
    }
}

/// One connection counted against `max.connections`; given back when dropped.
struct ConnectionSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves once shutdown has begun.
///
/// # Cancel safety
/// Cancel safe: it only waits on a `watch` receiver.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stopping.
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}

async fn checkpoint_loop(broker: Arc<Broker>) {
    let period = Duration::from_millis(broker.config.checkpoint_interval_ms);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        ticks.tick().await;
        let broker = Arc::clone(&broker);
        match tokio::task::spawn_blocking(move || broker.replicas.write_checkpoints()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "writing checkpoints failed"),
            Err(error) => tracing::error!(%error, "checkpoint task failed"),
        }
    }
}
