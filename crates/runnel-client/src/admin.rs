//! [`Admin`]: the cluster administration the CLI does (topics, their configs and partitions;
//! groups, their members, commits and lag), as blocking calls over librdkafka's admin client.
//!
//! Each call waits at most the admin's timeout. Per-item failures (one topic of several)
//! come back as [`ClientError::Topic`] / [`ClientError::Group`] with Kafka's error code: the
//! deletions report each item's outcome, the other calls the first failure.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;
use rdkafka::{Offset, TopicPartitionList};
use runnel_coordinator::assignment::decode_assignment;

use crate::ClientError;

/// A topic's config override, or a value the broker reports with its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub name: String,
    pub value: Option<String>,
    /// Set on the topic itself (not a broker default).
    pub is_override: bool,
}

/// One member of a group, as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    /// The partitions the group's leader assigned it, (topic, partition).
    pub assignment: Vec<(String, i32)>,
}

/// A group: its state, assignor and members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<GroupMember>,
}

pub use runnel_coordinator::consumer_lag::{GroupLag, PartitionLag};

/// A connection to a cluster for administration.
pub struct Admin {
    /// The client configuration every client made here starts from.
    config: ClientConfig,
    client: AdminClient<DefaultClientContext>,
    runtime: tokio::runtime::Runtime,
    timeout: Duration,
}

impl Admin {
    /// Connects with `config` (`bootstrap.servers` and any other librdkafka properties, such
    /// as SASL credentials) and waits at most `connect_timeout` for a broker to answer. Its
    /// Metadata requests never ask the broker to create a topic (`allow.auto.create.topics`
    /// false, as Kafka's AdminClient): describing an unknown topic is an error, not a creation.
    pub fn connect(
        config: &ClientConfig,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Admin, ClientError> {
        let mut config = config.clone();
        config.set("allow.auto.create.topics", "false");
        let client: AdminClient<DefaultClientContext> = config.create()?;
        let bootstrap = config
            .get("bootstrap.servers")
            .unwrap_or_default()
            .to_string();
        crate::probe(client.inner(), &bootstrap, connect_timeout)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?;
        Ok(Admin {
            config,
            client,
            runtime,
            timeout,
        })
    }

    /// How long each call waits.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .operation_timeout(Some(self.timeout))
            .request_timeout(Some(self.timeout))
    }

    /// Every topic's metadata, or one topic's (an unknown one reports its error in the
    /// metadata rather than failing).
    pub fn metadata(&self, topic: Option<&str>) -> Result<Metadata, ClientError> {
        Ok(self.client.inner().fetch_metadata(topic, self.timeout)?)
    }

    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &[(String, String)],
    ) -> Result<(), ClientError> {
        let mut topic = NewTopic::new(
            name,
            partitions,
            TopicReplication::Fixed(replication_factor),
        );
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let results = self
            .runtime
            .block_on(self.client.create_topics(&[topic], &self.options()))?;
        topic_results(results)
    }

    /// Deletes topics; each topic's outcome, in order.
    pub fn delete_topics(
        &self,
        names: &[String],
    ) -> Result<Vec<Result<String, ClientError>>, ClientError> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let results = self
            .runtime
            .block_on(self.client.delete_topics(&names, &self.options()))?;
        Ok(results
            .into_iter()
            .map(|r| r.map_err(|(topic, code)| ClientError::Topic { topic, code }))
            .collect())
    }

    /// Grows `name` to `total` partitions.
    pub fn create_partitions(&self, name: &str, total: usize) -> Result<(), ClientError> {
        let grow = NewPartitions::new(name, total);
        let results = self
            .runtime
            .block_on(self.client.create_partitions(&[grow], &self.options()))?;
        topic_results(results)
    }

    /// The topic's configuration: every config the broker reports, overrides marked.
    pub fn topic_configs(&self, name: &str) -> Result<Vec<TopicConfig>, ClientError> {
        let results = self.runtime.block_on(
            self.client
                .describe_configs(&[ResourceSpecifier::Topic(name)], &self.options()),
        )?;
        let mut configs = Vec::new();
        for result in results {
            let resource = result.map_err(|code| ClientError::Topic {
                topic: name.to_string(),
                code,
            })?;
            configs.extend(resource.entries.into_iter().map(|entry| TopicConfig {
                is_override: entry.source == ConfigSource::DynamicTopic,
                name: entry.name,
                value: entry.value,
            }));
        }
        Ok(configs)
    }

    /// Sets `set` and removes `remove` among the topic's overrides, keeping the others.
    /// (AlterConfigs replaces a topic's whole override set, so the current one is read first.)
    pub fn alter_topic_configs(
        &self,
        name: &str,
        set: &[(String, String)],
        remove: &[String],
    ) -> Result<(), ClientError> {
        let mut overrides: BTreeMap<String, String> = self
            .topic_configs(name)?
            .into_iter()
            .filter(|c| c.is_override)
            .filter_map(|c| c.value.map(|value| (c.name, value)))
            .collect();
        for key in remove {
            overrides.remove(key);
        }
        overrides.extend(set.iter().cloned());
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (key, value) in &overrides {
            alter = alter.set(key, value);
        }
        let results = self
            .runtime
            .block_on(self.client.alter_configs(&[alter], &self.options()))?;
        for result in results {
            result.map_err(|(_, code)| ClientError::Topic {
                topic: name.to_string(),
                code,
            })?;
        }
        Ok(())
    }

    /// Every group, or one, with members and their assignments.
    pub fn groups(&self, group: Option<&str>) -> Result<Vec<GroupDescription>, ClientError> {
        let list = self.client.inner().fetch_group_list(group, self.timeout)?;
        Ok(list
            .groups()
            .iter()
            .map(|g| GroupDescription {
                group_id: g.name().to_string(),
                state: g.state().to_string(),
                protocol_type: g.protocol_type().to_string(),
                protocol: g.protocol().to_string(),
                members: g
                    .members()
                    .iter()
                    .map(|m| GroupMember {
                        member_id: m.id().to_string(),
                        client_id: m.client_id().to_string(),
                        client_host: m.client_host().to_string(),
                        assignment: m.assignment().map(decode_assignment).unwrap_or_default(),
                    })
                    .collect(),
            })
            .collect())
    }

    /// Deletes (empty) groups; each group's outcome, in order.
    pub fn delete_groups(
        &self,
        groups: &[String],
    ) -> Result<Vec<Result<String, ClientError>>, ClientError> {
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let results = self
            .runtime
            .block_on(self.client.delete_groups(&groups, &self.options()))?;
        Ok(results
            .into_iter()
            .map(|r| r.map_err(|(group, code)| ClientError::Group { group, code }))
            .collect())
    }

    /// The group's lag as [`runnel_coordinator::consumer_lag`] defines it (the broker's
    /// console and `/metrics` use the same definition): every partition assigned to a member
    /// and every partition with a committed offset, each with its commit, its high watermark
    /// (ListOffsets latest, as Kafka's tool reads it) and the difference. With `topics`, the
    /// rows are every partition of those topics instead. Committed offsets are looked up for
    /// every partition the metadata lists (OffsetFetch), so commits to a topic deleted since
    /// are not seen here.
    pub fn group_lag(&self, group: &str, topics: &[String]) -> Result<GroupLag, ClientError> {
        let consumer = self.group_consumer(group)?;
        let candidates: Vec<(String, i32)> = if topics.is_empty() {
            let metadata = self.metadata(None)?;
            metadata
                .topics()
                .iter()
                .flat_map(|t| {
                    t.partitions()
                        .iter()
                        .map(|p| (t.name().to_string(), p.id()))
                })
                .collect()
        } else {
            self.partitions_of(group, topics)?
        };
        let mut request = TopicPartitionList::new();
        for (topic, partition) in &candidates {
            request.add_partition(topic, *partition);
        }
        let listed = consumer.committed_offsets(request, self.timeout)?;
        let committed: Vec<(String, i32, i64)> = listed
            .elements()
            .iter()
            .filter_map(|p| match p.offset() {
                Offset::Offset(offset) => Some((p.topic().to_string(), p.partition(), offset)),
                _ => None,
            })
            .collect();
        let assigned: Vec<(String, i32)> = if topics.is_empty() {
            self.groups(Some(group))?
                .into_iter()
                .flat_map(|g| g.members)
                .flat_map(|m| m.assignment)
                .collect()
        } else {
            candidates
        };
        let committed = committed
            .iter()
            .filter(|(topic, _, _)| topics.is_empty() || topics.contains(topic));
        Ok(GroupLag::compute(
            assigned.iter().map(|(t, p)| (t.as_str(), *p)),
            committed.map(|(t, p, o)| (t.as_str(), *p, *o)),
            // A partition whose watermarks cannot be read has an unknown end, as in Kafka.
            |topic, partition| {
                consumer
                    .fetch_watermarks(topic, partition, self.timeout)
                    .ok()
                    .map(|(_, high)| high)
            },
        ))
    }

    /// A consumer carrying `group`'s id that never joins it: commits and fetches offsets
    /// as a simple (generation -1) consumer.
    pub(crate) fn group_consumer(&self, group: &str) -> Result<BaseConsumer, ClientError> {
        Ok(self
            .config
            .clone()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?)
    }

    /// (topic, partition) for every partition of `topics`, or of the topics assigned to the
    /// group's members when `topics` is empty.
    pub(crate) fn partitions_of(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<(String, i32)>, ClientError> {
        let mut names: Vec<String> = topics.to_vec();
        if names.is_empty() {
            for description in self.groups(Some(group))? {
                for member in description.members {
                    names.extend(member.assignment.into_iter().map(|(topic, _)| topic));
                }
            }
        }
        names.sort();
        names.dedup();
        let mut partitions = Vec::new();
        for name in names {
            let metadata = self.metadata(Some(&name))?;
            for topic in metadata.topics() {
                if let Some(error) = topic.error() {
                    return Err(ClientError::Topic {
                        topic: name.clone(),
                        code: RDKafkaErrorCode::from(error),
                    });
                }
                partitions.extend(topic.partitions().iter().map(|p| (name.clone(), p.id())));
            }
        }
        Ok(partitions)
    }
}

fn topic_results(results: Vec<rdkafka::admin::TopicResult>) -> Result<(), ClientError> {
    for result in results {
        result.map_err(|(topic, code)| ClientError::Topic { topic, code })?;
    }
    Ok(())
}
