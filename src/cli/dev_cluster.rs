//! `runnel dev-cluster`: N combined nodes (broker,controller) on loopback, each a separate
//! `runnel server` process started with Kafka's KRaft names, for trying a cluster on one
//! machine. It prints the bootstrap list, each node's ports, data directory and log, and the
//! command that starts that node again by hand (tests kill and restart single nodes that
//! way); SIGINT (Ctrl-C) or SIGTERM stops every node cleanly, and the command exits 0 once
//! all have. A node that exits by itself stops the others and fails the command.
//!
//! Ports, from `--base-port P` (default 9092): node `i` (1-based) serves clients on
//! `P + 2(i-1)` and its controller listener on `P + 2(i-1) + 1`, so node 1 has Kafka's stock
//! ports (9092 and 9093), node 2 9094 and 9095, and so on.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tokio::process::{Child, Command};

/// The most nodes one dev cluster runs.
const NODES_MAX: u16 = 9;
/// How long the nodes may take to serve clients (a node serves once a majority of the
/// voters has elected an active controller).
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Args)]
pub struct DevClusterArgs {
    /// Nodes to start, 1 to 9 (each a voter of the metadata quorum).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Node 1's client port; node i serves clients on base + 2(i-1) and its controller
    /// listener on the port after that.
    #[arg(long, default_value_t = 9092)]
    base_port: u16,
    /// Where the nodes keep their data: `DIR/node-<id>` and `DIR/node-<id>.log`.
    #[arg(long, default_value = "./dev-cluster")]
    data_dir: PathBuf,
}

/// One node's identity, ports and files.
struct NodePlan {
    node_id: u16,
    client_port: u16,
    controller_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
}

impl NodePlan {
    /// The `runnel server` arguments that start this node.
    fn server_args(&self, voters: &str) -> Vec<String> {
        let overrides = [
            ("process.roles", "broker,controller".to_string()),
            ("node.id", self.node_id.to_string()),
            ("controller.quorum.voters", voters.to_string()),
            (
                "listeners",
                format!(
                    "PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                    self.client_port, self.controller_port
                ),
            ),
            ("controller.listener.names", "CONTROLLER".to_string()),
            ("log.dirs", self.data_dir.display().to_string()),
        ];
        let mut args = vec!["server".to_string()];
        for (key, value) in overrides {
            args.push("--override".to_string());
            args.push(format!("{key}={value}"));
        }
        args
    }
}

fn plan(args: &DevClusterArgs) -> anyhow::Result<Vec<NodePlan>> {
    if args.nodes == 0 || args.nodes > NODES_MAX {
        bail!("--nodes {} is not between 1 and {NODES_MAX}", args.nodes);
    }
    let last = u32::from(args.base_port) + 2 * u32::from(args.nodes) - 1;
    if args.base_port == 0 || last > u32::from(u16::MAX) {
        bail!(
            "--base-port {} leaves no room for {} nodes' ports (2 each, up to 65535)",
            args.base_port,
            args.nodes
        );
    }
    let data_dir = std::path::absolute(&args.data_dir)
        .with_context(|| format!("resolve {}", args.data_dir.display()))?;
    Ok((1..=args.nodes)
        .map(|node_id| {
            let client_port = args.base_port + 2 * (node_id - 1);
            NodePlan {
                node_id,
                client_port,
                controller_port: client_port + 1,
                data_dir: data_dir.join(format!("node-{node_id}")),
                log: data_dir.join(format!("node-{node_id}.log")),
            }
        })
        .collect())
}

pub fn run(args: DevClusterArgs) -> anyhow::Result<()> {
    let nodes = plan(&args)?;
    let voters = nodes
        .iter()
        .map(|n| format!("{}@127.0.0.1:{}", n.node_id, n.controller_port))
        .collect::<Vec<_>>()
        .join(",");
    let binary = std::env::current_exe().context("find the runnel binary")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(supervise(&binary, &nodes, &voters))
}

async fn supervise(binary: &Path, nodes: &[NodePlan], voters: &str) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let mut children = Vec::with_capacity(nodes.len());
    for node in nodes {
        std::fs::create_dir_all(&node.data_dir)
            .with_context(|| format!("create {}", node.data_dir.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("open {}", node.log.display()))?;
        let child = Command::new(binary)
            .args(node.server_args(voters))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("share the log file")?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start node {}", node.node_id))?;
        children.push(child);
    }
    let started = tokio::select! {
        started = wait_serving(nodes, &mut children) => started,
        _ = terminate.recv() => Err(anyhow::anyhow!("SIGTERM before the nodes served")),
        _ = interrupt.recv() => Err(anyhow::anyhow!("SIGINT before the nodes served")),
    };
    if let Err(error) = started {
        stop_all(&mut children).await;
        return Err(error);
    }
    print_plan(binary, nodes, voters);
    let outcome = tokio::select! {
        _ = terminate.recv() => Ok(()),
        _ = interrupt.recv() => Ok(()),
        (node, status) = first_exit(nodes, &mut children) => Err(anyhow::anyhow!(
            "node {node} exited by itself ({status}); see its log; stopping the others"
        )),
    };
    stop_all(&mut children).await;
    say(format_args!("dev cluster stopped"));
    outcome
}

/// Waits until every node accepts connections on its client port.
async fn wait_serving(nodes: &[NodePlan], children: &mut [Child]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    for (node, child) in nodes.iter().zip(children.iter_mut()) {
        loop {
            if let Some(status) = child.try_wait().context("check a node")? {
                bail!(
                    "node {} exited before it served ({status}); its log: {}",
                    node.node_id,
                    node.log.display()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", node.client_port))
                .await
                .is_ok()
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "node {} did not serve within {START_DEADLINE:?}; its log: {}",
                    node.node_id,
                    node.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The first node to exit, and how.
async fn first_exit(nodes: &[NodePlan], children: &mut [Child]) -> (u16, String) {
    let waits = children.iter_mut().zip(nodes).map(|(child, node)| {
        Box::pin(async move {
            let status = child.wait().await;
            let status = status.map_or_else(|error| error.to_string(), |s| s.to_string());
            (node.node_id, status)
        })
    });
    futures_select_all(waits).await
}

/// The output of the first of `futures` to finish.
async fn futures_select_all<F, T>(futures: impl Iterator<Item = F>) -> T
where
    F: std::future::Future<Output = T> + Unpin,
{
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(move |cx| {
        for future in futures.iter_mut() {
            if let std::task::Poll::Ready(output) = std::pin::Pin::new(future).poll(cx) {
                return std::task::Poll::Ready(output);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// SIGTERM to every running node, then waits for each (killed after [`STOP_DEADLINE`]).
async fn stop_all(children: &mut [Child]) {
    for child in children.iter() {
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on a child this process started and has not reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    for child in children.iter_mut() {
        if tokio::time::timeout(STOP_DEADLINE, child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

fn print_plan(binary: &Path, nodes: &[NodePlan], voters: &str) {
    let bootstrap = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.client_port))
        .collect::<Vec<_>>()
        .join(",");
    say(format_args!("bootstrap: {bootstrap}"));
    for node in nodes {
        say(format_args!(
            "node {}: client 127.0.0.1:{}, controller 127.0.0.1:{}, data {}, log {}",
            node.node_id,
            node.client_port,
            node.controller_port,
            node.data_dir.display(),
            node.log.display()
        ));
    }
    say(format_args!("start a node again by hand with:"));
    for node in nodes {
        let args: Vec<String> = node
            .server_args(voters)
            .into_iter()
            .map(|arg| {
                if arg.starts_with("--") || arg == "server" {
                    arg
                } else {
                    format!("'{arg}'")
                }
            })
            .collect();
        say(format_args!("  {} {}", binary.display(), args.join(" ")));
    }
    say(format_args!("Ctrl-C stops every node"));
}

/// One line on standard output; a closed output (the reader went away) is not an error
/// for a command that supervises processes.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}
