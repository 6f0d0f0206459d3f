//! What the transaction coordinator is asked and what it answers, free of wire versions: the
//! broker's handlers fill these from any version of InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn and EndTxn (and the produce path's implicit adds), and shape the answers
//! back per version ([`TxnErrorCode::for_version`]).
//!
//! Partitions are `(topic, partition)` pairs, as in the rest of this crate.

use runnel_protocol::ErrorCode;

use super::state::TxnVersion;

/// The error codes the transaction coordinator answers with: Kafka's numbers and names.
/// Several are not in [`ErrorCode`] yet; [`TxnErrorCode::code`] is what goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnErrorCode {
    None,
    UnknownServerError,
    CoordinatorLoadInProgress,
    CoordinatorNotAvailable,
    NotCoordinator,
    InvalidRequest,
    InvalidProducerEpoch,
    InvalidTxnState,
    InvalidProducerIdMapping,
    InvalidTransactionTimeout,
    ConcurrentTransactions,
    ProducerFenced,
    TransactionalIdNotFound,
    TransactionAbortable,
    /// Not the coordinator's own answer: a partition leader's wait for it timed out (Kafka's
    /// `AddPartitionsToTxnManager` answers a timed-out request so).
    NetworkException,
}

impl TxnErrorCode {
    /// Kafka's i16 code.
    pub const fn code(self) -> i16 {
        match self {
            TxnErrorCode::None => 0,
            TxnErrorCode::UnknownServerError => -1,
            TxnErrorCode::CoordinatorLoadInProgress => 14,
            TxnErrorCode::CoordinatorNotAvailable => 15,
            TxnErrorCode::NotCoordinator => 16,
            TxnErrorCode::InvalidRequest => 42,
            TxnErrorCode::InvalidProducerEpoch => 47,
            TxnErrorCode::InvalidTxnState => 48,
            TxnErrorCode::InvalidProducerIdMapping => 49,
            TxnErrorCode::InvalidTransactionTimeout => 50,
            TxnErrorCode::ConcurrentTransactions => 51,
            TxnErrorCode::ProducerFenced => 90,
            TxnErrorCode::TransactionalIdNotFound => 105,
            TxnErrorCode::TransactionAbortable => 120,
            TxnErrorCode::NetworkException => 13,
        }
    }

    /// Kafka's name, e.g. `CONCURRENT_TRANSACTIONS`.
    pub const fn name(self) -> &'static str {
        match self {
            TxnErrorCode::None => "NONE",
            TxnErrorCode::UnknownServerError => "UNKNOWN_SERVER_ERROR",
            TxnErrorCode::CoordinatorLoadInProgress => "COORDINATOR_LOAD_IN_PROGRESS",
            TxnErrorCode::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            TxnErrorCode::NotCoordinator => "NOT_COORDINATOR",
            TxnErrorCode::InvalidRequest => "INVALID_REQUEST",
            TxnErrorCode::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
            TxnErrorCode::InvalidTxnState => "INVALID_TXN_STATE",
            TxnErrorCode::InvalidProducerIdMapping => "INVALID_PRODUCER_ID_MAPPING",
            TxnErrorCode::InvalidTransactionTimeout => "INVALID_TRANSACTION_TIMEOUT",
            TxnErrorCode::ConcurrentTransactions => "CONCURRENT_TRANSACTIONS",
            TxnErrorCode::ProducerFenced => "PRODUCER_FENCED",
            TxnErrorCode::TransactionalIdNotFound => "TRANSACTIONAL_ID_NOT_FOUND",
            TxnErrorCode::TransactionAbortable => "TRANSACTION_ABORTABLE",
            TxnErrorCode::NetworkException => "NETWORK_EXCEPTION",
        }
    }

    /// The same code as an [`ErrorCode`], where `runnel-protocol` lists it.
    pub fn error_code(self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code())
    }

    /// The code a client of `api` at `version` understands. PRODUCER_FENCED arrived with
    /// KIP-588 (InitProducerId v4, AddPartitionsToTxn v2, AddOffsetsToTxn v2, EndTxn v2);
    /// older versions get INVALID_PRODUCER_EPOCH, as Kafka's `KafkaApis` answers them.
    pub fn for_version(self, api: TxnApi, version: i16) -> TxnErrorCode {
        let fenced_since = match api {
            TxnApi::InitProducerId => 4,
            TxnApi::AddPartitionsToTxn | TxnApi::AddOffsetsToTxn | TxnApi::EndTxn => 2,
        };
        if self == TxnErrorCode::ProducerFenced && version < fenced_since {
            TxnErrorCode::InvalidProducerEpoch
        } else {
            self
        }
    }
}

impl std::fmt::Display for TxnErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// The APIs whose errors depend on the request version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnApi {
    InitProducerId,
    AddPartitionsToTxn,
    AddOffsetsToTxn,
    EndTxn,
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnResult {
    Commit,
    Abort,
}

/// InitProducerId with a transactional id.
#[derive(Debug, Clone)]
pub struct InitProducerIdRequest {
    pub transactional_id: String,
    pub transaction_timeout_ms: i32,
    /// v3+ (KIP-360): the producer id and epoch a producer recovering from an error holds;
    /// `None` when the request carries -1/-1.
    pub producer_id_and_epoch: Option<(i64, i16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitProducerIdResult {
    pub error: TxnErrorCode,
    /// -1 with an error.
    pub producer_id: i64,
    /// -1 with an error.
    pub producer_epoch: i16,
}

impl InitProducerIdResult {
    pub fn error(error: TxnErrorCode) -> InitProducerIdResult {
        InitProducerIdResult {
            error,
            producer_id: -1,
            producer_epoch: -1,
        }
    }
}

/// AddPartitionsToTxn for one transactional id (a v4+ batch is split by the broker), and the
/// produce path's implicit add under transactions v2 (`client_version` V2).
#[derive(Debug, Clone)]
pub struct AddPartitionsRequest {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<(String, i32)>,
    /// V0 for a client's AddPartitionsToTxn (v0-v3); V2 for the produce path's implicit add
    /// under transactions v2 (Kafka's partition leader sends it as AddPartitionsToTxn v5
    /// without `verify_only`), and for TxnOffsetCommit v5's implicit add of the group's
    /// `__consumer_offsets` partition.
    pub client_version: TxnVersion,
}

/// AddPartitionsToTxn v4+ with `verify_only` (KIP-890 part 1): a partition leader asks whether
/// each partition is part of the ongoing transaction of (producer id, epoch). Writes nothing.
#[derive(Debug, Clone)]
pub struct VerifyPartitionsRequest {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<(String, i32)>,
}

/// AddOffsetsToTxn: adds the group's `__consumer_offsets` partition to the transaction.
#[derive(Debug, Clone)]
pub struct AddOffsetsRequest {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub group_id: String,
    pub client_version: TxnVersion,
}

/// EndTxn.
#[derive(Debug, Clone)]
pub struct EndTxnRequest {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub result: TxnResult,
    /// V2 for EndTxn v5+ (transactions v2), V0 below (Kafka's `KafkaApis`).
    pub client_version: TxnVersion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnResult {
    pub error: TxnErrorCode,
    /// v5+: the producer id and epoch for the next transaction; -1 otherwise.
    pub producer_id: i64,
    pub producer_epoch: i16,
}

impl EndTxnResult {
    pub fn error(error: TxnErrorCode) -> EndTxnResult {
        EndTxnResult {
            error,
            producer_id: -1,
            producer_epoch: -1,
        }
    }
}

/// Per partition, in request order: ((topic, partition), error).
pub type PartitionsResult = Vec<((String, i32), TxnErrorCode)>;

/// DescribeTransactions' view of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    pub transactional_id: String,
    /// TRANSACTIONAL_ID_NOT_FOUND for an id this coordinator does not hold.
    pub error: TxnErrorCode,
    /// Kafka's state name ("Ongoing", ...).
    pub state: &'static str,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub transaction_timeout_ms: i32,
    pub transaction_start_time_ms: i64,
    pub partitions: Vec<(String, i32)>,
}

impl TxnDescription {
    /// A description with no state, producer or partitions yet, carrying `error` (an id that
    /// failed, or `None` for one about to be filled in).
    pub fn empty(transactional_id: String, error: TxnErrorCode) -> TxnDescription {
        TxnDescription {
            transactional_id,
            error,
            state: "",
            producer_id: -1,
            producer_epoch: -1,
            transaction_timeout_ms: 0,
            transaction_start_time_ms: -1,
            partitions: Vec::new(),
        }
    }
}

/// ListTransactions' view of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: &'static str,
}

/// ListTransactions' filters; empty means any.
#[derive(Debug, Clone, Default)]
pub struct ListTxnFilter {
    /// State names, matched exactly as Kafka does.
    pub states: Vec<String>,
    pub producer_ids: Vec<i64>,
    /// v1: only transactions open longer than this (-1 = any).
    pub duration_ms_min: i64,
}

/// Everything the transaction coordinator is asked.
#[derive(Debug, Clone)]
pub enum TxnRequest {
    InitProducerId(InitProducerIdRequest),
    AddPartitions(AddPartitionsRequest),
    VerifyPartitions(VerifyPartitionsRequest),
    AddOffsets(AddOffsetsRequest),
    EndTxn(EndTxnRequest),
    Describe(Vec<String>),
    List(ListTxnFilter),
}

/// Everything the transaction coordinator answers; one variant per [`TxnRequest`] variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnResponse {
    InitProducerId(InitProducerIdResult),
    AddPartitions(PartitionsResult),
    VerifyPartitions(PartitionsResult),
    AddOffsets(TxnErrorCode),
    EndTxn(EndTxnResult),
    Describe(Vec<TxnDescription>),
    List(Result<Vec<ListedTxn>, TxnErrorCode>),
}

impl TxnResponse {
    /// The answer to `request` when it cannot be served at all (`error` for every part).
    pub fn failed(request: &TxnRequest, error: TxnErrorCode) -> TxnResponse {
        let partitions =
            |partitions: &[(String, i32)]| partitions.iter().map(|p| (p.clone(), error)).collect();
        match request {
            TxnRequest::InitProducerId(_) => {
                TxnResponse::InitProducerId(InitProducerIdResult::error(error))
            }
            TxnRequest::AddPartitions(add) => {
                TxnResponse::AddPartitions(partitions(&add.partitions))
            }
            TxnRequest::VerifyPartitions(verify) => {
                TxnResponse::VerifyPartitions(partitions(&verify.partitions))
            }
            TxnRequest::AddOffsets(_) => TxnResponse::AddOffsets(error),
            TxnRequest::EndTxn(_) => TxnResponse::EndTxn(EndTxnResult::error(error)),
            TxnRequest::Describe(ids) => TxnResponse::Describe(
                ids.iter()
                    .map(|id| TxnDescription::empty(id.clone(), error))
                    .collect(),
            ),
            TxnRequest::List(_) => TxnResponse::List(Err(error)),
        }
    }

    /// This response with every success turned into `error`: for the driver when the records
    /// the response waited for could not be written.
    pub fn with_failure(self, error: TxnErrorCode) -> TxnResponse {
        let fail = |code: TxnErrorCode| {
            if code == TxnErrorCode::None {
                error
            } else {
                code
            }
        };
        match self {
            TxnResponse::InitProducerId(result) => {
                TxnResponse::InitProducerId(InitProducerIdResult::error(fail(result.error)))
            }
            TxnResponse::AddPartitions(result) => TxnResponse::AddPartitions(
                result
                    .into_iter()
                    .map(|(p, code)| (p, fail(code)))
                    .collect(),
            ),
            TxnResponse::AddOffsets(code) => TxnResponse::AddOffsets(fail(code)),
            TxnResponse::EndTxn(result) => {
                TxnResponse::EndTxn(EndTxnResult::error(fail(result.error)))
            }
            other => other,
        }
    }
}
