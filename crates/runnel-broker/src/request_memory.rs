//! The broker-wide bound on request bytes in flight: `queued.max.request.bytes`, Kafka's
//! `MemoryPool` under its SocketServer.
//!
//! A connection reserves a frame's announced size here after reading its size prefix and
//! before reading (and allocating) its body; the [`Reservation`] travels with the request and
//! is released when its response has been written or the connection closes. A connection that
//! cannot get memory waits (Kafka mutes the channel): it reads nothing more until memory is
//! released, and is never closed for it.
//!
//! Why the whole announced size up front, as Kafka does: a reserved frame can always be read to
//! its end, so reservations never deadlock. Reserving as bytes arrive would let many partly
//! received frames fill the pool with none able to finish.
//!
//! Invariants: reserved bytes ≤ the capacity, except that a frame is always admitted into an
//! empty pool (so a frame up to `socket.request.max.bytes` ≤ capacity, checked at config load,
//! can always be read eventually). Frames above [`HEADROOM_FRAME_BYTES_MAX`] may not use the
//! last [`HEADROOM_FRACTION`] of the pool, so stalled giant frames cannot lock out the small
//! requests of real clients (metadata, heartbeats, offset commits, ordinary produces).
//! Waiters are not served in order: any waiter whose frame fits takes the memory, so a small
//! request never queues behind a large one. Departure from Kafka: its pool has no headroom.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The largest frame that may use the pool's headroom.
pub const HEADROOM_FRAME_BYTES_MAX: usize = 1 << 20;
/// The share of the pool (1/n) kept for frames up to [`HEADROOM_FRAME_BYTES_MAX`].
pub const HEADROOM_FRACTION: usize = 8;

/// Request memory shared by every connection of a broker.
pub struct RequestMemoryPool {
    /// `None`: unbounded (`queued.max.request.bytes` ≤ 0, Kafka's `MemoryPool.NONE`).
    capacity_bytes: Option<usize>,
    reserved_bytes: Mutex<usize>,
    released: Notify,
    /// Mirrors of the state above for `/metrics`.
    reserved_gauge: AtomicU64,
    waiting_gauge: AtomicU64,
}

/// Bytes held for one frame; released when dropped.
pub struct Reservation {
    pool: Arc<RequestMemoryPool>,
    bytes: usize,
}

impl RequestMemoryPool {
    pub fn new(capacity_bytes: Option<usize>) -> Arc<RequestMemoryPool> {
        Arc::new(RequestMemoryPool {
            capacity_bytes,
            reserved_bytes: Mutex::new(0),
            released: Notify::new(),
            reserved_gauge: AtomicU64::new(0),
            waiting_gauge: AtomicU64::new(0),
        })
    }

    /// Reserves `bytes`, waiting until they fit.
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is reserved unless the returned reservation is.
    pub async fn reserve(self: &Arc<Self>, bytes: usize) -> Reservation {
        if let Some(reservation) = self.try_reserve(bytes) {
            return reservation;
        }
        self.waiting_gauge.fetch_add(1, Ordering::Relaxed);
        let _waiting = WaitingGuard(self);
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between the check and the wait wakes us.
            released.as_mut().enable();
            if let Some(reservation) = self.try_reserve(bytes) {
                return reservation;
            }
            released.await;
        }
    }

    fn try_reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        let mut reserved = self.lock();
        let fits = match self.capacity_bytes {
            None => true,
            Some(capacity) => {
                let limit = if bytes <= HEADROOM_FRAME_BYTES_MAX {
                    capacity
                } else {
                    capacity - capacity / HEADROOM_FRACTION
                };
                *reserved == 0 || reserved.saturating_add(bytes) <= limit
            }
        };
        if !fits {
            return None;
        }
        *reserved = reserved.saturating_add(bytes);
        self.reserved_gauge
            .store(*reserved as u64, Ordering::Relaxed);
        Some(Reservation {
            pool: Arc::clone(self),
            bytes,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        // The guarded value is a plain counter; a panic elsewhere cannot leave it half-updated.
        self.reserved_bytes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes reserved now.
    pub fn reserved_bytes(&self) -> u64 {
        self.reserved_gauge.load(Ordering::Relaxed)
    }

    /// Connections waiting for memory now.
    pub fn waiting(&self) -> u64 {
        self.waiting_gauge.load(Ordering::Relaxed)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.pool.lock();
        *reserved = reserved.saturating_sub(self.bytes);
        self.pool
            .reserved_gauge
            .store(*reserved as u64, Ordering::Relaxed);
        drop(reserved);
        self.pool.released.notify_waiters();
    }
}

struct WaitingGuard<'a>(&'a RequestMemoryPool);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.waiting_gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_frame_waits_until_memory_is_released() {
        let pool = RequestMemoryPool::new(Some(8 << 20));
        let first = pool.reserve(4 << 20).await;
        let second = pool.reserve(2 << 20).await;
        assert_eq!(pool.reserved_bytes(), 6 << 20);
        // 6 + 4 MiB exceeds the large-frame limit (7 MiB): it waits for a release.
        let waiting = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.reserve(4 << 20).await }
        });
        tokio::time::timeout(Duration::from_secs(10), async {
            while pool.waiting() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the third frame waits");
        // A small frame still fits in the headroom while the large one waits.
        let small = pool.reserve(512 << 10).await;
        drop(first);
        let third = waiting.await.expect("reserved");
        drop((second, small));
        assert_eq!(pool.reserved_bytes(), 4 << 20);
        drop(third);
        assert_eq!(pool.reserved_bytes(), 0);
    }

    #[tokio::test]
    async fn an_empty_pool_admits_any_frame_and_no_bound_admits_all() {
        let pool = RequestMemoryPool::new(Some(1 << 20));
        let whole = pool.reserve(1 << 20).await;
        assert_eq!(pool.reserved_bytes(), 1 << 20);
        drop(whole);
        let unbounded = RequestMemoryPool::new(None);
        let _a = unbounded.reserve(usize::MAX / 2).await;
        let _b = unbounded.reserve(usize::MAX / 2).await;
    }
}
