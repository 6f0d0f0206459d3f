//! One client connection: a reader that decodes and dispatches requests in order, and a
//! writer that sends the replies in the same order.
//!
//! Bad input closes the connection with a WARN line and touches nothing else: a size prefix
//! ≤ 0 or above `socket.request.max.bytes`, a header that does not decode, a body that does
//! not decode. An unknown API key or an unserved version is answered `UNSUPPORTED_VERSION`
//! (ApiVersions: the v0 response listing our versions) and the connection stays open.
//!
//! Bounds: at most [`IN_FLIGHT_REQUESTS_MAX`] requests are dispatched but not yet answered per
//! connection (the reader stops reading past that). A frame's announced size is reserved from
//! the broker's request memory (`queued.max.request.bytes`, [`crate::request_memory`]) before
//! its body is read; the reader waits, reading nothing, until it gets it, and the reservation
//! is released once the response has been written (or the connection closed). The body is
//! read into a buffer from the broker's cache of receive buffers ([`crate::receive_buffers`]),
//! reused without zeroing and given back when the frame's last bytes drop; a new buffer's pages
//! become resident only as its bytes arrive. What the connection's read buffer already holds
//! of the body is copied out of it, the rest is read from the socket straight into the frame. A connection idle for `connections.max.idle.ms`
//! ([`crate::idle_expiry`]) is closed, also one stalled inside a frame.
//!
//! Ends: a peer that closes or resets the connection between frames ends it quietly (DEBUG);
//! one that ends inside a frame is bad input (WARN, "connection ended inside a frame").
//! Once the peer has closed its end, or sent bad input, the responses still owed are dropped,
//! not waited for (Kafka drops responses for a closed channel): a parked request (a fetch's
//! `max_wait_ms`, a JoinGroup's rebalance timeout) must not keep a gone client's connection,
//! task and buffers alive.
//! At shutdown the reader stops and the writer still sends the responses owed; parked fetches
//! answer at once ([`crate::api`]'s fetch watches [`Broker::stopping`]). Departure from Kafka:
//! its socket server closes such connections unanswered when it stops.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use runnel_protocol::api_versions::is_served;
use runnel_protocol::frame::{check_request_size, FrameError};
use runnel_protocol::header::{self, CodecError, RawRequestHeader};
use runnel_protocol::messages::ApiKey;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::api::{self, Reply, Request};
use crate::broker::Broker;
use crate::idle_expiry::{Activity, ActivityReader};
use crate::receive_buffers::{FrameBuffer, ReceiveBufferPool};
use crate::request_memory::{RequestMemoryPool, Reservation};
use crate::sasl::{SaslState, Step};
use crate::zero_copy;

/// Requests read but not yet answered, per connection.
pub const IN_FLIGHT_REQUESTS_MAX: usize = 64;
const READ_BUFFER_BYTES: usize = 64 * 1024;
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// How long a connection refused after a response (a failed authentication) waits for the
/// peer to close, so that the response is not lost to a reset.
const LINGER_AFTER_REFUSAL: Duration = Duration::from_secs(5);

/// Why a connection was closed by the broker.
#[derive(Debug, Error)]
enum ConnectionError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Codec(#[from] CodecError),
    #[error("connection ended inside a frame: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves one connection until the peer closes it, it misbehaves, it is idle for
/// `connections.max.idle.ms`, or the broker shuts down.
pub(crate) async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
    }
    let activity = Activity::new();
    let (read_half, write_half) = stream.into_split();
    let mut reader = BufReader::with_capacity(
        READ_BUFFER_BYTES,
        ActivityReader::new(read_half, Arc::clone(&activity)),
    );
    let (replies, pending) = mpsc::channel(IN_FLIGHT_REQUESTS_MAX);
    let writer = tokio::spawn(write_replies(
        Arc::clone(&broker),
        write_half,
        pending,
        peer,
        Arc::clone(&activity),
    ));
    let request_bytes_max = broker.config.socket_request_max_bytes;
    let idle_max = broker
        .config
        .connections_max_idle_ms
        .map(Duration::from_millis);
    let users = broker.config.sasl_plain_users.as_ref();
    let mut sasl = SaslState::new(users.is_some());
    let mut linger = false;
    let mut idle = false;
    // The peer closed its end or sent what cannot be served: as in Kafka, responses still
    // owed are dropped instead of waited for (a parked JoinGroup can wait out a rebalance
    // timeout of days; waiting would hold this connection's buffers as long).
    let mut peer_gone = false;
    let pools = FramePools {
        memory: &broker.request_memory,
        buffers: &broker.receive_buffers,
    };
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader, &pools, request_bytes_max, peer) => frame,
            () = crate::server::stopped(&mut shutdown) => break,
            () = activity.expired(idle_max) => {
                idle = true;
                break;
            }
        };
        let received = Instant::now();
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                peer_gone = true;
                break;
            }
            Err(error) => {
                closed_for_bad_input(&broker, peer, &error);
                peer_gone = true;
                break;
            }
        };
        let (mut reply, then_close) =
            match answer(&broker, &mut sasl, users, frame.bytes, frame.buffer, peer) {
                Ok(Ok(answered)) => answered,
                Ok(Err(refusal)) => {
                    tracing::warn!(%peer, %refusal, "closing connection");
                    break;
                }
                Err(error) => {
                    closed_for_bad_input(&broker, peer, &error);
                    peer_gone = true;
                    break;
                }
            };
        if let Reply::Ordered(step) = &mut reply.reply {
            // The request's in-order part waits (module doc of `api`): the next request is
            // read once it is done. Its own waits are bounded by the request's timeout.
            let step = std::mem::replace(step, Box::pin(async { Ok(Reply::None) }));
            let resolved = tokio::select! {
                resolved = step => resolved,
                () = crate::server::stopped(&mut shutdown) => break,
            };
            match resolved {
                Ok(Reply::Ordered(_)) | Err(_) => {
                    tracing::error!(%peer, "could not complete a request in order; closing");
                    peer_gone = true;
                    break;
                }
                Ok(resolved) => reply.reply = resolved,
            }
        }
        reply.memory = Some(frame.memory);
        let sent = tokio::select! {
            sent = replies.send((received, reply)) => sent.is_ok(),
            () = activity.expired(idle_max) => {
                idle = true;
                false
            }
        };
        if !sent {
            break;
        }
        if then_close {
            // As Kafka does, hold the connection open a moment after the refusal: a client
            // then reads the answer before it sees the connection end.
            let delay = Duration::from_millis(broker.config.failed_authentication_delay_ms);
            let pause = Answer {
                request: None,
                reply: Reply::Pending(Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    Ok(Bytes::new())
                })),
                memory: None,
                handled: None,
            };
            let _ = replies.send((received, pause)).await;
            linger = true;
            break;
        }
    }
    drop(replies);
    if idle {
        // The writer may be stuck on a peer that reads nothing: it goes too.
        tracing::debug!(%peer, "closing a connection idle for connections.max.idle.ms");
        broker
            .metrics
            .connections_closed_idle
            .fetch_add(1, Ordering::Relaxed);
        writer.abort();
    } else if peer_gone {
        writer.abort();
    }
    if let Err(error) = writer.await {
        if error.is_panic() {
            tracing::error!(%peer, "connection writer panicked");
        }
    }
    if linger {
        // The last response (a refusal) is on its way, followed by our FIN. Closing with bytes
        // of the peer's still unread would reset the connection and could destroy that
        // response before the peer reads it: read and drop what the peer sends until it closes.
        let mut scratch = [0u8; 4096];
        let drained = async {
            while let Ok(read) = reader.read(&mut scratch).await {
                if read == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_AFTER_REFUSAL, drained).await;
    }
}

fn closed_for_bad_input(broker: &Broker, peer: SocketAddr, error: &ConnectionError) {
    tracing::warn!(%peer, %error, "closing connection");
    broker
        .metrics
        .connections_closed_bad_input
        .fetch_add(1, Ordering::Relaxed);
}

/// A request frame, its buffer and the request memory held for it.
struct Frame {
    bytes: Bytes,
    buffer: FrameBuffer,
    memory: Reservation,
}

/// Where a frame's memory comes from: its reservation, then its buffer.
struct FramePools<'a> {
    memory: &'a Arc<RequestMemoryPool>,
    buffers: &'a Arc<ReceiveBufferPool>,
}

/// Reads one frame. `Ok(None)` is an end of the connection between frames: a clean close, or
/// a reset or other error before the first byte of a frame (logged at DEBUG, as Kafka's
/// Selector logs a disconnection). Once a frame has begun, its end is an error.
///
/// # Cancel safety
/// Not cancel safe: a cancelled read loses a partly read frame. It is only cancelled when the
/// connection closes anyway.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    pools: &FramePools<'_>,
    request_bytes_max: usize,
    peer: SocketAddr,
) -> Result<Option<Frame>, ConnectionError> {
    let mut size = [0u8; 4];
    match reader.read(&mut size[..1]).await {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(error) => {
            tracing::debug!(%peer, %error, "connection ended between frames");
            return Ok(None);
        }
    }
    reader.read_exact(&mut size[1..]).await?;
    let length = check_request_size(i32::from_be_bytes(size), request_bytes_max)?;
    // Muted until the pool has room: nothing more is read from this peer meanwhile.
    let reservation = pools.memory.reserve(length).await;
    let mut body = pools.buffers.take(length);
    // What the read buffer already holds, then the rest straight from the socket into the
    // frame: a body read through the read buffer would be copied once more.
    let buffered = reader.buffer();
    let taken = body.extend_from_slice(&buffered[..buffered.len().min(length)]);
    reader.consume(taken);
    body.read_from(reader.get_mut(), length).await?;
    let (bytes, buffer) = body.freeze_shared();
    Ok(Some(Frame {
        bytes,
        buffer,
        memory: reservation,
    }))
}

/// What to send for one frame and whether to close the connection after it, or (`Err`) why
/// to close it at once (a request before SASL authentication, a failed v0 token).
fn answer(
    broker: &Arc<Broker>,
    sasl: &mut SaslState,
    users: Option<&crate::sasl::PlainUsers>,
    mut frame: Bytes,
    buffer: FrameBuffer,
    peer: SocketAddr,
) -> Result<Result<(Answer, bool), String>, ConnectionError> {
    let ready = |bytes| Answer {
        request: None,
        reply: Reply::Ready(bytes),
        memory: None,
        handled: None,
    };
    Ok(match sasl.step(users, &mut frame)? {
        Step::Dispatch => Ok((handle_frame(broker, frame, buffer, peer)?, false)),
        Step::Respond(bytes) => Ok((ready(bytes), false)),
        Step::RespondAndClose(bytes) => Ok((ready(bytes), true)),
        Step::Close(reason) => Err(reason),
    })
}

/// A reply on its way to the writer: which API and version it answers (for the metrics), and
/// the request memory its frame holds until the reply is written.
struct Answer {
    request: Option<(ApiKey, i16)>,
    reply: Reply,
    memory: Option<Reservation>,
    /// When its handler started and returned (for the request's stages).
    handled: Option<(Instant, Instant)>,
}

fn handle_frame(
    broker: &Arc<Broker>,
    mut frame: Bytes,
    buffer: FrameBuffer,
    peer: SocketAddr,
) -> Result<Answer, ConnectionError> {
    let raw = RawRequestHeader::peek(&frame)?;
    let api = ApiKey::try_from(raw.api_key).ok();
    if !is_served(raw.api_key, raw.api_version) {
        if api == Some(ApiKey::ApiVersions) {
            let response = api::unsupported_api_versions_response(raw.correlation_id)?;
            return Ok(Answer {
                request: None,
                reply: Reply::Ready(response),
                memory: None,
                handled: None,
            });
        }
        tracing::warn!(
            api_key = raw.api_key,
            api_version = raw.api_version,
            "request for an unserved API or version; answering UNSUPPORTED_VERSION"
        );
        return Ok(Answer {
            request: None,
            reply: Reply::Ready(header::encode_unsupported_version(raw.correlation_id)),
            memory: None,
            handled: None,
        });
    }
    let api = api.expect("a served key is a known key");
    let started = Instant::now();
    let header = header::decode_request_header(api, raw.api_version, &mut frame)?;
    let request = Request {
        api,
        version: raw.api_version,
        header,
        body: frame,
        frame: Some(buffer),
        peer,
        figures: broker.metrics.api(api),
    };
    let reply = api::dispatch(broker, request)?;
    Ok(Answer {
        request: Some((api, raw.api_version)),
        reply,
        memory: None,
        handled: Some((started, Instant::now())),
    })
}

async fn write_replies(
    broker: Arc<Broker>,
    write_half: OwnedWriteHalf,
    mut pending: mpsc::Receiver<(Instant, Answer)>,
    peer: SocketAddr,
    activity: Arc<Activity>,
) {
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, write_half);
    // Each response's memory (`_memory`) is released at the end of its iteration.
    while let Some((received, answer)) = pending.recv().await {
        let taken = Instant::now();
        let Answer {
            request,
            reply,
            memory: _memory,
            handled,
        } = answer;
        let mut clock = StageClock {
            received,
            handled,
            taken,
            ready: taken,
        };
        // Responses already written go out before waiting on one that is not ready (a
        // long-poll fetch, a produce waiting for fsync): they must not wait behind it.
        let waits = matches!(reply, Reply::Pending(_) | Reply::PendingPieces(_));
        if waits && !writer.buffer().is_empty() && writer.flush().await.is_err() {
            return;
        }
        let bytes = match reply {
            Reply::Ready(bytes) => bytes,
            Reply::None => {
                clock.answered(&broker, request);
                continue;
            }
            Reply::Ordered(_) => {
                tracing::error!(%peer, "a request reached the writer before its in-order part");
                break;
            }
            Reply::Pending(response) => match waited_on(&activity, response).await {
                Ok(bytes) => {
                    clock.ready = Instant::now();
                    bytes
                }
                Err(error) => {
                    tracing::error!(%peer, %error, "could not encode a response; closing");
                    break;
                }
            },
            Reply::PendingPieces(response) => {
                let pieces = match waited_on(&activity, response).await {
                    Ok(pieces) => pieces,
                    Err(error) => {
                        tracing::error!(%peer, %error, "could not encode a response; closing");
                        break;
                    }
                };
                clock.ready = Instant::now();
                if let Err(error) = zero_copy::write_pieces(&mut writer, pieces).await {
                    if error.kind() == std::io::ErrorKind::UnexpectedEof {
                        tracing::error!(%peer, %error, "could not send fetched records; closing");
                    }
                    return;
                }
                activity.touch();
                if pending.is_empty() && writer.flush().await.is_err() {
                    return;
                }
                clock.answered(&broker, request);
                activity.touch();
                continue;
            }
        };
        if writer.write_all(&bytes).await.is_err() {
            return;
        }
        activity.touch();
        if pending.is_empty() && writer.flush().await.is_err() {
            return;
        }
        clock.answered(&broker, request);
        activity.touch();
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

/// The instants of one request's way through the connection, from which its stages are
/// counted (`docs/metrics.md`, "Request stages").
struct StageClock {
    /// Its frame was read.
    received: Instant,
    /// Its handler started and returned (`None` for answers no handler gave).
    handled: Option<(Instant, Instant)>,
    /// The writer took its reply up.
    taken: Instant,
    /// The reply's bytes were ready (after the wait, for a pending one).
    ready: Instant,
}

impl StageClock {
    /// Counts the request as answered now, with its stages.
    fn answered(&self, broker: &Broker, request: Option<(ApiKey, i16)>) {
        let Some((api, version)) = request else {
            return;
        };
        let now = Instant::now();
        let (started, handled) = self.handled.unwrap_or((self.received, self.received));
        let stages = crate::metrics::RequestStages {
            queue: started.saturating_duration_since(self.received),
            local: handled.saturating_duration_since(started),
            response_queue: self.taken.saturating_duration_since(handled),
            remote: self.ready.saturating_duration_since(self.taken),
            send: now.saturating_duration_since(self.ready),
        };
        broker.metrics.request_answered(
            api,
            version,
            now.saturating_duration_since(self.received),
            &stages,
        );
    }
}

/// Awaits a response the broker owes (a long-poll, an fsync): the connection is not idle
/// meanwhile.
async fn waited_on<T>(
    activity: &Arc<Activity>,
    response: impl std::future::Future<Output = T>,
) -> T {
    let _awaiting = activity.awaiting_broker();
    response.await
}
