//! The front of the gRPC and HTTP listeners: a cap on concurrent connections, TLS with a
//! handshake deadline, and a deadline for the first request's head.
//!
//! One accept loop for both ports ([`Front`]). A connection over the cap is closed at once (the
//! client sees the connection end, and retries), not queued. A TLS handshake that does not
//! finish within the handshake timeout is dropped, as is a connection whose protocol
//! preface has not arrived within the header timeout:
//!
//! - gRPC (HTTP/2): the 24-byte client preface is read here within the deadline, then
//!   replayed to tonic. A real client sends it at once; a client that connects and says
//!   nothing, or dribbles, is dropped.
//! - HTTP/1.1 (axum): hyper's own `header_read_timeout` covers every request head on the
//!   connection, the first one included; [`serve_http`] serves connections with it.
//!
//! Connections that are established hold their slot until they close; the cap bounds them.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections one listener serves at once unless configured otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// How long a TLS handshake may take unless configured otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request head (or HTTP/2's preface) may take to arrive unless configured otherwise.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Deadline for the TLS handshake, from the accept.
    pub handshake_timeout: Duration,
    /// Deadline for a request head (HTTP/1.1) or the HTTP/2 preface, from the end of the
    /// handshake.
    pub header_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }
}

/// What the front reads itself, within the header deadline, before handing a connection on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preface {
    /// Nothing: the server checks its own deadline (hyper's HTTP/1 header timeout).
    None,
    /// The HTTP/2 client preface (24 bytes).
    Http2,
}

const HTTP2_PREFACE_LEN: usize = 24;

/// A bound listener with its limits and optional TLS.
pub struct Front {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: ListenerLimits,
    preface: Preface,
    what: &'static str,
}

impl Front {
    /// `what` names the listener in logs ("gRPC", "HTTP").
    pub fn new(
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        limits: ListenerLimits,
        preface: Preface,
        what: &'static str,
    ) -> Front {
        Front {
            listener,
            tls,
            limits,
            preface,
            what,
        }
    }

    /// Accepts connections until `cancel` fires or the stream is dropped; yields those whose
    /// handshake and preface arrived in time.
    pub fn incoming(self, cancel: CancellationToken) -> ReceiverStream<io::Result<Conn>> {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(self.accept_loop(tx, cancel));
        ReceiverStream::new(rx)
    }

    async fn accept_loop(self, tx: mpsc::Sender<io::Result<Conn>>, cancel: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let setups = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tx.closed() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%error, listener = self.what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::debug!(%peer, listener = self.what, max = self.limits.max_connections, "connection refused: at the connection cap");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let tls = self.tls.clone();
            let (limits, preface, what) = (self.limits, self.preface, self.what);
            let tx = tx.clone();
            let cancel = cancel.clone();
            setups.spawn(async move {
                let setup = establish(stream, peer, permit, tls, limits, preface);
                let conn = tokio::select! {
                    _ = cancel.cancelled() => return,
                    conn = setup => conn,
                };
                match conn {
                    Ok(conn) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Err(error) => {
                        tracing::debug!(%peer, listener = what, %error, "connection dropped before its first request");
                    }
                }
            });
        }
        setups.close();
    }
}

async fn establish(
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    tls: Option<TlsAcceptor>,
    limits: ListenerLimits,
    preface: Preface,
) -> io::Result<Conn> {
    let local = stream.local_addr()?;
    let io = match tls {
        None => Io::Plain(stream),
        Some(acceptor) => {
            let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(tls)) => Io::Tls(Box::new(tls)),
                Ok(Err(error)) => return Err(error),
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the TLS handshake did not finish in time",
                    ))
                }
            }
        }
    };
    let mut conn = Conn {
        io,
        replay: Vec::new(),
        replayed: 0,
        local,
        peer,
        _slot: permit,
    };
    if preface == Preface::Http2 {
        let mut head = vec![0u8; HTTP2_PREFACE_LEN];
        match tokio::time::timeout(limits.header_timeout, conn.read_exact(&mut head)).await {
            Ok(Ok(_)) => conn.replay = head,
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the HTTP/2 preface did not arrive in time",
                ))
            }
        }
    }
    Ok(conn)
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An established connection: plaintext or TLS, holding its slot under the cap until dropped.
pub struct Conn {
    io: Io,
    /// Bytes the front read itself (the HTTP/2 preface), given back first.
    replay: Vec<u8>,
    replayed: usize,
    local: SocketAddr,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
}

impl Conn {
    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: Some(self.local),
            remote_addr: Some(self.peer),
        }
    }
}

/// Serves HTTP/1.1 on `front` with `router` until `cancel` fires, then lets requests in
/// flight finish. Every request head must arrive within the front's header timeout.
pub async fn serve_http(front: Front, router: axum::Router, cancel: CancellationToken) {
    use futures::StreamExt;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let header_timeout = front.limits.header_timeout;
    let mut incoming = front.incoming(cancel.clone());
    let connections = TaskTracker::new();
    loop {
        let conn = tokio::select! {
            _ = cancel.cancelled() => break,
            conn = incoming.next() => match conn {
                Some(Ok(conn)) => conn,
                Some(Err(_)) => continue,
                None => break,
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let cancel = cancel.clone();
        connections.spawn(async move {
            let peer = conn.peer();
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let served = builder.serve_connection(TokioIo::new(conn), service);
            tokio::pin!(served);
            let result = tokio::select! {
                result = served.as_mut() => result,
                _ = cancel.cancelled() => {
                    served.as_mut().graceful_shutdown();
                    served.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "http connection ended");
            }
        });
    }
    connections.close();
    connections.wait().await;
}
