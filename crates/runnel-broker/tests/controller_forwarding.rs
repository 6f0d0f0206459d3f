//! The broker's controller on a quorum of three, in one process on loopback sockets: a change
//! made through any node is checked and proposed by the active controller alone, and answered
//! once the node it was made through holds it. Kafka behaviour pinned: admin changes are
//! forwarded to the active controller, which validates them against the committed metadata
//! (`ControllerApis` / `ReplicationControlManager`); a follower never writes what it checked.

use std::collections::BTreeMap;
use std::time::Duration;

use runnel_broker::controller::{Controller, ControllerError};
use runnel_controller::{QuorumConfig, Voter};
use tokio::net::TcpListener;

const DEADLINE: Duration = Duration::from_secs(20);

async fn three_controllers(root: &std::path::Path) -> BTreeMap<i32, Controller> {
    let mut listeners = BTreeMap::new();
    for id in 1..=3 {
        listeners.insert(id, TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    let voters: Vec<Voter> = listeners
        .iter()
        .map(|(id, l)| Voter {
            id: *id,
            address: l.local_addr().expect("addr").to_string(),
        })
        .collect();
    let mut starting = Vec::new();
    for (id, listener) in listeners {
        let addr = listener.local_addr().expect("addr");
        let mut config =
            QuorumConfig::new(id, voters.clone(), root.join(format!("node-{id}")), addr);
        config.election_timeout_ms = 400;
        config.heartbeat_interval_ms = 60;
        starting.push((id, tokio::spawn(Controller::start(config, listener))));
    }
    let mut controllers = BTreeMap::new();
    for (id, start) in starting {
        let controller = tokio::time::timeout(DEADLINE, start)
            .await
            .expect("started in time")
            .expect("start task")
            .expect("controller started");
        controllers.insert(id, controller);
    }
    controllers
}

/// Waits until every node knows one active controller; returns it.
async fn active(controllers: &BTreeMap<i32, Controller>) -> i32 {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut known = Vec::new();
        for controller in controllers.values() {
            known.push(controller.active_controller());
        }
        if let Some(Some(first)) = known.first() {
            if known.iter().all(|k| *k == Some(*first)) {
                return *first;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no agreed active controller: {known:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_any_node_are_run_by_the_active_controller() {
    let root = tempfile::tempdir().expect("tempdir");
    let controllers = three_controllers(root.path()).await;
    let leader = active(&controllers).await;
    let followers: Vec<i32> = (1..=3).filter(|id| *id != leader).collect();

    // A topic created through a follower is in that follower's image when it is answered,
    // and reaches every node.
    let through = &controllers[&followers[0]];
    let (record, _) = through
        .plan_topic("orders", 3, BTreeMap::new())
        .expect("planned");
    through
        .create_topic(&record)
        .await
        .expect("created through a follower");
    let created = through
        .image()
        .topic("orders")
        .cloned()
        .expect("in the follower's image");
    for (id, controller) in &controllers {
        let until = tokio::time::Instant::now() + DEADLINE;
        while controller.image().topic("orders").is_none() {
            assert!(
                tokio::time::Instant::now() < until,
                "node {id} never applied it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            controller.image().topic("orders").map(|t| t.topic_id),
            Some(created.topic_id)
        );
    }

    // A name taken on the leader, asked for through a follower as if it had not seen it yet
    // (another topic id): the active controller checks its own image and refuses it.
    let leading = &controllers[&leader];
    let (taken, _) = leading
        .plan_topic("payments", 1, BTreeMap::new())
        .expect("planned");
    leading
        .create_topic(&taken)
        .await
        .expect("created on the leader");
    let duplicate = runnel_metadata::MetadataRecord::Topic {
        name: "payments".into(),
        topic_id: uuid::Uuid::new_v4(),
        partitions: 1,
        leader: followers[1],
        configs: BTreeMap::new(),
        replicas: Vec::new(),
    };
    let refused = controllers[&followers[1]].create_topic(&duplicate).await;
    assert!(
        matches!(refused, Err(ControllerError::TopicAlreadyExists { ref name }) if name == "payments"),
        "{refused:?}"
    );

    // Producer id blocks allocated through every node never overlap.
    let mut blocks = Vec::new();
    for round in 0..2 {
        for id in 1..=3 {
            let block = controllers[&id]
                .allocate_producer_id_block(1000)
                .await
                .unwrap_or_else(|e| panic!("block through node {id}, round {round}: {e}"));
            blocks.push(block);
        }
    }
    blocks.sort_by_key(|b| b.start);
    for pair in blocks.windows(2) {
        assert!(pair[0].end <= pair[1].start, "{blocks:?}");
    }

    for controller in controllers.values() {
        controller.shutdown().await;
    }
}
