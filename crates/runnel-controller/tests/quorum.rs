//! The metadata quorum through the real thing: nodes on loopback sockets with ports from the
//! OS, their logs in temporary data dirs. Every wait is for a condition, with a deadline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use runnel_controller::{
    AppliedMetadata, ForwardError, Forwarded, MetadataQuorum, ProposeError, QuorumConfig,
    StartError, Voter, METADATA_LOG_DIR,
};
use runnel_metadata::MetadataRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use uuid::Uuid;

/// How long any awaited condition may take: elections take about a second here.
const DEADLINE: Duration = Duration::from_secs(15);

fn topic(name: &str) -> MetadataRecord {
    MetadataRecord::Topic {
        name: name.to_string(),
        topic_id: Uuid::new_v4(),
        partitions: 1,
        leader: 1,
        configs: BTreeMap::new(),
        replicas: Vec::new(),
    }
}

/// Timeouts short enough for tests, long enough for a loaded two-core machine.
fn config(id: i32, voters: &[Voter], dir: &Path, addr: SocketAddr) -> QuorumConfig {
    let mut config = QuorumConfig::new(id, voters.to_vec(), dir.to_path_buf(), addr);
    config.election_timeout_ms = 1600;
    config.heartbeat_interval_ms = 60;
    config
}

struct Cluster {
    _root: tempfile::TempDir,
    dirs: BTreeMap<i32, PathBuf>,
    addrs: BTreeMap<i32, SocketAddr>,
    voters: Vec<Voter>,
    nodes: BTreeMap<i32, MetadataQuorum>,
}

impl Cluster {
    async fn start(count: i32, tune: impl Fn(&mut QuorumConfig)) -> Cluster {
        let root = tempfile::tempdir().expect("tempdir");
        let mut listeners = BTreeMap::new();
        for id in 1..=count {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            listeners.insert(id, listener);
        }
        let addrs: BTreeMap<i32, SocketAddr> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().expect("addr")))
            .collect();
        let voters: Vec<Voter> = addrs
            .iter()
            .map(|(id, addr)| Voter {
                id: *id,
                address: addr.to_string(),
            })
            .collect();
        let dirs: BTreeMap<i32, PathBuf> = (1..=count)
            .map(|id| (id, root.path().join(format!("node-{id}"))))
            .collect();
        let mut nodes = BTreeMap::new();
        for (id, listener) in listeners {
            let mut config = config(id, &voters, &dirs[&id], addrs[&id]);
            tune(&mut config);
            let node = MetadataQuorum::start_with_listener(config, listener)
                .await
                .expect("start node");
            nodes.insert(id, node);
        }
        Cluster {
            _root: root,
            dirs,
            addrs,
            voters,
            nodes,
        }
    }

    async fn restart(&mut self, id: i32, tune: impl Fn(&mut QuorumConfig)) {
        let mut config = config(id, &self.voters, &self.dirs[&id], self.addrs[&id]);
        tune(&mut config);
        let node = MetadataQuorum::start(config).await.expect("restart node");
        self.nodes.insert(id, node);
    }

    async fn stop(&mut self, id: i32) {
        let node = self.nodes.remove(&id).expect("running node");
        node.shutdown().await.expect("shutdown");
    }

    /// Waits until every running node names one leader in one term, and that leader is the only
    /// node in the Leader state for that term; returns it.
    async fn leader(&self) -> i32 {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let metrics: Vec<_> = self
                .nodes
                .values()
                .map(|n| n.metrics().borrow().clone())
                .collect();
            let first = &metrics[0];
            // Followers of a stopped leader still name it until they time out: only a running
            // node that is Leader counts.
            let leader_running = first.current_leader.is_some_and(|id| {
                self.nodes
                    .get(&id)
                    .is_some_and(|n| n.metrics().borrow().state == ServerState::Leader)
            });
            let agreed = leader_running
                && metrics.iter().all(|m| {
                    m.current_leader == first.current_leader && m.current_term == first.current_term
                });
            if agreed {
                let leaders = metrics
                    .iter()
                    .filter(|m| {
                        m.state == ServerState::Leader && m.current_term == first.current_term
                    })
                    .count();
                assert_eq!(leaders, 1, "one leader in term {}", first.current_term);
                return first.current_leader.expect("agreed leader");
            }
            // Wake on any node's next metrics change (or re-check after a short bound).
            let mut receivers: Vec<_> = self.nodes.values().map(|n| n.metrics()).collect();
            let changed = async {
                let futures = receivers.iter_mut().map(|rx| Box::pin(rx.changed()));
                let _ = futures_select(futures).await;
            };
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(200)),
                changed,
            )
            .await;
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed leader within {DEADLINE:?}"
            );
        }
    }

    fn node(&self, id: i32) -> &MetadataQuorum {
        &self.nodes[&id]
    }
}

/// The first of several futures to finish.
async fn futures_select<F: std::future::Future + Unpin>(futures: impl Iterator<Item = F>) {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(|cx| {
        for future in &mut futures {
            if std::pin::Pin::new(future).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Waits until the node has applied `index` and returns its image then.
async fn applied(node: &MetadataQuorum, index: u64) -> AppliedMetadata {
    let mut rx: watch::Receiver<AppliedMetadata> = node.image();
    let result = tokio::time::timeout(
        DEADLINE,
        rx.wait_for(|a| a.applied_index().is_some_and(|i| i >= index)),
    )
    .await;
    let applied = result
        .unwrap_or_else(|_| panic!("node {} did not apply index {index}", node.node_id()))
        .expect("state machine alive");
    applied.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_elects_itself_and_commits() {
    let cluster = Cluster::start(1, |_| {}).await;
    assert_eq!(cluster.leader().await, 1);
    let node = cluster.node(1);
    assert!(node.term() >= 1);
    let index = node
        .propose(vec![
            topic("orders"),
            MetadataRecord::ProducerIds {
                next_producer_id: 1000,
            },
        ])
        .await
        .expect("commit");
    let applied = applied(node, index).await;
    assert!(applied.image.topic("orders").is_some());
    assert_eq!(applied.image.next_producer_id(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader_and_apply_on_all() {
    let cluster = Cluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let index = cluster
        .node(leader)
        .propose(vec![topic("orders")])
        .await
        .expect("commit on the leader");
    for id in 1..=3 {
        let applied = applied(cluster.node(id), index).await;
        assert!(applied.image.topic("orders").is_some(), "node {id}");
    }
    // A follower refuses proposals and names the leader.
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let refused = cluster.node(follower).propose(vec![topic("nope")]).await;
    assert_eq!(
        refused,
        Err(ProposeError::NotLeader {
            node_id: follower,
            leader: Some(leader)
        })
    );
    let error = refused.expect_err("refused").to_string();
    assert!(
        error.contains(&format!("the leader is {leader}")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_over_and_the_old_one_catches_up_after_restart() {
    let mut cluster = Cluster::start(3, |_| {}).await;
    let old_leader = cluster.leader().await;
    let first = cluster
        .node(old_leader)
        .propose(vec![topic("before")])
        .await
        .expect("commit");
    applied(cluster.node(old_leader), first).await;
    cluster.stop(old_leader).await;

    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader);
    let second = cluster
        .node(new_leader)
        .propose(vec![topic("after")])
        .await
        .expect("commit with two of three");
    assert!(second > first);

    cluster.restart(old_leader, |_| {}).await;
    let caught_up = applied(cluster.node(old_leader), second).await;
    assert!(caught_up.image.topic("before").is_some());
    assert!(caught_up.image.topic("after").is_some());
    assert_eq!(
        cluster.leader().await,
        new_leader,
        "a rejoining node does not depose the leader"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_purged_log_catches_up_by_snapshot() {
    let small_log = |config: &mut QuorumConfig| {
        config.snapshot_interval_entries = 4;
        config.log_entries_kept_after_snapshot = 0;
        config.log_segment_bytes = 1024;
    };
    let mut cluster = Cluster::start(3, small_log).await;
    let leader = cluster.leader().await;
    let lagging = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.stop(lagging).await;
    let mut last = 0;
    for i in 0..12 {
        last = cluster
            .node(leader)
            .propose(vec![topic(&format!("t{i}"))])
            .await
            .expect("commit");
    }
    // Wait until the leader has purged past what the stopped node holds.
    let mut metrics = cluster.node(leader).metrics();
    tokio::time::timeout(
        DEADLINE,
        metrics.wait_for(|m| m.purged.is_some_and(|p| p.index + 4 >= last)),
    )
    .await
    .expect("leader purges its log after snapshots")
    .expect("metrics alive");

    cluster.restart(lagging, small_log).await;
    let caught_up = applied(cluster.node(lagging), last).await;
    assert_eq!(caught_up.image.topics().count(), 12);
    let snapshot = cluster.node(lagging).metrics().borrow().snapshot;
    assert!(snapshot.is_some(), "the lagging node holds a snapshot");
}

/// The last segment of a node's metadata log.
fn last_segment(data_dir: &Path) -> PathBuf {
    let dir = data_dir.join(METADATA_LOG_DIR);
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_recovered_and_damage_is_refused() {
    let mut cluster = Cluster::start(1, |_| {}).await;
    cluster.leader().await;
    let mut last = 0;
    for name in ["a", "b", "c"] {
        last = cluster
            .node(1)
            .propose(vec![topic(name)])
            .await
            .expect("commit");
    }
    cluster.stop(1).await;
    let segment = last_segment(&cluster.dirs[&1]);
    let intact = std::fs::read(&segment).expect("read");
    // An unfinished write: the start of a batch header, then nothing.
    let mut torn = intact.clone();
    torn.extend_from_slice(&intact[..30]);
    std::fs::write(&segment, &torn).expect("tear");

    cluster.restart(1, |_| {}).await;
    cluster.leader().await;
    let after = applied(cluster.node(1), last).await;
    for name in ["a", "b", "c"] {
        assert!(after.image.topic(name).is_some(), "{name} survived");
    }
    let next = cluster
        .node(1)
        .propose(vec![topic("d")])
        .await
        .expect("commit after recovery");
    assert!(next > last);
    cluster.stop(1).await;

    // Damage in the middle of the log (a flipped byte in an early entry's record) is not a
    // torn tail: the node refuses to start and says where.
    let mut damaged = std::fs::read(&segment).expect("read");
    damaged[100] ^= 0xFF;
    std::fs::write(&segment, &damaged).expect("damage");
    let config = config(1, &cluster.voters, &cluster.dirs[&1], cluster.addrs[&1]);
    match MetadataQuorum::start(config).await {
        Err(StartError::Log(error)) => {
            let text = error.to_string();
            assert!(
                text.contains("damage") || text.contains("damaged"),
                "{text}"
            );
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a damaged log was accepted"),
    }
    // Nothing was deleted to get past it.
    assert_eq!(std::fs::read(&segment).expect("read"), damaged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_the_connection_and_the_node_lives() {
    let cluster = Cluster::start(1, |_| {}).await;
    cluster.leader().await;
    let addr = cluster.addrs[&1];
    for bad in [
        u32::MAX.to_be_bytes().to_vec(),
        0u32.to_be_bytes().to_vec(),
        [&3u32.to_be_bytes()[..], &[9, b'{', b'}']].concat(),
        [&3u32.to_be_bytes()[..], &[2, b'x', b'y']].concat(),
    ] {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(&bad).await.expect("send");
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("the server answers by closing");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "connection closed for {bad:?}"
        );
    }
    let index = cluster
        .node(1)
        .propose(vec![topic("still-alive")])
        .await
        .expect("commit");
    assert!(applied(cluster.node(1), index)
        .await
        .image
        .topic("still-alive")
        .is_some());
}

#[tokio::test]
async fn a_node_that_is_not_a_voter_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let voters = Voter::parse_list("1@127.0.0.1:1,2@127.0.0.1:2").expect("voters");
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let error = MetadataQuorum::start(config(7, &voters, root.path(), addr))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(error, StartError::NotAVoter { node_id: 7, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("1@127.0.0.1:1,2@127.0.0.1:2"),
        "{error}"
    );
}

/// Installs on `node` a forward handler that answers `ran on <id>: <body>` while the node
/// leads, and "not the leader" otherwise.
fn echo_handler(node: &MetadataQuorum) {
    let id = node.node_id();
    let metrics = node.metrics();
    node.set_forward_handler(Arc::new(move |body: Vec<u8>| {
        let leading = metrics.borrow().current_leader == Some(id);
        Box::pin(async move {
            if leading {
                let mut answer = format!("ran on {id}: ").into_bytes();
                answer.extend_from_slice(&body);
                Forwarded::Answer(answer)
            } else {
                Forwarded::NotLeader
            }
        })
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_to_the_leader_and_follows_a_new_one() {
    let mut cluster = Cluster::start(3, |_| {}).await;
    for id in 1..=3 {
        echo_handler(cluster.node(id));
    }
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let answer = cluster
        .node(follower)
        .forward(b"hello".to_vec(), DEADLINE)
        .await
        .expect("forwarded");
    assert_eq!(answer, format!("ran on {leader}: hello").into_bytes());
    assert_eq!(
        cluster.node(leader).forward(b"x".to_vec(), DEADLINE).await,
        Err(ForwardError::Leading(leader))
    );

    // The leader stops: the forward waits for the next one, wherever it is.
    cluster.stop(leader).await;
    match cluster
        .node(follower)
        .forward(b"again".to_vec(), DEADLINE)
        .await
    {
        Ok(answer) => {
            let answer = String::from_utf8(answer).expect("text");
            assert!(answer.ends_with(": again"), "{answer}");
            assert!(
                !answer.starts_with(&format!("ran on {leader}:")),
                "{answer}"
            );
        }
        Err(ForwardError::Leading(id)) => assert_eq!(id, follower),
        Err(error) => panic!("forward after the leader stopped: {error}"),
    }
}
