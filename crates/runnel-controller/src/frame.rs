//! The wire format of Raft's own messages between controllers: length-prefixed frames on a
//! TCP connection to a voter's controller listener.
//!
//! # Frames (all integers big-endian)
//! ```text
//! request:   length N (u32) | kind (u8)   | body (N - 1 bytes)
//! response:  length N (u32) | status (u8) | body (N - 1 bytes)
//! ```
//! - `N` counts the kind or status byte and the body; `1 ≤ N ≤ FRAME_BYTES_MAX`, checked before
//!   anything is allocated. A frame outside that range closes the connection.
//! - kind: [`Kind::AppendEntries`] = 1, [`Kind::Vote`] = 2, [`Kind::InstallSnapshot`] = 3,
//!   [`Kind::Forward`] = 4 (a change for the active controller, [`crate::forward`]),
//!   [`Kind::Join`] = 5 (a broker-only node asking to be added as a learner, [`crate::learner`]).
//!   An unknown kind closes the connection.
//! - body: JSON of openraft's request type (`AppendEntriesRequest`, `VoteRequest`,
//!   `InstallSnapshotRequest`, in openraft's serde forms).
//! - status 0: the body is the RPC's response (`AppendEntriesResponse`, `VoteResponse`,
//!   `InstallSnapshotResponse`); status 1: the body is the `RaftError` the remote node returned
//!   (for InstallSnapshot, `RaftError<InstallSnapshotError>`); status 2 (Forward only): the
//!   receiver does not lead, the body the leader it knows (JSON, `null` when none); Join
//!   answers status 0 (added, empty body), 2 with the leader and its address
//!   ([`crate::learner::LeaderHint`] as JSON), or 1 with the refusal as text.
//!
//! One request is in flight per connection: the client writes a request and reads its response
//! before the next. Each peer has its own connection per direction, so a slow snapshot to one
//! follower never holds up another.

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame read or written: an AppendEntries of [`crate::ENTRIES_PER_APPEND_MAX`]
/// entries of at most [`crate::PROPOSAL_BYTES_MAX`] each, or a snapshot chunk, fits.
pub const FRAME_BYTES_MAX: usize = 32 * 1024 * 1024;

/// A request's kind byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    AppendEntries = 1,
    Vote = 2,
    InstallSnapshot = 3,
    Forward = 4,
    Join = 5,
}

impl Kind {
    pub fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::AppendEntries),
            2 => Some(Kind::Vote),
            3 => Some(Kind::InstallSnapshot),
            4 => Some(Kind::Forward),
            5 => Some(Kind::Join),
            _ => None,
        }
    }
}

pub const STATUS_OK: u8 = 0;
pub const STATUS_RAFT_ERROR: u8 = 1;
pub const STATUS_NOT_LEADER: u8 = 2;

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame length {length} is outside 1..={FRAME_BYTES_MAX}")]
    BadLength { length: u32 },
    #[error("unknown request kind {0}")]
    UnknownKind(u8),
    #[error("frame body does not decode: {0}")]
    Body(#[from] serde_json::Error),
}

/// Reads one frame: its kind or status byte and its body.
///
/// # Cancel safety
/// Not cancel safe: a frame partly read is lost with the future. Callers drop the connection
/// when they give up on a read (a timeout), never read from it again.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<(u8, Vec<u8>), FrameError> {
    let length = reader.read_u32().await?;
    if length == 0 || length as usize > FRAME_BYTES_MAX {
        return Err(FrameError::BadLength { length });
    }
    let tag = reader.read_u8().await?;
    let mut body = vec![0u8; length as usize - 1];
    reader.read_exact(&mut body).await?;
    Ok((tag, body))
}

/// Writes one frame and flushes it.
///
/// # Cancel safety
/// Not cancel safe: a frame partly written leaves the stream mid-frame; drop the connection.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    tag: u8,
    body: &[u8],
) -> Result<(), FrameError> {
    let length = body.len() + 1;
    if length > FRAME_BYTES_MAX {
        return Err(FrameError::BadLength {
            length: u32::try_from(length).unwrap_or(u32::MAX),
        });
    }
    let mut bytes = Vec::with_capacity(4 + length);
    bytes.extend_from_slice(&(length as u32).to_be_bytes());
    bytes.push(tag);
    bytes.extend_from_slice(body);
    writer.write_all(&bytes).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_lengths_are_refused() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, Kind::Vote as u8, b"{}")
            .await
            .expect("write");
        assert_eq!(&bytes[..5], &[0, 0, 0, 3, 2]);
        let (tag, body) = read_frame(&mut bytes.as_slice()).await.expect("read");
        assert_eq!(
            (Kind::from_byte(tag), body.as_slice()),
            (Some(Kind::Vote), &b"{}"[..])
        );
        for length in [0u32, FRAME_BYTES_MAX as u32 + 1, u32::MAX] {
            let mut bad = length.to_be_bytes().to_vec();
            bad.push(1);
            let error = read_frame(&mut bad.as_slice()).await.expect_err("refused");
            assert!(matches!(error, FrameError::BadLength { .. }), "{error}");
        }
        // A frame cut short is an I/O error, not a hang or a panic.
        assert!(read_frame(&mut &bytes[..4]).await.is_err());
        assert_eq!(Kind::from_byte(9), None);
    }
}
