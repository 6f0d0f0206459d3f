//! `MetadataQuorum::change_voters` through the real thing: three nodes on loopback sockets,
//! their logs in temporary data dirs. Every wait is for a condition, with a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use openraft::ServerState;
use runnel_controller::{
    ChangeVotersError, MetadataQuorum, NodeId, QuorumConfig, StartError, Voter,
};
use runnel_metadata::MetadataRecord;
use tokio::net::TcpListener;
use uuid::Uuid;

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

struct Cluster {
    _root: tempfile::TempDir,
    dirs: BTreeMap<NodeId, PathBuf>,
    addrs: BTreeMap<NodeId, SocketAddr>,
    voters: Vec<Voter>,
    nodes: BTreeMap<NodeId, MetadataQuorum>,
}

impl Cluster {
    fn config(&self, id: NodeId, voters: &[Voter]) -> QuorumConfig {
        let mut config =
            QuorumConfig::new(id, voters.to_vec(), self.dirs[&id].clone(), self.addrs[&id]);
        config.election_timeout_ms = 1600;
        config.heartbeat_interval_ms = 60;
        // Small snapshots and a short log, so that a node away for a while needs a snapshot.
        config.snapshot_interval_entries = 4;
        config.log_entries_kept_after_snapshot = 0;
        config.log_segment_bytes = 1024;
        config
    }

    async fn start() -> Cluster {
        let root = tempfile::tempdir().expect("tempdir");
        let mut listeners = BTreeMap::new();
        for id in 1..=3 {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            listeners.insert(id, listener);
        }
        let addrs: BTreeMap<NodeId, SocketAddr> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().expect("addr")))
            .collect();
        let voters = addrs
            .iter()
            .map(|(id, addr)| Voter {
                id: *id,
                address: addr.to_string(),
            })
            .collect();
        let dirs = (1..=3)
            .map(|id| (id, root.path().join(format!("node-{id}"))))
            .collect();
        let mut cluster = Cluster {
            _root: root,
            dirs,
            addrs,
            voters,
            nodes: BTreeMap::new(),
        };
        for (id, listener) in listeners {
            let config = cluster.config(id, &cluster.voters);
            let node = MetadataQuorum::start_with_listener(config, listener)
                .await
                .expect("start node");
            cluster.nodes.insert(id, node);
        }
        cluster
    }

    /// Waits until one running node leads with every running node agreeing; returns it.
    async fn leader(&self) -> NodeId {
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let leaders: BTreeSet<Option<NodeId>> =
                self.nodes.values().map(|node| node.leader()).collect();
            if let [Some(leader)] = leaders.iter().copied().collect::<Vec<_>>()[..] {
                let leading = self
                    .nodes
                    .get(&leader)
                    .is_some_and(|node| node.metrics().borrow().state == ServerState::Leader);
                if leading {
                    return leader;
                }
            }
            assert!(tokio::time::Instant::now() < until, "no agreed leader");
            // Wake on the next change of some node's metrics (bounded: another node's may be
            // the one that changes).
            let mut metrics = self.nodes.values().next().expect("a node").metrics();
            let _ = tokio::time::timeout(Duration::from_millis(100), metrics.changed()).await;
        }
    }

    fn voter_ids(&self, id: NodeId) -> BTreeSet<NodeId> {
        let metrics = self.nodes[&id].metrics();
        let metrics = metrics.borrow();
        metrics.membership_config.membership().voter_ids().collect()
    }

    fn voters_without(&self, id: NodeId) -> Vec<Voter> {
        self.voters.iter().filter(|v| v.id != id).cloned().collect()
    }
}

async fn applied(node: &MetadataQuorum, index: u64) {
    let mut image = node.image();
    tokio::time::timeout(
        DEADLINE,
        image.wait_for(|a| a.applied_index().is_some_and(|i| i >= index)),
    )
    .await
    .unwrap_or_else(|_| panic!("node {} did not apply index {index}", node.node_id()))
    .expect("state machine alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_removed_while_down_and_added_back_catches_up_by_snapshot() {
    let mut cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let away = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster
        .nodes
        .remove(&away)
        .expect("running")
        .shutdown()
        .await
        .expect("shutdown");

    let index = cluster.nodes[&leader]
        .change_voters(&cluster.voters_without(away))
        .await
        .expect("remove the stopped voter");
    let two: BTreeSet<NodeId> = cluster.voters_without(away).iter().map(|v| v.id).collect();
    assert_eq!(cluster.voter_ids(leader), two);
    // Two voters commit alone now, past several snapshots.
    let mut last = index;
    for i in 0..10 {
        last = cluster.nodes[&leader]
            .propose(vec![topic(&format!("t{i}"))])
            .await
            .expect("commit with two voters");
    }

    let back = cluster.nodes[&leader]
        .change_voters(&cluster.voters)
        .await
        .expect("add the voter back");
    assert!(back > last);
    assert_eq!(cluster.voter_ids(leader), BTreeSet::from([1, 2, 3]));
    // Its log still holds the three voters it was formed with: it starts with them.
    let config = cluster.config(away, &cluster.voters);
    let node = MetadataQuorum::start(config).await.expect("restart");
    applied(&node, back).await;
    let image = node.image().borrow().image.clone();
    assert_eq!(image.topics().count(), 10);
    assert!(
        node.metrics().borrow().snapshot.is_some(),
        "caught up by snapshot"
    );
    cluster.nodes.insert(away, node);
    let after = cluster.nodes[&leader]
        .propose(vec![topic("after")])
        .await
        .expect("commit with three voters");
    applied(&cluster.nodes[&away], after).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_voters_is_refused_off_the_leader_and_when_malformed() {
    let mut cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    assert_eq!(
        cluster.nodes[&follower]
            .change_voters(&cluster.voters)
            .await,
        Err(ChangeVotersError::NotLeader {
            node_id: follower,
            leader: Some(leader)
        })
    );
    let twice = [cluster.voters[0].clone(), cluster.voters[0].clone()];
    assert_eq!(
        cluster.nodes[&leader].change_voters(&twice).await,
        Err(ChangeVotersError::DuplicateVoter(cluster.voters[0].id))
    );
    assert_eq!(
        cluster.nodes[&leader].change_voters(&[]).await,
        Err(ChangeVotersError::NoVoters)
    );
    // The same voters again: nothing changes, and the quorum still commits.
    cluster.nodes[&leader]
        .change_voters(&cluster.voters)
        .await
        .expect("no-op change");
    assert_eq!(cluster.voter_ids(leader), BTreeSet::from([1, 2, 3]));

    // After a removal, a node restarted with the old voters is refused and told the new ones.
    let removed = follower;
    let index = cluster.nodes[&leader]
        .change_voters(&cluster.voters_without(removed))
        .await
        .expect("remove a running voter");
    let other = (1..=3)
        .find(|id| *id != leader && *id != removed)
        .expect("the third node");
    applied(&cluster.nodes[&other], index).await;
    cluster
        .nodes
        .remove(&other)
        .expect("running")
        .shutdown()
        .await
        .expect("shutdown");
    let config = cluster.config(other, &cluster.voters);
    match MetadataQuorum::start(config).await {
        Err(StartError::VotersDiffer { recorded, .. }) => {
            let mut expected: Vec<NodeId> = vec![leader, other];
            expected.sort_unstable();
            assert_eq!(recorded, expected);
        }
        Err(error) => panic!("unexpected error: {error}"),
        Ok(_) => panic!("started with voters its log does not hold"),
    }
}

/// Copies directory `from` to `to`, files and subdirectories.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A voter can hear of its own removal and then be stopped before it hears that it was added
/// back (found by `runnel-sim`, seed 1477 with 3 voters: the removal reached it in a snapshot).
/// Its log then does not list it as a voter; it must start anyway and rejoin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_whose_log_says_it_was_removed_starts_and_rejoins_when_added_back() {
    let mut cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let removed = (1..=3).find(|id| *id != leader).expect("a follower");
    let other = (1..=3)
        .find(|id| *id != leader && *id != removed)
        .expect("the third node");
    cluster
        .nodes
        .remove(&removed)
        .expect("running")
        .shutdown()
        .await
        .expect("shutdown");
    let index = cluster.nodes[&leader]
        .change_voters(&cluster.voters_without(removed))
        .await
        .expect("remove the stopped voter");
    applied(&cluster.nodes[&other], index).await;
    // The removed node's log as it would be had it heard of its removal: a copy of a voter's
    // log that holds the removal.
    cluster
        .nodes
        .remove(&other)
        .expect("running")
        .shutdown()
        .await
        .expect("shutdown");
    std::fs::remove_dir_all(&cluster.dirs[&removed]).expect("remove the old log");
    copy_dir(&cluster.dirs[&other], &cluster.dirs[&removed]);
    let config = cluster.config(other, &cluster.voters_without(removed));
    let node = MetadataQuorum::start(config)
        .await
        .expect("restart the third node");
    cluster.nodes.insert(other, node);

    // Not added back yet: it starts, as a learner, with the voters that include it.
    let config = cluster.config(removed, &cluster.voters);
    let node = MetadataQuorum::start(config)
        .await
        .expect("a node its log does not list as a voter starts");
    assert_eq!(node.metrics().borrow().state, ServerState::Learner);
    cluster.nodes.insert(removed, node);

    let back = cluster.nodes[&leader]
        .change_voters(&cluster.voters)
        .await
        .expect("add the voter back");
    applied(&cluster.nodes[&removed], back).await;
    assert_eq!(cluster.voter_ids(removed), BTreeSet::from([1, 2, 3]));
    let after = cluster.nodes[&leader]
        .propose(vec![topic("after")])
        .await
        .expect("commit with three voters");
    applied(&cluster.nodes[&removed], after).await;
}
