//! Fetch responses encoded around their record bytes, so a broker can send the records
//! straight from its segment files (DESIGN.md §2: zero-copy where the codec allows).
//!
//! [`encode`] writes a whole response frame (size prefix, response header, body) for
//! versions 4–16 as a list of [`Piece`]s: encoded bytes, and in between them each partition's
//! records, left to the caller as an `R` that only has to know its length. Laid end to end,
//! the pieces are byte for byte what the `kafka-protocol` codec writes for the same
//! response with the records in place (a test checks every version).
//!
//! Layout per version (Kafka's `FetchResponse.json`): `throttle_time_ms` (v1+), `error_code`
//! and `session_id` (v7+), then per topic its name (v0–12) or id (v13+) and per partition
//! `partition_index`, `error_code`, `high_watermark`, `last_stable_offset` (v4+),
//! `log_start_offset` (v5+), `aborted_transactions` (v4+, nullable), `preferred_read_replica`
//! (v11+) and `records` (nullable). v12+ is flexible: compact strings, arrays and bytes, and
//! tagged-field sections, all empty here (no diverging epoch, current leader, snapshot id or
//! node endpoints: a single node leads every partition it answers for).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use uuid::Uuid;

use crate::frame::SIZE_PREFIX_BYTES;
use crate::header::CodecError;

/// The versions [`encode`] writes.
pub const VERSIONS: std::ops::RangeInclusive<i16> = 4..=16;

/// Record bytes the caller supplies (a file range, or bytes in memory).
pub trait RecordsLength {
    fn records_len(&self) -> usize;
}

impl RecordsLength for Bytes {
    fn records_len(&self) -> usize {
        self.len()
    }
}

/// An aborted transaction a read_committed consumer must skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// One partition's answer.
#[derive(Debug, Clone)]
pub struct PartitionResponse<R> {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// `None` is null (read_uncommitted); read_committed gets a list, maybe empty.
    pub aborted_transactions: Option<Vec<AbortedTransaction>>,
    pub preferred_read_replica: i32,
    /// `None`: no records, sent as an empty byte string, as Kafka does for errors and empty
    /// reads (the field is nullable, but Kafka never sends null and clients do not expect it).
    pub records: Option<R>,
}

/// One topic's answer: by name up to v12, by id from v13.
#[derive(Debug, Clone)]
pub struct TopicResponse<R> {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: Vec<PartitionResponse<R>>,
}

/// The response body.
#[derive(Debug, Clone)]
pub struct FetchResponse<R> {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub session_id: i32,
    pub topics: Vec<TopicResponse<R>>,
}

/// A part of an encoded response frame.
#[derive(Debug)]
pub enum Piece<R> {
    Encoded(Bytes),
    Records(R),
}

/// Encodes the frame of `response` to a request of `version` with `correlation_id`.
pub fn encode<R: RecordsLength>(
    version: i16,
    correlation_id: i32,
    response: FetchResponse<R>,
) -> Result<Vec<Piece<R>>, CodecError> {
    if !VERSIONS.contains(&version) {
        return Err(CodecError::Encode {
            api: ApiKey::Fetch,
            version,
            reason: format!("the fetch encoder writes versions {VERSIONS:?}"),
        });
    }
    let mut out = Writer::new(version);
    out.buf.put_i32(0); // the size prefix, patched below
    out.buf.put_i32(correlation_id);
    out.tagged_fields(); // response header v1 when flexible
    out.buf.put_i32(response.throttle_time_ms);
    if version >= 7 {
        out.buf.put_i16(response.error_code);
        out.buf.put_i32(response.session_id);
    }
    out.array_len(Some(response.topics.len()));
    for topic in response.topics {
        if version >= 13 {
            out.buf.put_slice(topic.topic_id.as_bytes());
        } else {
            out.string(&topic.name);
        }
        out.array_len(Some(topic.partitions.len()));
        for partition in topic.partitions {
            out.partition(partition);
        }
        out.tagged_fields();
    }
    out.tagged_fields();
    out.finish()
}

struct Writer<R> {
    flexible: bool,
    version: i16,
    buf: BytesMut,
    pieces: Vec<Piece<R>>,
    /// Bytes of every piece so far, records included.
    size_bytes: usize,
}

impl<R: RecordsLength> Writer<R> {
    fn new(version: i16) -> Self {
        Writer {
            flexible: version >= 12,
            version,
            buf: BytesMut::with_capacity(1024),
            pieces: Vec::new(),
            size_bytes: 0,
        }
    }

    fn partition(&mut self, partition: PartitionResponse<R>) {
        self.buf.put_i32(partition.partition_index);
        self.buf.put_i16(partition.error_code);
        self.buf.put_i64(partition.high_watermark);
        self.buf.put_i64(partition.last_stable_offset);
        if self.version >= 5 {
            self.buf.put_i64(partition.log_start_offset);
        }
        let aborted = partition.aborted_transactions;
        self.array_len(aborted.as_ref().map(Vec::len));
        for transaction in aborted.iter().flatten() {
            self.buf.put_i64(transaction.producer_id);
            self.buf.put_i64(transaction.first_offset);
            self.tagged_fields();
        }
        if self.version >= 11 {
            self.buf.put_i32(partition.preferred_read_replica);
        }
        match partition.records {
            None => self.length(Some(0)),
            Some(records) => {
                let length = records.records_len();
                self.length(Some(length));
                if length > 0 {
                    self.cut();
                    self.size_bytes += length;
                    self.pieces.push(Piece::Records(records));
                }
            }
        }
        self.tagged_fields();
    }

    /// An array's element count, or null.
    fn array_len(&mut self, len: Option<usize>) {
        self.length(len);
    }

    /// A length prefix of bytes or an array: i32 (-1 for null), or when flexible an unsigned
    /// varint of length + 1 (0 for null).
    fn length(&mut self, len: Option<usize>) {
        if self.flexible {
            put_unsigned_varint(&mut self.buf, len.map_or(0, |n| n as u64 + 1));
        } else {
            self.buf.put_i32(len.map_or(-1, |n| n as i32));
        }
    }

    fn string(&mut self, text: &str) {
        if self.flexible {
            put_unsigned_varint(&mut self.buf, text.len() as u64 + 1);
        } else {
            self.buf.put_i16(text.len() as i16);
        }
        self.buf.put_slice(text.as_bytes());
    }

    /// An empty tagged-field section (flexible versions only).
    fn tagged_fields(&mut self) {
        if self.flexible {
            put_unsigned_varint(&mut self.buf, 0);
        }
    }

    /// Ends the current encoded piece.
    fn cut(&mut self) {
        let bytes = std::mem::take(&mut self.buf);
        self.size_bytes += bytes.len();
        self.pieces.push(Piece::Encoded(bytes.freeze()));
    }

    fn finish(mut self) -> Result<Vec<Piece<R>>, CodecError> {
        self.cut();
        let frame_bytes = self.size_bytes - SIZE_PREFIX_BYTES;
        let size = i32::try_from(frame_bytes).map_err(|_| CodecError::Encode {
            api: ApiKey::Fetch,
            version: self.version,
            reason: format!("a response of {frame_bytes} bytes does not fit a frame"),
        })?;
        let Some(Piece::Encoded(first)) = self.pieces.first_mut() else {
            unreachable!("the first piece holds the size prefix");
        };
        let mut head = BytesMut::from(&first[..]);
        head[..SIZE_PREFIX_BYTES].copy_from_slice(&size.to_be_bytes());
        *first = head.freeze();
        Ok(self.pieces)
    }
}

fn put_unsigned_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction as KpAborted, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{FetchResponse as KpFetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    use super::*;
    use crate::header::encode_response;

    fn partition_strategy() -> impl Strategy<Value = PartitionResponse<Bytes>> {
        (
            any::<i32>(),
            any::<i16>(),
            any::<(i64, i64, i64)>(),
            proptest::option::of(proptest::collection::vec(any::<(i64, i64)>(), 0..3)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        )
            .prop_map(|(index, error, (hw, lso, start), aborted, records)| {
                PartitionResponse {
                    partition_index: index,
                    error_code: error,
                    high_watermark: hw,
                    last_stable_offset: lso,
                    log_start_offset: start,
                    aborted_transactions: aborted.map(|list| {
                        list.into_iter()
                            .map(|(producer_id, first_offset)| AbortedTransaction {
                                producer_id,
                                first_offset,
                            })
                            .collect()
                    }),
                    preferred_read_replica: -1,
                    records: records.map(Bytes::from),
                }
            })
    }

    fn response_strategy() -> impl Strategy<Value = FetchResponse<Bytes>> {
        let topic = (
            "[a-z._-]{1,20}",
            any::<u128>(),
            proptest::collection::vec(partition_strategy(), 0..4),
        )
            .prop_map(|(name, id, partitions)| TopicResponse {
                name,
                topic_id: Uuid::from_u128(id),
                partitions,
            });
        (
            any::<i32>(),
            any::<i16>(),
            any::<i32>(),
            proptest::collection::vec(topic, 0..4),
        )
            .prop_map(
                |(throttle_time_ms, error_code, session_id, topics)| FetchResponse {
                    throttle_time_ms,
                    error_code,
                    session_id,
                    topics,
                },
            )
    }

    /// The same response as the `kafka-protocol` codec's type.
    fn generated(response: &FetchResponse<Bytes>, version: i16) -> KpFetchResponse {
        let topics = response
            .topics
            .iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        PartitionData::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(p.error_code)
                            .with_high_watermark(p.high_watermark)
                            .with_last_stable_offset(p.last_stable_offset)
                            .with_log_start_offset(if version >= 5 {
                                p.log_start_offset
                            } else {
                                -1
                            })
                            .with_aborted_transactions(p.aborted_transactions.as_ref().map(
                                |list| {
                                    list.iter()
                                        .map(|t| {
                                            KpAborted::default()
                                                .with_producer_id(t.producer_id.into())
                                                .with_first_offset(t.first_offset)
                                        })
                                        .collect()
                                },
                            ))
                            .with_preferred_read_replica(p.preferred_read_replica.into())
                            .with_records(Some(p.records.clone().unwrap_or_default()))
                    })
                    .collect();
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(if version < 13 {
                        topic.name.clone()
                    } else {
                        String::new()
                    })))
                    .with_topic_id(if version >= 13 {
                        topic.topic_id
                    } else {
                        Uuid::nil()
                    })
                    .with_partitions(partitions)
            })
            .collect();
        KpFetchResponse::default()
            .with_throttle_time_ms(response.throttle_time_ms)
            .with_error_code(if version >= 7 { response.error_code } else { 0 })
            .with_session_id(if version >= 7 { response.session_id } else { 0 })
            .with_responses(topics)
    }

    fn joined(pieces: Vec<Piece<Bytes>>) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Encoded(bytes) | Piece::Records(bytes) => out.extend_from_slice(&bytes),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn pieces_are_the_codecs_bytes(response in response_strategy(), version in 4i16..=16, correlation_id in any::<i32>()) {
            let expected = encode_response(ApiKey::Fetch, version, correlation_id, &generated(&response, version))
                .expect("the codec encodes");
            let pieces = encode(version, correlation_id, response).expect("encodes");
            prop_assert_eq!(joined(pieces), expected.to_vec());
        }
    }

    #[test]
    fn records_are_pieces_of_their_own() {
        let records = Bytes::from_static(b"0123456789");
        let response = FetchResponse {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 0,
            topics: vec![TopicResponse {
                name: "t".into(),
                topic_id: Uuid::nil(),
                partitions: vec![PartitionResponse {
                    partition_index: 0,
                    error_code: 0,
                    high_watermark: 10,
                    last_stable_offset: 10,
                    log_start_offset: 0,
                    aborted_transactions: None,
                    preferred_read_replica: -1,
                    records: Some(records.clone()),
                }],
            }],
        };
        let pieces = encode(16, 7, response).expect("encodes");
        assert_eq!(pieces.len(), 3);
        assert!(matches!(&pieces[1], Piece::Records(r) if *r == records));
        assert!(encode::<Bytes>(
            17,
            7,
            FetchResponse {
                throttle_time_ms: 0,
                error_code: 0,
                session_id: 0,
                topics: Vec::new()
            }
        )
        .is_err());
    }
}
