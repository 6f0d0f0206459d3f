//! The Raft server side: the controller listener's accept loop and one task per connection,
//! reading [`crate::frame`] requests, handing them to the local Raft node and writing back its
//! answer.
//!
//! Bounds: at most [`CONNECTIONS_MAX`] connections at once (more are closed on accept, with a
//! WARN); every frame's length is checked before its body is read ([`frame::read_frame`]). A
//! request that does not decode, or of an unknown kind, closes its connection: the peer
//! reconnects and retries, and a bad peer cannot wedge the listener.

use std::sync::Arc;

use openraft::raft::{AppendEntriesResponse, InstallSnapshotRequest};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::election_timer::ElectionClock;
use crate::forward::{Forwarded, HandlerSlot};
use crate::frame::{self, FrameError, Kind, STATUS_NOT_LEADER, STATUS_OK, STATUS_RAFT_ERROR};
use crate::transport::Transport;
use crate::types::{Raft, TypeConfig};

/// Connections the controller listener serves at once (each peer needs one).
pub const CONNECTIONS_MAX: usize = 64;

/// Serves `listener` until the task is aborted; aborting it ends every connection too.
pub async fn serve<T: Transport>(
    listener: T::Listener,
    raft: Raft,
    handler: HandlerSlot,
    clock: Arc<ElectionClock>,
) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = T::accept(&listener) => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "controller listener accept failed");
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%peer, CONNECTIONS_MAX, "controller listener full; closing connection");
            continue;
        };
        let raft = raft.clone();
        let handler = Arc::clone(&handler);
        let clock = Arc::clone(&clock);
        connections.spawn(async move {
            if let Err(error) = serve_connection(stream, &raft, &handler, &clock).await {
                tracing::debug!(%peer, %error, "controller connection closed");
            }
            drop(permit);
        });
    }
}

async fn serve_connection<S>(
    mut stream: S,
    raft: &Raft,
    handler: &HandlerSlot,
    clock: &ElectionClock,
) -> Result<(), FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let (tag, body) = frame::read_frame(&mut stream).await?;
        let kind = Kind::from_byte(tag).ok_or(FrameError::UnknownKind(tag))?;
        let (status, response) = match kind {
            Kind::AppendEntries => {
                let request = crate::openraft_json::decode(&body)?;
                let response = raft.append_entries(request).await;
                // Accepted unless refused for a higher vote: a leader was heard.
                if matches!(&response, Ok(answer) if !matches!(answer, AppendEntriesResponse::HigherVote(_)))
                {
                    clock.heard();
                }
                encode(response)
            }
            Kind::Vote => {
                let request = crate::openraft_json::decode(&body)?;
                encode(raft.vote(request).await)
            }
            Kind::InstallSnapshot => {
                let request: InstallSnapshotRequest<TypeConfig> =
                    crate::openraft_json::decode(&body)?;
                let sender = request.vote;
                let response = raft.install_snapshot(request).await;
                // Accepted when this node took the sender's vote as its own.
                if matches!(&response, Ok(answer) if answer.vote == sender) {
                    clock.heard();
                }
                encode(response)
            }
            Kind::Join => crate::learner::serve(raft, &body).await,
            Kind::Forward => {
                let answer = match handler.get() {
                    Some(handler) => handler(body).await,
                    None => Forwarded::NotLeader,
                };
                match answer {
                    Forwarded::Answer(answer) => (STATUS_OK, answer),
                    Forwarded::NotLeader => {
                        let leader = raft.metrics().borrow().current_leader;
                        let body = serde_json::to_vec(&leader).expect("a node id serialises");
                        (STATUS_NOT_LEADER, body)
                    }
                }
            }
        };
        frame::write_frame(&mut stream, status, &response).await?;
    }
}

fn encode<T: Serialize, E: Serialize>(result: Result<T, E>) -> (u8, Vec<u8>) {
    // openraft's response and error types are plain data: serialising cannot fail.
    match result {
        Ok(response) => (
            STATUS_OK,
            serde_json::to_vec(&response).expect("raft response serialises"),
        ),
        Err(error) => (
            STATUS_RAFT_ERROR,
            serde_json::to_vec(&error).expect("raft error serialises"),
        ),
    }
}
