//! Sending records from the segment files: a Fetch response's record bytes are never read
//! into the broker's memory. The response is encoded around them (`runnel-protocol`'s
//! `fetch_response`), and each partition's range of its segment file goes to the socket with
//! `sendfile(2)`: the kernel copies page cache to socket buffer, and the broker's CPU and
//! memory do not grow with the bytes consumers read.
//!
//! A range is planned under the partition's lock and sent after it is released. That is safe
//! because a segment file is only appended to, or replaced whole (compaction, retention:
//! the old file is unlinked, and the open handle in the range keeps its bytes readable). A
//! range that the file no longer holds (a truncation, which only replication does) cannot be
//! sent after its length was promised: the connection is closed with an error.
//!
//! Elsewhere than Linux, the range is read with `pread` and written.

use std::fs::File;
use std::io;
use std::sync::Arc;

use runnel_protocol::fetch_response::RecordsLength;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Bytes of a segment file: whole record batches. An empty range holds no file: a fetch of
/// many caught-up partitions keeps no descriptors open while its response waits.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Option<Arc<File>>,
    pub position: u64,
    pub length: usize,
    /// Offsets the range's batches span (next offset minus the first batch's base offset):
    /// the records sent, for `runnel_partition_records_out_total`.
    pub offsets: u64,
}

impl RecordsLength for FileRange {
    fn records_len(&self) -> usize {
        self.length
    }
}

impl FileRange {
    /// Reads the range into memory (for callers that need the bytes themselves).
    pub fn read_bytes(&self) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut bytes = vec![0u8; self.length];
        if let Some(file) = &self.file {
            file.read_exact_at(&mut bytes, self.position)?;
        }
        Ok(bytes)
    }
}

/// Sends `range` to `stream`, whose buffered bytes the caller has flushed.
///
/// # Cancel safety
/// Not cancel safe: a cancelled send leaves part of the range on the socket. The writer only
/// drops it with the connection.
#[cfg(target_os = "linux")]
pub async fn send_range(stream: &TcpStream, range: &FileRange) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    let Some(file) = range.file.as_ref().filter(|_| range.length > 0) else {
        return Ok(());
    };
    let end = range.position + range.length as u64;
    let mut offset = libc::off_t::try_from(range.position)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
    while (offset as u64) < end {
        let remaining = (end - offset as u64) as usize;
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the duration of the call (the socket is
            // borrowed, the file held by its `Arc`), and `offset` is a valid `off_t` that
            // sendfile updates in place.
            let sent = unsafe {
                libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut offset, remaining)
            };
            if sent < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(sent as usize)
            }
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the segment file no longer holds the range being sent",
                ))
            }
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Sends `range` to `stream` by reading it first (no `sendfile` here).
#[cfg(not(target_os = "linux"))]
pub async fn send_range(stream: &TcpStream, range: &FileRange) -> io::Result<()> {
    let bytes = range.read_bytes()?;
    let mut written = 0;
    while written < bytes.len() {
        stream.writable().await?;
        match stream.try_write(&bytes[written..]) {
            Ok(n) => written += n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Writes a response frame's pieces: encoded bytes through `writer`'s buffer, records with
/// [`send_range`] after flushing it.
pub async fn write_pieces(
    writer: &mut tokio::io::BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    pieces: Vec<runnel_protocol::fetch_response::Piece<FileRange>>,
) -> io::Result<()> {
    use runnel_protocol::fetch_response::Piece;
    for piece in pieces {
        match piece {
            Piece::Encoded(bytes) => writer.write_all(&bytes).await?,
            Piece::Records(range) => {
                writer.flush().await?;
                send_range(writer.get_ref().as_ref(), &range).await?;
            }
        }
    }
    Ok(())
}
