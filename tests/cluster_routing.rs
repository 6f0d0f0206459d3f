//! Three brokers of one cluster (each on its own runtime in this process, one voter of the
//! metadata quorum each): a request for a partition to a broker that does not hold it gets
//! Kafka's `NOT_LEADER_OR_FOLLOWER`, and Produce v10+ names the leader (KIP-951:
//! `PartitionProduceResponse.current_leader` and the response's `node_endpoints`), as Kafka's
//! `ReplicaManager.appendRecords` answers a produce for a partition it does not lead
//! (`getPartitionOrError`: the partition is known from the metadata, not hosted here, so
//! `NOT_LEADER_OR_FOLLOWER`; `KafkaApis.handleProduceRequest` then adds the leader's endpoint).
//! The leader takes the same produce. DescribeQuorum, asked of any node, is the leader's
//! view of the metadata log and nothing else. Real clients route by Metadata and never send
//! a misdirected produce; `tests/clients/python/test_cluster.py` drives them (and
//! kafka-python's DescribeQuorum) through the same cluster shape.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{RawClient, TestBroker};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};

const DEADLINE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// Starts three nodes at once (each waits for a majority before it serves).
fn start_cluster() -> Vec<TestBroker> {
    let controllers: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let voters = controllers
        .iter()
        .enumerate()
        .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let starting: Vec<_> = controllers
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let node_id = (i + 1).to_string();
            let voters = voters.clone();
            let listeners = format!("PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:{port}");
            std::thread::spawn(move || {
                TestBroker::start_with(&[
                    ("node.id", &node_id),
                    ("controller.quorum.voters", &voters),
                    ("listeners", &listeners),
                    ("controller.listener.names", "CONTROLLER"),
                ])
            })
        })
        .collect();
    let nodes: Vec<TestBroker> = starting
        .into_iter()
        .map(|thread| thread.join().expect("a node starts"))
        .collect();
    // A node places a new topic's partitions over the brokers its own image lists: wait
    // until every node's lists all three (each start returns once its own registration
    // committed, not once the others' reached it).
    common::wait_until("every node to list the three brokers", DEADLINE, || {
        nodes.iter().all(|node| {
            node.running()
                .broker()
                .controller
                .image()
                .unfenced_brokers()
                .count()
                == 3
        })
    });
    nodes
}

fn produce_v10(client: &mut RawClient, topic: &str, partition: i32) -> ProduceResponse {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(common::topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(common::record_batch(2, 10)))])]);
    client.request(ApiKey::Produce, 10, &request)
}

#[test]
fn a_produce_to_a_broker_that_does_not_lead_the_partition_names_the_leader() {
    let nodes = start_cluster();
    let mut first = RawClient::connect(nodes[0].addr);
    assert_eq!(common::create_topic(&mut first, "routed", 3, &[]), 0);
    // Every node applies the topic, placed one partition per broker.
    let mut leaders = Vec::new();
    common::wait_until("every node to hold the topic", DEADLINE, || {
        let images: Vec<_> = nodes
            .iter()
            .map(|node| node.running().broker().controller.image())
            .collect();
        let Some(topic) = images[0].topic("routed") else {
            return false;
        };
        leaders = topic.partitions.iter().map(|p| p.leader).collect();
        images.iter().all(|image| image.topic("routed").is_some())
    });
    let mut sorted = leaders.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![1, 2, 3], "one partition per broker");

    for (partition, &leader) in leaders.iter().enumerate() {
        let partition = partition as i32;
        let elsewhere = if leader == 1 { 2 } else { 1 };
        let mut wrong = RawClient::connect(nodes[elsewhere as usize - 1].addr);
        let response = produce_v10(&mut wrong, "routed", partition);
        let answer = &response.responses[0].partition_responses[0];
        assert_eq!(
            answer.error_code, 6,
            "NOT_LEADER_OR_FOLLOWER from node {elsewhere}"
        );
        assert_eq!(i32::from(answer.current_leader.leader_id), leader);
        assert_eq!(answer.current_leader.leader_epoch, 0);
        let endpoint = response
            .node_endpoints
            .iter()
            .find(|e| i32::from(e.node_id) == leader)
            .expect("the leader's endpoint");
        assert_eq!(
            endpoint.port,
            i32::from(nodes[leader as usize - 1].addr.port())
        );

        // The leader opens the partition once its image applier has the topic: until then
        // the partition is not hosted there yet.
        let mut right = RawClient::connect(nodes[leader as usize - 1].addr);
        let mut response = ProduceResponse::default();
        common::wait_until("the leader to accept the produce", DEADLINE, || {
            response = produce_v10(&mut right, "routed", partition);
            response.responses[0].partition_responses[0].error_code == 0
        });
        let answer = &response.responses[0].partition_responses[0];
        assert_eq!((answer.error_code, answer.base_offset), (0, 0));
        assert!(response.node_endpoints.is_empty());
    }
}

/// DescribeQuorum names only `__cluster_metadata` partition 0: another partition gets
/// `UNKNOWN_TOPIC_OR_PARTITION` (Kafka's `KafkaRaftClient.handleDescribeQuorumRequest`);
/// the metadata log's, asked of a follower, is the leader's view (v0: no timestamps).
#[test]
fn describe_quorum_answers_for_the_metadata_log_only_with_the_leaders_view() {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};
    let nodes = start_cluster();
    let ask = |node: &TestBroker, topic: &str, partition: i32, version: i16| {
        let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(common::topic_name(topic))
            .with_partitions(vec![
                PartitionData::default().with_partition_index(partition)
            ])]);
        let mut client = RawClient::connect(node.addr);
        let response: DescribeQuorumResponse =
            client.request(ApiKey::DescribeQuorum, version, &request);
        response
    };
    let wrong = ask(&nodes[0], "__cluster_metadata", 1, 2);
    assert_eq!(wrong.topics[0].partitions[0].error_code, 3);
    let wrong = ask(&nodes[0], "orders", 0, 0);
    assert_eq!(wrong.topics[0].partitions[0].error_code, 3);

    let leader = nodes[0]
        .running()
        .broker()
        .controller
        .active_controller()
        .expect("a leader");
    let follower = nodes
        .iter()
        .find(|n| n.running().broker().config.node_id != leader)
        .expect("a follower");
    let answer = ask(follower, "__cluster_metadata", 0, 0);
    let partition = &answer.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(i32::from(partition.leader_id), leader);
    let mut voters: Vec<i32> = partition
        .current_voters
        .iter()
        .map(|v| i32::from(v.replica_id))
        .collect();
    voters.sort_unstable();
    assert_eq!(voters, vec![1, 2, 3]);
    assert!(answer.nodes.is_empty(), "v0 has no nodes");
}
