//! [`WireAdmin`]: the admin questions librdkafka has no call for, asked with Kafka's own
//! requests over a plain connection: ListTransactions, DescribeTransactions and
//! DescribeProducers (what Kafka's `kafka-transactions.sh` asks).
//!
//! This departs from DESIGN.md §1 (a well-kept client, not a home-made one) for these three
//! requests only, because neither librdkafka nor the `rdkafka` crate offers them; everything
//! else the tools do still goes through librdkafka ([`crate::admin`]), which also finds the
//! brokers, partition leaders and coordinators asked here. The requests and responses are
//! `kafka-protocol`'s types (the patched, bounded decoder the broker uses), so nothing here
//! encodes or decodes a field by hand. Connections speak PLAINTEXT, or SASL_PLAINTEXT with
//! PLAIN, from the same librdkafka properties the other tools take (`-X`).
//!
//! Every answer is read with the admin's timeout and a bound on its size; a broker that
//! answers with an error code gets it reported by Kafka's name.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use runnel_protocol::messages::describe_producers_request::TopicRequest;
use runnel_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    TopicName, TransactionalId,
};
use runnel_protocol::{Decodable, Encodable, ErrorCode, StrBytes};

use crate::ClientError;

/// The largest response read (Kafka's default `socket.request.max.bytes`).
const RESPONSE_BYTES_MAX: usize = 100 * 1024 * 1024;
const CLIENT_ID: &str = "runnel-cli";

/// How to reach a broker: the librdkafka properties that say it.
#[derive(Debug, Clone, Default)]
pub struct WireSecurity {
    /// `sasl.username` / `sasl.password` when `security.protocol` is SASL_PLAINTEXT.
    pub sasl_plain: Option<(String, String)>,
}

impl WireSecurity {
    /// From librdkafka's property names; protocols and mechanisms these requests cannot speak
    /// are refused.
    pub fn from_properties<'a>(
        properties: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<WireSecurity, ClientError> {
        let mut protocol = "plaintext".to_string();
        let mut mechanism = "GSSAPI".to_string();
        let (mut username, mut password) = (None, None);
        for (key, value) in properties {
            match key {
                "security.protocol" => protocol = value.to_ascii_lowercase(),
                "sasl.mechanism" | "sasl.mechanisms" => mechanism = value.to_string(),
                "sasl.username" => username = Some(value.to_string()),
                "sasl.password" => password = Some(value.to_string()),
                _ => {}
            }
        }
        match protocol.as_str() {
            "plaintext" => Ok(WireSecurity::default()),
            "sasl_plaintext" if mechanism == "PLAIN" => Ok(WireSecurity {
                sasl_plain: Some((username.unwrap_or_default(), password.unwrap_or_default())),
            }),
            "sasl_plaintext" => Err(ClientError::Refused(format!(
                "sasl.mechanism {mechanism}: only PLAIN is supported for this command"
            ))),
            other => Err(ClientError::Refused(format!(
                "security.protocol {other}: only PLAINTEXT and SASL_PLAINTEXT are supported \
                 for this command"
            ))),
        }
    }
}

/// One transaction as ListTransactions lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTransaction {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
    /// The broker that answered (the transaction's coordinator).
    pub coordinator: i32,
}

/// One transaction as DescribeTransactions describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    pub coordinator: i32,
    pub transactional_id: String,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// -1 when no transaction is open.
    pub start_time_ms: i64,
    pub partitions: Vec<(String, i32)>,
}

/// One producer of a partition as DescribeProducers reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProducer {
    pub producer_id: i64,
    pub producer_epoch: i32,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// -1 when the producer has no open transaction.
    pub current_txn_start_offset: i64,
}

/// One partition's active producers, or why it could not say.
pub type ProducersOrError = Result<Vec<PartitionProducer>, ClientError>;

/// A connection to one broker.
pub struct WireAdmin {
    stream: TcpStream,
    correlation_id: i32,
    node_id: i32,
}

impl WireAdmin {
    /// Connects to `address` (the broker `node_id`), authenticating as `security` says.
    pub fn connect(
        address: &str,
        node_id: i32,
        security: &WireSecurity,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<WireAdmin, ClientError> {
        let unreachable = |error: std::io::Error| {
            ClientError::Refused(format!("broker {node_id} at {address}: {error}"))
        };
        let mut last = None;
        let mut stream = None;
        for resolved in address.to_socket_addrs().map_err(unreachable)? {
            match TcpStream::connect_timeout(&resolved, connect_timeout) {
                Ok(connected) => {
                    stream = Some(connected);
                    break;
                }
                Err(error) => last = Some(error),
            }
        }
        let stream = stream.ok_or_else(|| {
            unreachable(last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()))
        })?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(unreachable)?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(unreachable)?;
        let mut admin = WireAdmin {
            stream,
            correlation_id: 0,
            node_id,
        };
        if let Some((username, password)) = &security.sasl_plain {
            admin.authenticate_plain(username, password)?;
        }
        Ok(admin)
    }

    /// SaslHandshake v1 then SaslAuthenticate v2 with a PLAIN token (KIP-152), as librdkafka
    /// does.
    fn authenticate_plain(&mut self, username: &str, password: &str) -> Result<(), ClientError> {
        let handshake: SaslHandshakeResponse = self.request(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        )?;
        self.check(handshake.error_code, "SaslHandshake")?;
        let token = format!("\0{username}\0{password}").into_bytes();
        let authenticated: SaslAuthenticateResponse = self.request(
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(token.into()),
        )?;
        self.check(authenticated.error_code, "SaslAuthenticate")
    }

    /// ListTransactions v1 of this broker, filtered as Kafka's admin filters (empty = all).
    pub fn list_transactions(
        &mut self,
        states: &[String],
        producer_ids: &[i64],
        duration_filter_ms: i64,
    ) -> Result<Vec<ListedTransaction>, ClientError> {
        let request = ListTransactionsRequest::default()
            .with_state_filters(
                states
                    .iter()
                    .map(|s| StrBytes::from_string(s.clone()))
                    .collect(),
            )
            .with_producer_id_filters(producer_ids.iter().map(|&id| ProducerId(id)).collect())
            .with_duration_filter(duration_filter_ms);
        let response: ListTransactionsResponse =
            self.request(ApiKey::ListTransactions, 1, &request)?;
        self.check(response.error_code, "ListTransactions")?;
        Ok(response
            .transaction_states
            .into_iter()
            .map(|txn| ListedTransaction {
                transactional_id: txn.transactional_id.to_string(),
                producer_id: txn.producer_id.0,
                state: txn.transaction_state.to_string(),
                coordinator: self.node_id,
            })
            .collect())
    }

    /// The coordinator (node id, host:port) of `transactional_id` (FindCoordinator v4, key
    /// type 1).
    pub fn find_transaction_coordinator(
        &mut self,
        transactional_id: &str,
    ) -> Result<(i32, String), ClientError> {
        let request = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![StrBytes::from_string(transactional_id.to_string())]);
        let response: FindCoordinatorResponse =
            self.request(ApiKey::FindCoordinator, 4, &request)?;
        let coordinator = response.coordinators.into_iter().next().ok_or_else(|| {
            ClientError::Refused("FindCoordinator: the answer names no coordinator".to_string())
        })?;
        self.check(coordinator.error_code, "FindCoordinator")?;
        Ok((
            coordinator.node_id.0,
            format!("{}:{}", coordinator.host, coordinator.port),
        ))
    }

    /// DescribeTransactions v0 of `transactional_id` on its coordinator (this broker).
    pub fn describe_transaction(
        &mut self,
        transactional_id: &str,
    ) -> Result<TransactionDescription, ClientError> {
        let request =
            DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
                StrBytes::from_string(transactional_id.to_string()),
            )]);
        let response: DescribeTransactionsResponse =
            self.request(ApiKey::DescribeTransactions, 0, &request)?;
        let state = response
            .transaction_states
            .into_iter()
            .next()
            .ok_or_else(|| {
                ClientError::Refused("DescribeTransactions: the answer is empty".to_string())
            })?;
        if state.error_code != 0 {
            return Err(ClientError::Refused(format!(
                "transactional id {transactional_id}: {}",
                error_name(state.error_code)
            )));
        }
        Ok(TransactionDescription {
            coordinator: self.node_id,
            transactional_id: state.transactional_id.to_string(),
            state: state.transaction_state.to_string(),
            producer_id: state.producer_id.0,
            producer_epoch: state.producer_epoch,
            timeout_ms: state.transaction_timeout_ms,
            start_time_ms: state.transaction_start_time_ms,
            partitions: state
                .topics
                .into_iter()
                .flat_map(|topic| {
                    let name = topic.topic.to_string();
                    topic.partitions.into_iter().map(move |p| (name.clone(), p))
                })
                .collect(),
        })
    }

    /// DescribeProducers v0 of `topic`'s `partitions` on their leader (this broker); per
    /// partition, its producers or its error.
    pub fn describe_producers(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, ProducersOrError)>, ClientError> {
        let request = DescribeProducersRequest::default()
            .with_topics(vec![TopicRequest::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_indexes(partitions.to_vec())]);
        let response: DescribeProducersResponse =
            self.request(ApiKey::DescribeProducers, 0, &request)?;
        Ok(response
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .map(|partition| {
                let index = partition.partition_index;
                if partition.error_code != 0 {
                    let error = ClientError::Refused(format!(
                        "topic {topic} partition {index}: {}",
                        error_name(partition.error_code)
                    ));
                    return (index, Err(error));
                }
                let producers = partition
                    .active_producers
                    .into_iter()
                    .map(|p| PartitionProducer {
                        producer_id: p.producer_id.0,
                        producer_epoch: p.producer_epoch,
                        last_sequence: p.last_sequence,
                        last_timestamp: p.last_timestamp,
                        coordinator_epoch: p.coordinator_epoch,
                        current_txn_start_offset: p.current_txn_start_offset,
                    })
                    .collect();
                (index, Ok(producers))
            })
            .collect())
    }

    fn check(&self, code: i16, api: &str) -> Result<(), ClientError> {
        if code == 0 {
            return Ok(());
        }
        Err(ClientError::Refused(format!(
            "{api} on broker {}: {}",
            self.node_id,
            error_name(code)
        )))
    }

    fn request<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp, ClientError> {
        let failed = |what: &str, detail: String| {
            ClientError::Refused(format!("{api:?} v{version}: {what}: {detail}"))
        };
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut frame = bytes::BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header
            .encode(&mut frame, api.request_header_version(version))
            .map_err(|e| failed("encode", e.to_string()))?;
        body.encode(&mut frame, version)
            .map_err(|e| failed("encode", e.to_string()))?;
        let size = u32::try_from(frame.len() - 4).map_err(|e| failed("encode", e.to_string()))?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.stream
            .write_all(&frame)
            .map_err(|e| failed("send", e.to_string()))?;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|e| failed("read the answer", e.to_string()))?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size)
            .ok()
            .filter(|&size| size <= RESPONSE_BYTES_MAX)
            .ok_or_else(|| failed("read the answer", format!("a frame of {size} bytes")))?;
        let mut answer = vec![0u8; size];
        self.stream
            .read_exact(&mut answer)
            .map_err(|e| failed("read the answer", e.to_string()))?;
        let mut answer = bytes::Bytes::from(answer);
        let header = ResponseHeader::decode(&mut answer, api.response_header_version(version))
            .map_err(|e| failed("decode", e.to_string()))?;
        if header.correlation_id != self.correlation_id {
            return Err(failed(
                "decode",
                format!(
                    "correlation id {} answers request {}",
                    header.correlation_id, self.correlation_id
                ),
            ));
        }
        Resp::decode(&mut answer, version).map_err(|e| failed("decode", e.to_string()))
    }
}

/// Kafka's name of an error code, e.g. `TRANSACTIONAL_ID_NOT_FOUND`.
fn error_name(code: i16) -> String {
    match ErrorCode::from_code(code) {
        Some(known) => known.name().to_string(),
        None => format!("error {code}"),
    }
}
