//! Changes asked of a controller that does not lead, carried to the one that does (Kafka's
//! forwarding of admin requests to the active controller).
//!
//! Only the leader proposes, and it validates each change against its own image, which holds
//! everything committed: a follower's image may lag, so a follower never proposes what it
//! validated itself. What a change is, and what it answers, is the caller's business: this
//! module carries opaque bytes. The node that embeds the quorum installs a [`ForwardHandler`]
//! ([`crate::MetadataQuorum::set_forward_handler`]) that runs a change on the leader; a
//! follower's [`crate::MetadataQuorum::forward`] sends the bytes to the leader's controller
//! listener as a [`crate::frame::Kind::Forward`] frame and returns the handler's answer.
//!
//! Frames: request body = the change's bytes; response status [`STATUS_OK`] = the handler's
//! answer, [`STATUS_NOT_LEADER`] = the receiver does not lead (or has no handler yet), its body
//! the leader it knows as JSON (`3` or `null`).
//!
//! Retries: a change is sent again only when it was certainly not run: the connection could not
//! be opened, or the receiver answered that it does not lead. A connection that fails after
//! the change was written is an error for the caller ([`ForwardError::Uncertain`]): the change
//! may have been committed, as with any request whose answer was lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;

use crate::frame;
use crate::transport::Transport;
use crate::types::NodeId;

pub use crate::frame::{STATUS_NOT_LEADER, STATUS_OK};

/// How long one forwarded change may take on the leader (connect, commit, answer).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// What a handler makes of a forwarded change.
pub enum Forwarded {
    /// The change ran here; its answer.
    Answer(Vec<u8>),
    /// This node does not lead (any more): the sender tries the leader.
    NotLeader,
}

/// Runs a forwarded change on the leader.
pub type ForwardHandler =
    Arc<dyn Fn(Vec<u8>) -> Pin<Box<dyn Future<Output = Forwarded> + Send>> + Send + Sync>;

/// Where the handler is installed, shared by the node and its controller listener.
pub type HandlerSlot = Arc<OnceLock<ForwardHandler>>;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ForwardError {
    /// This node leads now: the caller runs the change itself.
    #[error("node {0} leads the metadata quorum now")]
    Leading(NodeId),
    #[error("no active controller was known within {0:?}")]
    NoLeader(Duration),
    /// The change may or may not have been committed.
    #[error("forwarding to the active controller {leader} at {addr}: {reason}")]
    Uncertain {
        leader: NodeId,
        addr: String,
        reason: String,
    },
}

/// One attempt's outcome, before retries.
pub(crate) enum Attempt {
    Answer(Vec<u8>),
    /// Not run: try again (after the leader is known, or changed).
    Retry,
    Failed(ForwardError),
}

/// Sends `body` to `leader` at `addr` once.
pub(crate) async fn send_once<T: Transport>(
    transport: &T,
    leader: NodeId,
    addr: &str,
    body: &[u8],
) -> Attempt {
    let connect = tokio::time::timeout(crate::network::CONNECT_TIMEOUT, transport.connect(addr));
    let mut stream = match connect.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(leader, addr, %error, "forward: active controller unreachable");
            return Attempt::Retry;
        }
        Err(_) => return Attempt::Retry,
    };
    let uncertain = |reason: String| {
        Attempt::Failed(ForwardError::Uncertain {
            leader,
            addr: addr.to_string(),
            reason,
        })
    };
    let exchange = async {
        frame::write_frame(&mut stream, frame::Kind::Forward as u8, body).await?;
        frame::read_frame(&mut stream).await
    };
    match tokio::time::timeout(FORWARD_TIMEOUT, exchange).await {
        Ok(Ok((STATUS_OK, answer))) => Attempt::Answer(answer),
        Ok(Ok((STATUS_NOT_LEADER, _))) => Attempt::Retry,
        Ok(Ok((status, _))) => uncertain(format!("unknown response status {status}")),
        Ok(Err(error)) => uncertain(error.to_string()),
        Err(_) => uncertain(format!("no answer within {FORWARD_TIMEOUT:?}")),
    }
}

/// The deadline's remaining time, or `None` once it passed.
pub(crate) fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
}
