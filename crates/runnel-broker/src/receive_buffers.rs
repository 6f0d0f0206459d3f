//! The broker-wide cache of request receive buffers: the memory a connection reads a frame's
//! body into, reused from frame to frame instead of allocated (and its pages faulted in) for
//! each one.
//!
//! Owns idle buffers only. A buffer in use belongs to its frame: [`ReceiveBuffer::freeze`]
//! turns it into the frame's [`Bytes`] (`Bytes::from_owner`), and when the last `Bytes` that
//! refers to it drops, the buffer comes back here, or is freed if the cache is full. How many
//! bytes are in use at once is bounded elsewhere, by the request memory reserved before a body
//! is read ([`crate::request_memory`], `queued.max.request.bytes`).
//!
//! Size classes: powers of four from [`SIZE_CLASS_BYTES_MIN`] to [`SIZE_CLASS_BYTES_MAX`]; a
//! frame takes the smallest class that holds it. A frame larger than the largest class gets a
//! one-off allocation of its exact size, freed with its frame and never cached.
//!
//! Bounds: the idle buffers cached number at most `cached_bytes_max` bytes of capacity in all
//! ([`CACHED_BYTES_MAX`] for a broker), and those of one class at most a quarter of that
//! (so one class cannot crowd out the others). A buffer that would pass either is freed.
//!
//! A frame's bytes can be written in place once nothing else refers to them: the produce
//! path appends a batch from the frame itself, patching its base offset there, instead of
//! copying it first ([`FrameBuffer::bytes_mut`]).
//!
//! A reused buffer is not zeroed: its length is reset to 0 and only bytes read from the socket
//! become visible ([`ReceiveBuffer::read_from`] reads into the spare capacity), so no frame
//! can see another's bytes.

use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The bytes of capacity a broker's cache may hold in idle buffers.
pub const CACHED_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The smallest size class.
pub const SIZE_CLASS_BYTES_MIN: usize = 4 * 1024;
/// The largest size class; a larger frame is allocated for itself alone.
pub const SIZE_CLASS_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Classes 4 KiB, 16 KiB, 64 KiB, 256 KiB, 1 MiB, 4 MiB, 16 MiB.
const SIZE_CLASS_COUNT: usize = 7;
/// The share (1/n) of `cached_bytes_max` one class may hold.
const CLASS_SHARE: usize = 4;

const _: () = assert!(SIZE_CLASS_BYTES_MIN << (2 * (SIZE_CLASS_COUNT - 1)) == SIZE_CLASS_BYTES_MAX);

/// Idle receive buffers shared by every connection of a broker.
pub struct ReceiveBufferPool {
    cached_bytes_max: usize,
    state: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    /// Idle buffers per class, each of exactly its class's capacity and length 0.
    classes: [Vec<Vec<u8>>; SIZE_CLASS_COUNT],
    /// Capacity of all idle buffers together.
    bytes: usize,
}

/// A buffer to read one frame into; returns to its pool when dropped (also as the owner of
/// the frozen [`Bytes`]).
pub struct ReceiveBuffer {
    bytes: Vec<u8>,
    /// The pool and class it returns to; `None` for a one-off buffer.
    home: Option<(Arc<ReceiveBufferPool>, usize)>,
}

impl ReceiveBufferPool {
    pub fn new(cached_bytes_max: usize) -> Arc<ReceiveBufferPool> {
        Arc::new(ReceiveBufferPool {
            cached_bytes_max,
            state: Mutex::new(Cached::default()),
        })
    }

    /// A buffer with room for `length` bytes, empty: a cached one of the smallest class that
    /// holds `length` if there is one, else a new one (of the class's capacity, or of exactly
    /// `length` above the largest class). New capacity is not touched: its pages become
    /// resident only as bytes are read into them.
    pub fn take(self: &Arc<Self>, length: usize) -> ReceiveBuffer {
        let Some(class) = class_of(length) else {
            return ReceiveBuffer {
                bytes: Vec::with_capacity(length),
                home: None,
            };
        };
        let cached = {
            let mut state = self.state.lock().expect("receive buffer lock poisoned");
            let cached = state.classes[class].pop();
            if cached.is_some() {
                state.bytes -= class_bytes(class);
            }
            cached
        };
        ReceiveBuffer {
            bytes: cached.unwrap_or_else(|| Vec::with_capacity(class_bytes(class))),
            home: Some((Arc::clone(self), class)),
        }
    }

    /// Capacity of the idle buffers cached now, for `/metrics`.
    pub fn cached_bytes(&self) -> usize {
        self.state
            .lock()
            .expect("receive buffer lock poisoned")
            .bytes
    }

    /// Idle buffers cached now.
    pub fn cached_count(&self) -> usize {
        let state = self.state.lock().expect("receive buffer lock poisoned");
        state.classes.iter().map(Vec::len).sum()
    }

    /// Caches `bytes` as an idle buffer of `class`, or frees it if that would pass a bound.
    fn give_back(&self, class: usize, mut bytes: Vec<u8>) {
        let capacity = class_bytes(class);
        if bytes.capacity() != capacity {
            // Only buffers of the class's exact capacity are cached (the pool made it so;
            // this keeps the byte count true whatever happened to the Vec).
            return;
        }
        bytes.clear();
        let mut state = self.state.lock().expect("receive buffer lock poisoned");
        let class_cached = state.classes[class].len() * capacity;
        if state.bytes + capacity > self.cached_bytes_max
            || class_cached + capacity > self.cached_bytes_max / CLASS_SHARE
        {
            return;
        }
        state.bytes += capacity;
        state.classes[class].push(bytes);
    }
}

impl ReceiveBuffer {
    /// Reads from `reader` until the buffer holds `length` bytes (at most its capacity),
    /// straight into its spare capacity: nothing is zeroed first.
    ///
    /// # Cancel safety
    /// Cancel safe in that the bytes read so far stay in the buffer; a frame is only ever
    /// read to its end or abandoned with its connection.
    pub async fn read_from<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        length: usize,
    ) -> std::io::Result<()> {
        let length = length.min(self.bytes.capacity());
        while self.bytes.len() < length {
            let remaining = length - self.bytes.len();
            // `limit` keeps the read inside the capacity, so the Vec never grows.
            let read = reader
                .read_buf(&mut (&mut self.bytes).limit(remaining))
                .await?;
            if read == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// Appends as much of `bytes` as fits in the buffer's capacity; returns how much.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> usize {
        let taken = bytes.len().min(self.bytes.capacity() - self.bytes.len());
        self.bytes.extend_from_slice(&bytes[..taken]);
        taken
    }

    /// The bytes read so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// The frame's bytes; the buffer goes back to its pool when the last clone or slice of
    /// them drops.
    pub fn freeze(self) -> Bytes {
        self.freeze_shared().0
    }

    /// The frame's bytes, and a handle to their buffer that can write them once every
    /// [`Bytes`] referring to them has dropped. The buffer goes back to its pool when both
    /// the handle and the last `Bytes` have dropped.
    pub fn freeze_shared(self) -> (Bytes, FrameBuffer) {
        let shared = Arc::new(self);
        let bytes = Bytes::from_owner(SharedBuffer(Arc::clone(&shared)));
        (bytes, FrameBuffer { shared })
    }
}

/// The owner of a frozen frame's [`Bytes`].
struct SharedBuffer(Arc<ReceiveBuffer>);

impl AsRef<[u8]> for SharedBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.0.bytes
    }
}

/// A handle to a frame's buffer alongside its [`Bytes`].
pub struct FrameBuffer {
    shared: Arc<ReceiveBuffer>,
}

impl FrameBuffer {
    /// The frame's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.shared.bytes
    }

    /// Whether nothing but this handle refers to the frame's bytes ([`Self::bytes_mut`] is
    /// `Some`).
    pub fn is_writable(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }

    /// The frame's bytes to write, once no [`Bytes`] refers to them any more (`None` while
    /// one does).
    pub fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        Arc::get_mut(&mut self.shared).map(|buffer| &mut buffer.bytes[..])
    }

    /// Where `part`, a slice of this frame's bytes, begins and ends in them; `None` if it is
    /// not inside them.
    pub fn range_of(&self, part: &[u8]) -> Option<std::ops::Range<usize>> {
        let frame = self.as_slice();
        let start = (part.as_ptr() as usize).checked_sub(frame.as_ptr() as usize)?;
        let end = start.checked_add(part.len())?;
        (end <= frame.len()).then_some(start..end)
    }
}

impl AsRef<[u8]> for ReceiveBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for ReceiveBuffer {
    fn drop(&mut self) {
        if let Some((pool, class)) = self.home.take() {
            pool.give_back(class, std::mem::take(&mut self.bytes));
        }
    }
}

/// The smallest class that holds `length` bytes; `None` above the largest.
fn class_of(length: usize) -> Option<usize> {
    (0..SIZE_CLASS_COUNT).find(|&class| class_bytes(class) >= length)
}

fn class_bytes(class: usize) -> usize {
    SIZE_CLASS_BYTES_MIN << (2 * class)
}

#[cfg(test)]
mod tests;
