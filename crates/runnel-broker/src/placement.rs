//! Replica placement: which brokers hold each new partition, and which of them leads it.
//!
//! Kafka's rule for a topic created without an explicit assignment
//! (`AdminUtils.assignReplicasToBrokers`, rack-aware since KIP-36): the brokers are put in
//! node id order, interleaved by rack (the first broker of each rack, then the second of
//! each, …), so that neighbours in the list sit on different racks; partition `p`'s first
//! replica (its leader) is the broker at `(start + p) mod n`, and its followers are the
//! next brokers in the list, each on a rack the partition does not use yet while one is
//! left. `start` is chosen per topic (Kafka picks it at random; here it comes from the
//! topic id), so that many small topics do not all lead on the first broker.
//!
//! The rule holds for any replication factor up to the number of brokers.

use std::collections::BTreeMap;

use runnel_metadata::BrokerRegistration;

/// Why partitions could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor {factor} is larger than the {brokers} registered broker(s)")]
    NotEnoughBrokers { factor: usize, brokers: usize },
    #[error("replication factor must be at least 1, not {0}")]
    InvalidFactor(usize),
}

/// The brokers in node id order, interleaved by rack (see the module doc). Brokers without a
/// rack form one rack of their own.
pub fn rack_alternated(brokers: &[BrokerRegistration]) -> Vec<i32> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    let mut sorted: Vec<&BrokerRegistration> = brokers.iter().collect();
    sorted.sort_by_key(|broker| broker.node_id);
    for broker in sorted {
        by_rack
            .entry(broker.rack.as_deref())
            .or_default()
            .push(broker.node_id);
    }
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut alternated = Vec::with_capacity(brokers.len());
    for round in 0..deepest {
        for ids in by_rack.values() {
            if let Some(&id) = ids.get(round) {
                alternated.push(id);
            }
        }
    }
    alternated
}

/// The replicas of `count` new partitions (the first of each its leader) over `brokers`, for
/// partition numbers from `first` on, starting the round robin at `start`.
pub fn place(
    brokers: &[BrokerRegistration],
    first: i32,
    count: i32,
    factor: usize,
    start: usize,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if factor == 0 {
        return Err(PlacementError::InvalidFactor(factor));
    }
    if factor > brokers.len() {
        return Err(PlacementError::NotEnoughBrokers {
            factor,
            brokers: brokers.len(),
        });
    }
    let order = rack_alternated(brokers);
    let rack_of: BTreeMap<i32, Option<&str>> = brokers
        .iter()
        .map(|broker| (broker.node_id, broker.rack.as_deref()))
        .collect();
    let n = order.len();
    let placed = (first..first.saturating_add(count.max(0)))
        .map(|partition| {
            let at = (start + usize::try_from(partition).unwrap_or(0)) % n;
            let mut replicas = vec![order[at]];
            // Followers: the next brokers in the list, a new rack first while one is left.
            while replicas.len() < factor {
                let candidates = (1..n).map(|step| order[(at + step) % n]);
                let unused: Vec<i32> = candidates.filter(|id| !replicas.contains(id)).collect();
                let used_racks: Vec<Option<&str>> = replicas.iter().map(|id| rack_of[id]).collect();
                let next = unused
                    .iter()
                    .find(|id| !used_racks.contains(&rack_of[*id]))
                    .or_else(|| unused.first())
                    .copied();
                match next {
                    Some(id) => replicas.push(id),
                    None => break,
                }
            }
            replicas
        })
        .collect();
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(node_id: i32, rack: Option<&str>) -> BrokerRegistration {
        BrokerRegistration {
            node_id,
            host: "localhost".into(),
            port: 9092 + node_id,
            rack: rack.map(str::to_string),
            fenced: false,
        }
    }

    #[test]
    fn six_partitions_spread_round_robin_over_three_brokers() {
        let brokers = [broker(3, None), broker(1, None), broker(2, None)];
        let placed = place(&brokers, 0, 6, 1, 1).expect("placed");
        assert_eq!(
            placed,
            vec![vec![2], vec![3], vec![1], vec![2], vec![3], vec![1]]
        );
    }

    #[test]
    fn racks_alternate_so_neighbours_and_replicas_sit_apart() {
        // Kafka's KIP-36 example shape: racks a, a, b, b, c.
        let brokers = [
            broker(1, Some("a")),
            broker(2, Some("a")),
            broker(3, Some("b")),
            broker(4, Some("b")),
            broker(5, Some("c")),
        ];
        assert_eq!(rack_alternated(&brokers), vec![1, 3, 5, 2, 4]);
        for replicas in place(&brokers, 0, 10, 3, 0).expect("placed") {
            let racks: std::collections::BTreeSet<_> = replicas
                .iter()
                .map(|id| {
                    brokers
                        .iter()
                        .find(|b| b.node_id == *id)
                        .unwrap()
                        .rack
                        .clone()
                })
                .collect();
            assert_eq!(racks.len(), 3, "{replicas:?} spans three racks");
        }
    }

    #[test]
    fn new_partitions_continue_the_round_robin_and_a_factor_above_the_brokers_is_refused() {
        let brokers = [broker(1, None), broker(2, None)];
        assert_eq!(
            place(&brokers, 3, 2, 1, 0).expect("placed"),
            vec![vec![2], vec![1]]
        );
        assert_eq!(
            place(&brokers, 0, 1, 3, 0),
            Err(PlacementError::NotEnoughBrokers {
                factor: 3,
                brokers: 2
            })
        );
    }
}
