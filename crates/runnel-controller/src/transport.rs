//! How controllers reach each other: a byte stream per peer, opened by address, and a listener
//! that accepts them. The product runs on TCP ([`Tcp`]); a simulation can run the same quorum
//! code on a simulated network by implementing [`Transport`] for it. Frames on the streams are
//! [`crate::frame`]'s either way.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// A network the quorum's RPCs travel on.
pub trait Transport: Clone + Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static;
    type Listener: Send + Sync + 'static;

    /// Opens a stream to `addr` (`host:port`, as the voters name it).
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Waits for the next incoming stream and its peer's address.
    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
}

/// TCP from tokio, with Nagle off: small frames (votes, heartbeats) must not wait.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tcp;

impl Transport for Tcp {
    type Stream = TcpStream;
    type Listener = TcpListener;

    async fn connect(&self, addr: &str) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }
}
