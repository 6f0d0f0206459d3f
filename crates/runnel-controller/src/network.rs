//! The Raft client side: openraft's [`RaftNetworkFactory`] / [`RaftNetwork`] over a
//! [`Transport`] (TCP in the product), in [`crate::frame`]'s frames.
//!
//! One connection per target, opened on first use and kept; any error drops it, and the next
//! RPC reconnects. Connecting is bounded by [`CONNECT_TIMEOUT`]; a whole RPC (connect, write,
//! read) by openraft's hard TTL for it ([`RPCOption::hard_ttl`]: derived from the heartbeat
//! interval and election timeout, or `install_snapshot_timeout` for snapshot chunks). A target
//! that cannot be reached is reported as `Unreachable`, so that openraft backs off before
//! retrying it; a connection that fails mid-RPC, or times out, as a network error.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::election_timer::ElectionClock;
use crate::frame::{self, FrameError, Kind, STATUS_OK, STATUS_RAFT_ERROR};
use crate::transport::Transport;
use crate::types::{NodeId, TypeConfig};

/// How long a connection to a peer may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Makes one [`PeerConnection`] per target.
pub struct NetworkFactory<T> {
    pub transport: T,
    /// Each voter's address as `controller.quorum.voters` names it now: it wins over the
    /// address the membership in the log recorded when the quorum was formed, as Kafka reads
    /// a static quorum's addresses from its configuration, so a voter can move to another
    /// host or port with a restart of each node.
    pub addresses: std::sync::Arc<std::collections::BTreeMap<NodeId, String>>,
    /// Told when a vote request is refused by a longer log (`election_timer`).
    pub clock: std::sync::Arc<ElectionClock>,
}

impl<T: Transport> RaftNetworkFactory<TypeConfig> for NetworkFactory<T> {
    type Network = PeerConnection<T>;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection<T> {
        let addr = self
            .addresses
            .get(&target)
            .cloned()
            .unwrap_or_else(|| node.addr.clone());
        PeerConnection {
            transport: self.transport.clone(),
            target,
            addr,
            stream: None,
            clock: std::sync::Arc::clone(&self.clock),
        }
    }
}

/// The connection to one peer's controller listener.
pub struct PeerConnection<T: Transport> {
    transport: T,
    target: NodeId,
    addr: String,
    stream: Option<T::Stream>,
    clock: std::sync::Arc<ElectionClock>,
}

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("RPC to {addr}: {source}")]
    Frame { addr: String, source: FrameError },
    #[error("RPC to {addr} timed out after {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("RPC to {addr}: unknown response status {status}")]
    BadStatus { addr: String, status: u8 },
}

impl<T: Transport> PeerConnection<T> {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: Kind,
        request: &Req,
        option: RPCOption,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        // Serialising openraft's plain request types cannot fail.
        let body = serde_json::to_vec(request).expect("raft request serialises");
        let outcome = tokio::time::timeout(timeout, self.exchange(kind, &body)).await;
        let (status, body) = match outcome {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                self.stream = None;
                return Err(match error {
                    CallError::Connect { .. } => RPCError::Unreachable(Unreachable::new(&error)),
                    _ => RPCError::Network(NetworkError::new(&error)),
                });
            }
            Err(_) => {
                self.stream = None;
                let error = CallError::Timeout {
                    addr: self.addr.clone(),
                    timeout,
                };
                return Err(RPCError::Network(NetworkError::new(&error)));
            }
        };
        let frame_error = |source: serde_json::Error| CallError::Frame {
            addr: self.addr.clone(),
            source: FrameError::Body(source),
        };
        match status {
            STATUS_OK => crate::openraft_json::decode(&body).map_err(|e| {
                self.stream = None;
                RPCError::Network(NetworkError::new(&frame_error(e)))
            }),
            STATUS_RAFT_ERROR => {
                let remote: RaftError<NodeId, E> =
                    crate::openraft_json::decode(&body).map_err(|e| {
                        self.stream = None;
                        RPCError::Network(NetworkError::new(&frame_error(e)))
                    })?;
                Err(RPCError::RemoteError(RemoteError::new(self.target, remote)))
            }
            status => {
                self.stream = None;
                let error = CallError::BadStatus {
                    addr: self.addr.clone(),
                    status,
                };
                Err(RPCError::Network(NetworkError::new(&error)))
            }
        }
    }

    /// Writes one request and reads its response, connecting first if needed.
    ///
    /// # Cancel safety
    /// Not cancel safe (see [`frame::read_frame`]); the caller drops the connection when it
    /// gives up.
    async fn exchange(&mut self, kind: Kind, body: &[u8]) -> Result<(u8, Vec<u8>), CallError> {
        if self.stream.is_none() {
            let connect = tokio::time::timeout(CONNECT_TIMEOUT, self.transport.connect(&self.addr));
            let stream = match connect.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    return Err(CallError::Connect {
                        addr: self.addr.clone(),
                        reason: error.to_string(),
                    })
                }
                Err(_) => {
                    return Err(CallError::Connect {
                        addr: self.addr.clone(),
                        reason: format!("no answer within {CONNECT_TIMEOUT:?}"),
                    })
                }
            };
            self.stream = Some(stream);
        }
        let addr = self.addr.clone();
        let frame_error = |source| CallError::Frame {
            addr: addr.clone(),
            source,
        };
        let Some(stream) = self.stream.as_mut() else {
            unreachable!("connected above");
        };
        frame::write_frame(stream, kind as u8, body)
            .await
            .map_err(frame_error)?;
        frame::read_frame(stream).await.map_err(frame_error)
    }
}

impl<T: Transport> RaftNetwork<TypeConfig> for PeerConnection<T> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        self.call(Kind::AppendEntries, &rpc, option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        self.call(Kind::InstallSnapshot, &rpc, option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        let response: VoteResponse<NodeId> = self.call(Kind::Vote, &rpc, option).await?;
        if !response.vote_granted && response.last_log_id > rpc.last_log_id {
            self.clock.saw_longer_log();
        }
        Ok(response)
    }
}
