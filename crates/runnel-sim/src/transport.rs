//! [`SimTransport`]: the quorum's [`Transport`] on turmoil's simulated TCP.
//!
//! Addresses are `host:port` with a turmoil host name (`n1:9093`), resolved by turmoil's DNS.
//! The streams carry the same frames as TCP does in the product; turmoil delivers, delays,
//! holds or drops their segments as the scenario set the links. A dropped segment is never
//! sent again (turmoil has no retransmission), so a lossy link stalls a connection until the
//! quorum's RPC timeout drops it and the next RPC reconnects.

use std::io;
use std::net::SocketAddr;

use runnel_controller::Transport;
use turmoil::net::{TcpListener, TcpStream};

/// turmoil's TCP, for code that runs inside a turmoil host.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimTransport;

impl Transport for SimTransport {
    type Stream = TcpStream;
    type Listener = TcpListener;

    async fn connect(&self, addr: &str) -> io::Result<TcpStream> {
        TcpStream::connect(addr).await
    }

    async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        listener.accept().await
    }
}
