//! Error types of the storage engine, one enum per failure domain.
//!
//! - [`LogError`]: opening, recovering, flushing, truncating or closing a partition log.
//! - [`AppendError`]: appending one batch (idempotent and transactional producer checks
//!   included).
//! - [`ReadError`]: reading a range of batches for a fetch.
//!
//! Every I/O failure carries the path it happened on. The broker maps each variant to one Kafka
//! error code; this crate knows nothing about error codes.

use std::io;
use std::path::PathBuf;

use runnel_protocol::record_batch::BatchError;
use thiserror::Error;

/// A failure of the partition log as a whole.
#[derive(Debug, Error)]
pub enum LogError {
    /// An operating-system I/O call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What we were doing: "open", "read", "write", "fsync", "truncate", "remove", ...
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file we must trust (a checkpoint) is malformed.
    #[error("corrupt {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| LogError::Io { op, path, source }
    }
}

/// Why one batch was not appended.
#[derive(Debug, Error)]
pub enum AppendError {
    /// Writing the batch (or rolling a segment) failed; nothing was appended.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file written while rolling was found corrupt (should not happen).
    #[error("corrupt {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// The bytes are not one whole record batch (the broker validates before appending).
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The batch is larger than a segment may be (`log.segment.bytes`).
    #[error("record batch of {size_bytes} bytes exceeds segment size {segment_bytes}")]
    RecordTooLarge {
        size_bytes: usize,
        segment_bytes: u64,
    },
    /// The producer epoch is older than the one this partition has seen (a fenced producer).
    #[error(
        "producer {producer_id} epoch {received_epoch} is older than current epoch {current_epoch}"
    )]
    InvalidProducerEpoch {
        producer_id: i64,
        current_epoch: i16,
        received_epoch: i16,
    },
    /// The batch's base sequence is not the next one expected for this producer.
    #[error(
        "producer {producer_id}: out of order sequence, expected {expected}, received {received}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        received: i32,
    },
    /// A non-transactional batch from a producer whose transaction is ongoing (Kafka's
    /// `InvalidTxnStateException`, INVALID_TXN_STATE).
    #[error(
        "producer {producer_id} sent a non-transactional batch during its ongoing transaction"
    )]
    InvalidTxnState { producer_id: i64 },
    /// A transaction marker from a coordinator older than the one that wrote the producer's
    /// last marker (Kafka's `TransactionCoordinatorFencedException`,
    /// TRANSACTION_COORDINATOR_FENCED).
    #[error(
        "producer {producer_id}: marker of coordinator epoch {received_coordinator_epoch} is older than {current_coordinator_epoch}"
    )]
    TransactionCoordinatorFenced {
        producer_id: i64,
        current_coordinator_epoch: i32,
        received_coordinator_epoch: i32,
    },
    /// A batch copied from the leader does not start at this log's end (the follower's log
    /// and the leader's diverged, or a fetch answer was for another offset).
    #[error("a replicated batch starts at offset {base_offset}, not at the log end offset {log_end_offset}")]
    NotAtLogEnd {
        base_offset: i64,
        log_end_offset: i64,
    },
}

impl From<LogError> for AppendError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::Io { op, path, source } => AppendError::Io { op, path, source },
            LogError::Corrupt { path, reason } => AppendError::Corrupt { path, reason },
        }
    }
}

/// Why a read could not be answered.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The offset is outside `[log start offset, log end offset]`.
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// The offset lies in a damaged range: its records are lost or corrupt (see
    /// `partition_log/damage.rs`).
    #[error("offset {offset} lies in the damaged range [{start_offset}, {end_offset})")]
    Damaged {
        offset: i64,
        start_offset: i64,
        end_offset: i64,
    },
    /// Reading batch headers failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A batch header in a segment is unreadable (the segment changed under us or is damaged).
    #[error("corrupt {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

impl From<LogError> for ReadError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::Io { op, path, source } => ReadError::Io { op, path, source },
            LogError::Corrupt { path, reason } => ReadError::Corrupt { path, reason },
        }
    }
}
