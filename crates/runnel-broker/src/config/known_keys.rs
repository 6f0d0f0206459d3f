//! The broker configuration keys `config.rs` reads, and the suggestion an unknown key's
//! warning makes: the known key within a small edit distance ("did you mean
//! log.segment.bytes?").

/// The keys [`super::BrokerConfig::from_properties`] reads (its `match` arms, in their order; the
/// `listener.name.*.sasl.jaas.config` family aside): what an unknown key's warning suggests.
pub(super) const KNOWN_KEYS: &[&str] = &[
    "node.id",
    "broker.id",
    "listeners",
    "advertised.listeners",
    "process.roles",
    "controller.quorum.voters",
    "controller.listener.names",
    "inter.broker.listener.name",
    "broker.rack",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "replica.lag.time.max.ms",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "replica.selector.class",
    "controller.quorum.election.timeout.ms",
    "log.dirs",
    "log.dir",
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "message.max.bytes",
    "socket.request.max.bytes",
    "max.connections",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    "connections.max.idle.ms",
    "queued.max.request.bytes",
    "log.open.files.max",
    "max.broker.partitions",
    "connection.failed.authentication.delay.ms",
    "listener.security.protocol.map",
    "sasl.enabled.mechanisms",
    "http.listen",
    "log.segment.bytes",
    "log.roll.ms",
    "log.roll.hours",
    "log.index.interval.bytes",
    "log.index.size.max.bytes",
    "log.direct.io",
    "log.flush.syncfs",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.retention.hours",
    "log.retention.minutes",
    "log.retention.ms",
    "log.retention.bytes",
    "log.cleaner.enable",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleanup.policy",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.message.timestamp.type",
    "log.retention.check.interval.ms",
    "log.scrub.bytes.per.second",
    "log.scrub.interval.ms",
    "log.flush.offset.checkpoint.interval.ms",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.max.size",
    "offsets.retention.minutes",
    "offsets.retention.check.interval.ms",
    "offset.metadata.max.bytes",
    "transaction.state.log.num.partitions",
    "transaction.state.log.replication.factor",
    "transaction.max.timeout.ms",
    "transactional.id.expiration.ms",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "transaction.remove.expired.transaction.cleanup.interval.ms",
];

/// The known key nearest `key` by edit distance, if it is near enough to be a typo: at most
/// two edits, and fewer than a third of the key's length.
pub(super) fn suggest_key(key: &str) -> Option<&'static str> {
    KNOWN_KEYS
        .iter()
        .map(|known| (edit_distance(key, known), *known))
        .filter(|(distance, _)| *distance <= 2 && *distance * 3 < key.len())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// Levenshtein distance over bytes (config keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, &x) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &y) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(x != y);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_suggest_the_key_meant() {
        assert_eq!(suggest_key("log.segment.byte"), Some("log.segment.bytes"));
        assert_eq!(suggest_key("num.partition"), Some("num.partitions"));
        assert_eq!(
            suggest_key("log.retention.hour"),
            Some("log.retention.hours")
        );
        assert_eq!(suggest_key("completely.different"), None);
        assert_eq!(suggest_key("ab"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
