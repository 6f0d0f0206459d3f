//! When a connection is idle: `connections.max.idle.ms`, as Kafka's Selector expires them.
//!
//! Kafka's Selector marks a connection active whenever its socket is ready for a read or a
//! write, and closes the one least recently active once that was longer ago than
//! `connections.max.idle.ms`. Here a connection's [`Activity`] records the last time bytes were
//! read from it (every read, through [`ActivityReader`], so also bytes of a frame that never
//! completes) or a response was written to it (each write the writer completes). A connection
//! that stalls inside a frame, waits for request memory, or stops reading its responses is
//! therefore idle once that time is past.
//!
//! Departure from Kafka: a connection whose writer is waiting on the broker (a parked
//! long-poll fetch, a produce waiting for its fsync) is not idle, whatever the time. Kafka's
//! Selector has no such exception and would close it when `connections.max.idle.ms` is set
//! below the request's own wait; the wait here is the broker's, not the peer's, and is bounded
//! (a fetch's by its `max_wait_ms` ≤ 60 s).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

/// The last activity of one connection, shared by its reader and its writer.
pub struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last byte read or response written.
    last_ms: AtomicU64,
    /// Responses the writer is waiting on the broker for.
    awaiting_broker: AtomicUsize,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            awaiting_broker: AtomicUsize::new(0),
        })
    }

    /// Records activity now.
    pub fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// Marks a response the writer waits on the broker for, until the guard is dropped.
    pub fn awaiting_broker(self: &Arc<Self>) -> AwaitingBroker {
        self.awaiting_broker.fetch_add(1, Ordering::Relaxed);
        AwaitingBroker(Arc::clone(self))
    }

    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Resolves once the connection has been idle for `idle_max` (never with `None`).
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads the activity and sleeps.
    pub async fn expired(&self, idle_max: Option<Duration>) {
        let Some(idle_max) = idle_max else {
            return std::future::pending().await;
        };
        loop {
            let due = self.last() + idle_max;
            if Instant::now() >= due {
                if self.awaiting_broker.load(Ordering::Relaxed) == 0 {
                    return;
                }
                // Not idle while the broker owes a response; look again a period later.
                tokio::time::sleep(idle_max).await;
                continue;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// A response being waited for on the broker's side; see [`Activity::awaiting_broker`].
pub struct AwaitingBroker(Arc<Activity>);

impl Drop for AwaitingBroker {
    fn drop(&mut self) {
        self.0.touch();
        self.0.awaiting_broker.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A reader that records each read that returns bytes as activity.
pub struct ActivityReader<R> {
    inner: R,
    activity: Arc<Activity>,
}

impl<R> ActivityReader<R> {
    pub fn new(inner: R, activity: Arc<Activity>) -> Self {
        ActivityReader { inner, activity }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ActivityReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_after_the_last_activity_but_not_while_the_broker_owes_a_response() {
        let activity = Activity::new();
        let idle_max = Some(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(4)).await;
        activity.touch();
        let started = Instant::now();
        activity.expired(idle_max).await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));

        let waiting = activity.awaiting_broker();
        let expiry = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move { activity.expired(idle_max).await }
        });
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert!(!expiry.is_finished());
        drop(waiting);
        let answered = Instant::now();
        expiry.await.expect("expired");
        assert!(answered.elapsed() <= Duration::from_secs(10));
    }
}
