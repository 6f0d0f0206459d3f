//! Broker-only nodes as learners, through the real thing: three voters and a learner on
//! loopback sockets with ports from the OS, their logs in temporary data dirs. The learner
//! joins through the voters, follows the log, never leads, and joins again from another
//! address after a restart. Every wait is for a condition, with a deadline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use runnel_controller::{AppliedMetadata, MetadataQuorum, ProposeError, QuorumConfig, Voter};
use runnel_metadata::MetadataRecord;
use tokio::net::TcpListener;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(20);

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

fn config(id: i32, voters: &[Voter], dir: &Path, addr: SocketAddr, learner: bool) -> QuorumConfig {
    let mut config = QuorumConfig::new(id, voters.to_vec(), dir.to_path_buf(), addr);
    config.election_timeout_ms = 1600;
    config.heartbeat_interval_ms = 60;
    config.learner = learner;
    config
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    (listener, addr)
}

/// The running node that leads, once one does.
async fn leader(nodes: &BTreeMap<i32, MetadataQuorum>) -> i32 {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some((id, _)) = nodes.iter().find(|(_, node)| node.is_leader()) {
            return *id;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no leader within {DEADLINE:?}"
        );
        let mut metrics = nodes.values().next().expect("a node").metrics();
        let _ = tokio::time::timeout(Duration::from_millis(100), metrics.changed()).await;
    }
}

/// Proposes `record` on whichever node leads, again if the one asked lost the lead meanwhile
/// (an election can still be settling: two candidates of one start, say); returns the node
/// that committed it.
async fn commit(nodes: &BTreeMap<i32, MetadataQuorum>, record: MetadataRecord) -> i32 {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let id = leader(nodes).await;
        match nodes[&id].propose(vec![record.clone()]).await {
            Ok(_) => return id,
            Err(ProposeError::NotLeader { .. }) if tokio::time::Instant::now() < until => {
                let _ = tokio::time::timeout(
                    Duration::from_millis(100),
                    nodes[&id].metrics().changed(),
                )
                .await;
            }
            Err(error) => panic!("commit on node {id}: {error}"),
        }
    }
}

/// Waits until `node` has applied a topic named `name`.
async fn holds(node: &MetadataQuorum, name: &str) -> AppliedMetadata {
    let mut image = node.image();
    let found = tokio::time::timeout(
        DEADLINE,
        image.wait_for(|applied| applied.image.topic(name).is_some()),
    )
    .await
    .unwrap_or_else(|_| panic!("node {} never applied topic {name}", node.node_id()))
    .expect("state machine alive");
    found.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joins_follows_the_log_never_leads_and_rejoins_from_a_new_address() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut listeners = Vec::new();
    for _ in 1..=3 {
        listeners.push(listener().await);
    }
    let voters: Vec<Voter> = listeners
        .iter()
        .enumerate()
        .map(|(i, (_, addr))| Voter {
            id: i as i32 + 1,
            address: addr.to_string(),
        })
        .collect();
    let mut nodes = BTreeMap::new();
    for (i, (listener, addr)) in listeners.into_iter().enumerate() {
        let id = i as i32 + 1;
        let dir = root.path().join(format!("voter-{id}"));
        let node =
            MetadataQuorum::start_with_listener(config(id, &voters, &dir, addr, false), listener)
                .await
                .expect("start voter");
        nodes.insert(id, node);
    }
    commit(&nodes, topic("before-the-learner")).await;

    // Node 4 is not among the voters: it joins as a learner and catches up.
    let learner_dir = root.path().join("learner-4");
    let (l, addr) = listener().await;
    let learner =
        MetadataQuorum::start_with_listener(config(4, &voters, &learner_dir, addr, true), l)
            .await
            .expect("start learner");
    holds(&learner, "before-the-learner").await;
    let first = commit(&nodes, topic("learner-added")).await;
    let membership = nodes[&first].metrics().borrow().membership_config.clone();
    let learners: Vec<i32> = membership.membership().learner_ids().collect();
    assert_eq!(
        learners,
        vec![4],
        "the leader's membership names the learner"
    );
    let voter_ids: Vec<i32> = membership.membership().voter_ids().collect();
    assert_eq!(voter_ids, vec![1, 2, 3], "voters unchanged");

    // A learner refuses proposals (only the leader proposes) and follows new entries.
    assert!(!learner.is_leader());
    assert!(learner
        .propose(vec![topic("from-the-learner")])
        .await
        .is_err());
    let first = commit(&nodes, topic("after-join")).await;
    holds(&learner, "after-join").await;

    // The leader stops: the two other voters elect a new one; the learner never leads and
    // follows the new leader.
    let old = nodes.remove(&first).expect("leader");
    old.shutdown().await.expect("shutdown");
    let second = commit(&nodes, topic("new-term")).await;
    assert_ne!(second, 4);
    holds(&learner, "new-term").await;
    assert!(!learner.is_leader());

    // Restarted on another port, the learner joins again and the membership has its new
    // address: it follows what is committed afterwards.
    learner.shutdown().await.expect("shutdown learner");
    let (l, new_addr) = listener().await;
    assert_ne!(new_addr, addr);
    let learner =
        MetadataQuorum::start_with_listener(config(4, &voters, &learner_dir, new_addr, true), l)
            .await
            .expect("restart learner");
    let third = commit(&nodes, topic("after-rejoin")).await;
    holds(&learner, "after-rejoin").await;
    let addresses: Vec<String> = nodes[&third]
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .filter(|(id, _)| **id == 4)
        .map(|(_, node)| node.addr.clone())
        .collect();
    assert_eq!(addresses, vec![new_addr.to_string()]);

    learner.shutdown().await.expect("shutdown learner");
    for (_, node) in nodes {
        node.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_among_the_voters_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let (l, addr) = listener().await;
    let voters = vec![Voter {
        id: 1,
        address: addr.to_string(),
    }];
    let refused =
        MetadataQuorum::start_with_listener(config(1, &voters, root.path(), addr, true), l).await;
    let error = refused.err().expect("refused").to_string();
    assert!(error.contains("cannot be a broker-only node"), "{error}");
}
