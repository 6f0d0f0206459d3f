//! What the web console and `/metrics` read of the consumer groups: each group's state and
//! committed offsets, from the group coordinator, and the lag those leave against each
//! partition's high watermark. Reading never creates `__consumer_offsets`: without it there
//! are no groups.

use std::sync::Arc;

use runnel_coordinator::request::{FetchRequest, Request, Response};

use crate::broker::Broker;
use crate::group_coordinator::{GroupCoordinator, OFFSETS_TOPIC};

/// One group and its commits.
#[derive(Debug, Clone)]
pub struct GroupOffsets {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    /// (topic, partition, committed offset), in topic and partition order.
    pub committed: Vec<(String, i32, i64)>,
}

impl GroupOffsets {
    /// Records between each commit and its partition's high watermark (0 for a partition
    /// this broker no longer hosts).
    pub fn lags<'a>(&'a self, broker: &'a Broker) -> impl Iterator<Item = (&'a str, i32, i64)> {
        self.committed
            .iter()
            .map(move |(topic, partition, offset)| {
                let high_watermark = broker
                    .replicas
                    .partition(topic, *partition)
                    .map_or(*offset, |p| p.offsets().high_watermark);
                (topic.as_str(), *partition, (high_watermark - offset).max(0))
            })
    }
}

/// Every group, sorted by id, with its commits.
pub async fn read(broker: &Arc<Broker>) -> Result<Vec<GroupOffsets>, String> {
    if broker.controller.image().topic(OFFSETS_TOPIC).is_none() {
        return Ok(Vec::new());
    }
    let listed = GroupCoordinator::call_all(broker, || Request::List(Vec::new()))
        .await
        .map_err(|code| code.to_string())?;
    let mut groups = Vec::new();
    for group in listed.into_iter().flat_map(|response| match response {
        Response::List(groups) => groups,
        _ => Vec::new(),
    }) {
        let fetch = Request::Fetch(FetchRequest {
            group_id: group.group_id.clone(),
            partitions: None,
        });
        let mut committed: Vec<(String, i32, i64)> =
            match GroupCoordinator::call(broker, &group.group_id, fetch).await {
                Ok(Response::Fetch(result)) => result
                    .offsets
                    .into_iter()
                    .filter(|o| o.offset >= 0)
                    .map(|o| (o.topic, o.partition, o.offset))
                    .collect(),
                _ => Vec::new(),
            };
        committed.sort();
        groups.push(GroupOffsets {
            group_id: group.group_id,
            state: group.state,
            protocol_type: group.protocol_type,
            committed,
        });
    }
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok(groups)
}
