//! Requests this broker sends to another broker of the cluster, on that broker's client
//! listener as Kafka's inter-broker listener does: WriteTxnMarkers (key 27, v1), which the
//! transaction coordinator sends to the leader of a partition it does not hold (Kafka's
//! `TransactionMarkerChannelManager`), AddPartitionsToTxn (key 24, v5), which a partition
//! leader sends to a transactional producer's coordinator to add a partition the producer
//! writes to (Kafka's `AddPartitionsToTxnManager`, KIP-890), and the followers' Fetch and
//! OffsetForLeaderEpoch, on a [`BrokerConnection`] each fetcher keeps open.
//!
//! Markers and additions use one connection per call, opened with a deadline and closed
//! after the answer: markers are written once per transaction and partition leader, so a pool
//! would buy little. A response frame is bounded ([`RESPONSE_BYTES_MAX`], or the fetcher's
//! bound) before it is read. The listener must be
//! PLAINTEXT: a cluster whose client listener requires SASL cannot send these yet (no
//! inter-broker credentials), and the call fails with a message saying so.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use runnel_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use runnel_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use runnel_protocol::{Decodable, Encodable, ErrorCode, StrBytes};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The WriteTxnMarkers version sent (the flexible one Kafka's brokers send).
const WRITE_TXN_MARKERS_VERSION: i16 = 1;
/// The largest response frame read.
const RESPONSE_BYTES_MAX: usize = 1024 * 1024;

#[derive(Debug, Error)]
pub enum InterBrokerError {
    #[error("connect to broker {node_id} at {address}: {reason}")]
    Connect {
        node_id: i32,
        address: String,
        reason: String,
    },
    #[error("broker {node_id} at {address}: {reason}")]
    Exchange {
        node_id: i32,
        address: String,
        reason: String,
    },
}

/// One transaction marker for one partition of another broker.
pub struct MarkerRequest<'a> {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub topic: &'a str,
    pub partition: i32,
}

/// Sends `marker` to broker `node_id` at `host:port` and returns the partition's error code
/// (NONE once the marker is durable there), within `deadline`.
pub async fn write_txn_marker(
    node_id: i32,
    host: &str,
    port: i32,
    marker: &MarkerRequest<'_>,
    deadline: Duration,
) -> Result<ErrorCode, InterBrokerError> {
    let address = format!("{host}:{port}");
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(marker.producer_id.into())
            .with_producer_epoch(marker.producer_epoch)
            .with_transaction_result(marker.commit)
            .with_coordinator_epoch(marker.coordinator_epoch)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(StrBytes::from_string(marker.topic.to_string()).into())
                .with_partition_indexes(vec![marker.partition])])]);
    let exchange = exchange::<_, WriteTxnMarkersResponse>(
        &address,
        ApiKey::WriteTxnMarkers,
        WRITE_TXN_MARKERS_VERSION,
        &request,
    );
    let response = within(node_id, &address, deadline, exchange).await?;
    let code = response
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == marker.partition)
        .and_then(|p| ErrorCode::from_code(p.error_code))
        .unwrap_or(ErrorCode::UnknownServerError);
    Ok(code)
}

enum Failure {
    Connect(String),
    Exchange(String),
}

/// `exchange` bounded by `deadline`, its failure named after the broker.
async fn within<T>(
    node_id: i32,
    address: &str,
    deadline: Duration,
    exchange: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, InterBrokerError> {
    let address = address.to_string();
    match tokio::time::timeout(deadline, exchange).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(Failure::Connect(reason))) => Err(InterBrokerError::Connect {
            node_id,
            address,
            reason,
        }),
        Ok(Err(Failure::Exchange(reason))) => Err(InterBrokerError::Exchange {
            node_id,
            address,
            reason,
        }),
        Err(_) => Err(InterBrokerError::Exchange {
            node_id,
            address,
            reason: format!("no answer within {deadline:?}"),
        }),
    }
}

/// The AddPartitionsToTxn version a partition leader sends (v5: KIP-890's implicit add).
const ADD_PARTITIONS_VERSION: i16 = 5;

/// Adds `partitions` to `transactional_id`'s ongoing transaction on its coordinator, broker
/// `node_id` at `host:port`, or with `verify_only` asks whether they are in it (Kafka's
/// `AddPartitionsToTxnManager`: AddPartitionsToTxn v5), and returns each partition's error
/// code, in request order.
#[allow(clippy::too_many_arguments)]
pub async fn add_partitions_to_txn(
    node_id: i32,
    host: &str,
    port: i32,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
    verify_only: bool,
    deadline: Duration,
) -> Result<Vec<i16>, InterBrokerError> {
    use runnel_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    use runnel_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
    let address = format!("{host}:{port}");
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (topic, index) in partitions {
        match topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(entry) => entry.partitions.push(*index),
            None => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(StrBytes::from_string(topic.clone()).into())
                    .with_partitions(vec![*index]),
            ),
        }
    }
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(StrBytes::from_string(transactional_id.to_string()).into())
            .with_producer_id(producer_id.into())
            .with_producer_epoch(producer_epoch)
            .with_verify_only(verify_only)
            .with_topics(topics),
    ]);
    let exchange = exchange::<_, AddPartitionsToTxnResponse>(
        &address,
        ApiKey::AddPartitionsToTxn,
        ADD_PARTITIONS_VERSION,
        &request,
    );
    let response = within(node_id, &address, deadline, exchange).await?;
    let results = response.results_by_transaction.first();
    Ok(partitions
        .iter()
        .map(|(topic, index)| {
            results
                .and_then(|r| r.topic_results.iter().find(|t| t.name.as_str() == topic))
                .and_then(|t| {
                    t.results_by_partition
                        .iter()
                        .find(|p| p.partition_index == *index)
                })
                .map_or(
                    if response.error_code != 0 {
                        response.error_code
                    } else {
                        ErrorCode::UnknownServerError.code()
                    },
                    |p| p.partition_error_code,
                )
        })
        .collect())
}

async fn exchange<Req: Encodable, Resp: Decodable>(
    address: &str,
    api: ApiKey,
    version: i16,
    request: &Req,
) -> Result<Resp, Failure> {
    let mut connection = BrokerConnection::connect(address)
        .await
        .map_err(|error| Failure::Connect(error.to_string()))?;
    connection
        .call(api, version, request, RESPONSE_BYTES_MAX)
        .await
        .map_err(Failure::Exchange)
}

/// A connection to another broker's client listener that carries one request at a time:
/// what a follower's fetcher keeps open to its leader (`replication/fetcher.rs`).
pub struct BrokerConnection {
    stream: tokio::net::TcpStream,
    next_correlation_id: i32,
}

impl BrokerConnection {
    pub async fn connect(address: &str) -> std::io::Result<BrokerConnection> {
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(BrokerConnection {
            stream,
            next_correlation_id: 1,
        })
    }

    /// Sends `request` and reads its answer, a frame of at most `response_bytes_max` bytes.
    /// An error leaves the connection in an unknown state: drop it.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
        response_bytes_max: usize,
    ) -> Result<Resp, String> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("runnel-broker")));
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        let encoded = header
            .encode(&mut frame, api.request_header_version(version))
            .and_then(|()| request.encode(&mut frame, version));
        encoded.map_err(|error| format!("encode: {error}"))?;
        let size = u32::try_from(frame.len() - 4).map_err(|_| "request too large".to_string())?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        let io = |error: std::io::Error| error.to_string();
        self.stream.write_all(&frame).await.map_err(io)?;
        let size = self.stream.read_u32().await.map_err(io)? as usize;
        if size > response_bytes_max {
            return Err(format!(
                "a response frame of {size} bytes is above {response_bytes_max}"
            ));
        }
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body).await.map_err(io)?;
        let mut body = bytes::Bytes::from(body);
        let decode = |error| format!("decode: {error}");
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .map_err(decode)?;
        if header.correlation_id != correlation_id {
            return Err(format!(
                "correlation id {} answers {correlation_id}",
                header.correlation_id
            ));
        }
        let response = Resp::decode(&mut body, version).map_err(decode)?;
        if body.has_remaining() {
            return Err("trailing bytes in the response".into());
        }
        Ok(response)
    }
}
