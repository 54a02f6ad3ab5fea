//! The embedded broker's front: per-device topic rules, session ends on revocation, and the
//! CONNECT deadline, enforced on every connection before rumqttd sees it.
//!
//! rumqttd 0.20 checks logins but has no per-topic ACLs, so the front reads the client→broker
//! direction packet by packet ([`packet`]) and checks it against the fleet's
//! [`TopicRules`]:
//!
//! - CONNECT must arrive within the handshake deadline, be MQTT 3.1.1, and log in as the hub or
//!   an enrolled device with its password; its will topic must be one the login may publish.
//!   Otherwise the front answers a CONNACK refusal itself and closes.
//! - A PUBLISH to a topic the login may not write closes the connection (MQTT 3.1.1 has no
//!   negative PUBACK; closing is what the specification allows).
//! - A SUBSCRIBE with any filter outside the login's own is answered by the front with a
//!   SUBACK of failure codes (0x80) and never reaches rumqttd.
//! - When the fleet revokes the login (device removed, workspace deleted), the connection is
//!   closed at once.
//!
//! Broker→client bytes are copied as they come; the front only follows packet boundaries there
//! so that its own SUBACKs go between two of the broker's packets.
//!
//! [`Front::splice`] is generic over the client stream, so a TLS stream can be passed in.

pub mod packet;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use shoal_fleet::access::TopicRules;
use shoal_fleet::fleet::{DeviceAuth, Login};

use packet::{ConnectError, Frame, PacketError};

const READ_CHUNK: usize = 16 * 1024;
/// SUBACK refusals waiting for a packet boundary on the way back; a client that keeps
/// subscribing where it may not without reading its answers waits on this.
const PENDING_REFUSALS: usize = 8;

/// How one spliced connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client closed the connection (or never sent anything before closing).
    ClientClosed,
    /// The broker closed the connection.
    BrokerClosed,
    /// No complete CONNECT within the handshake deadline.
    HandshakeTimeout,
    /// The CONNECT was refused (unknown user, wrong password, will topic, protocol).
    Refused(String),
    /// A packet that is not MQTT 3.1.1, or too large.
    Protocol(String),
    /// A PUBLISH to a topic the login may not write.
    ForbiddenPublish { topic: String },
    /// The login's credential was revoked.
    Revoked,
    /// The hub is shutting down.
    Shutdown,
    /// Reading or writing failed, or rumqttd was not reachable.
    Io(String),
}

/// What every spliced connection is checked against.
pub struct Front {
    auth: Arc<DeviceAuth>,
    rules: TopicRules,
    connect_timeout: Duration,
    max_packet_body: usize,
    upstream: SocketAddr,
}

impl Front {
    /// A front for rumqttd at `upstream`: logins are checked against `auth`, topics against
    /// `rules`; the CONNECT must arrive within `connect_timeout`; client packets over
    /// `max_packet_body` bytes of remaining length are refused.
    pub fn new(
        auth: Arc<DeviceAuth>,
        rules: TopicRules,
        connect_timeout: Duration,
        max_packet_body: usize,
        upstream: SocketAddr,
    ) -> Front {
        Front {
            auth,
            rules,
            connect_timeout,
            max_packet_body,
            upstream,
        }
    }

    /// Serves one client connection until it ends, the login is revoked, or `cancel` fires,
    /// and says why it ended. Refusals are logged with the user name and what was refused.
    pub async fn splice<S>(
        &self,
        client: S,
        peer: SocketAddr,
        cancel: &CancellationToken,
    ) -> SessionEnd
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let end = tokio::select! {
            end = self.session(client, peer) => end,
            _ = cancel.cancelled() => SessionEnd::Shutdown,
        };
        match &end {
            SessionEnd::HandshakeTimeout => {
                tracing::warn!(%peer, timeout = ?self.connect_timeout, "mqtt client sent no CONNECT in time; closed")
            }
            SessionEnd::Protocol(error) => {
                tracing::warn!(%peer, %error, "mqtt client broke the protocol; closed")
            }
            SessionEnd::Io(error) => tracing::debug!(%peer, %error, "mqtt connection failed"),
            other => tracing::debug!(%peer, end = ?other, "mqtt connection ended"),
        }
        end
    }

    async fn session<S>(&self, client: S, peer: SocketAddr) -> SessionEnd
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (mut client_rx, mut client_tx) = tokio::io::split(client);
        let mut inbound = PacketReader::new(self.max_packet_body);
        let connect =
            match tokio::time::timeout(self.connect_timeout, inbound.next(&mut client_rx)).await {
                Err(_) => return SessionEnd::HandshakeTimeout,
                Ok(Err(end)) => return end,
                Ok(Ok(packet)) => packet,
            };
        // Listen before checking, so a revocation that lands in between is not missed.
        let revocations = self.auth.revocations();
        let login = match self.admit(&connect, peer) {
            Ok(login) => login,
            Err((code, reason)) => {
                let _ = client_tx.write_all(&packet::connack(code)).await;
                let _ = client_tx.shutdown().await;
                return SessionEnd::Refused(reason);
            }
        };
        let upstream = match TcpStream::connect(self.upstream).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, %peer, "embedded broker is not reachable");
                return SessionEnd::Io(error.to_string());
            }
        };
        let _ = upstream.set_nodelay(true);
        let (upstream_rx, mut upstream_tx) = upstream.into_split();
        if let Err(error) = upstream_tx.write_all(&connect.bytes).await {
            return SessionEnd::Io(error.to_string());
        }
        let (refusals_tx, refusals_rx) = mpsc::channel(PENDING_REFUSALS);
        let inbound = self.client_to_broker(client_rx, upstream_tx, inbound, &login, refusals_tx);
        let outbound = broker_to_client(upstream_rx, client_tx, refusals_rx);
        tokio::select! {
            end = inbound => end,
            end = outbound => end,
            () = revoked(revocations, &self.auth, &login) => {
                tracing::warn!(username = %login.username, %peer, "mqtt session ended: its login was revoked");
                SessionEnd::Revoked
            }
        }
    }

    /// Checks a CONNECT: `Err` carries the CONNACK code and the reason (logged here).
    fn admit(&self, connect: &Packet, peer: SocketAddr) -> Result<Login, (u8, String)> {
        let parsed = match packet::parse_connect(&connect.frame, connect.body()) {
            Ok(parsed) => parsed,
            Err(ConnectError::Protocol(reason)) => {
                tracing::warn!(%peer, %reason, "mqtt connection refused");
                return Err((packet::CONNACK_UNACCEPTABLE_PROTOCOL, reason));
            }
            Err(ConnectError::Packet(error)) => {
                tracing::warn!(%peer, %error, "mqtt connection refused");
                return Err((packet::CONNACK_NOT_AUTHORIZED, error.to_string()));
            }
        };
        let username = parsed.username.unwrap_or_default();
        let refuse = |code, reason: String| {
            tracing::warn!(%peer, %username, client_id = %parsed.client_id, %reason, "mqtt connection refused");
            Err((code, reason))
        };
        if !self.auth.knows(username) {
            return refuse(
                packet::CONNACK_NOT_AUTHORIZED,
                format!("user name {username:?} is neither an enrolled device nor the hub"),
            );
        }
        let password = parsed
            .password
            .and_then(|p| std::str::from_utf8(p).ok())
            .unwrap_or_default();
        let Some(login) = self.auth.login(username, password) else {
            return refuse(packet::CONNACK_BAD_CREDENTIALS, "wrong password".into());
        };
        if let Some(topic) = parsed.will_topic {
            if !self.rules.may_publish(&login.principal, topic) {
                return refuse(
                    packet::CONNACK_NOT_AUTHORIZED,
                    format!("will topic {topic:?} is not one this login may publish on"),
                );
            }
        }
        Ok(login)
    }

    /// Reads the client's packets and forwards those the login may send.
    async fn client_to_broker<R, W>(
        &self,
        mut client: R,
        mut upstream: W,
        mut inbound: PacketReader,
        login: &Login,
        refusals: mpsc::Sender<Vec<u8>>,
    ) -> SessionEnd
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut forward = Vec::with_capacity(READ_CHUNK);
        loop {
            loop {
                let packet = match inbound.take() {
                    Ok(Some(packet)) => packet,
                    Ok(None) => break,
                    Err(error) => return SessionEnd::Protocol(error.to_string()),
                };
                match self.check(&packet, login) {
                    Verdict::Forward => forward.extend_from_slice(&packet.bytes),
                    Verdict::Refuse(suback) => {
                        if refusals.send(suback).await.is_err() {
                            return SessionEnd::BrokerClosed;
                        }
                    }
                    Verdict::Close(end) => return end,
                }
            }
            if !forward.is_empty() {
                if let Err(error) = upstream.write_all(&forward).await {
                    return SessionEnd::Io(error.to_string());
                }
                forward.clear();
            }
            if let Err(end) = inbound.fill(&mut client).await {
                return end;
            }
        }
    }

    fn check(&self, packet: &Packet, login: &Login) -> Verdict {
        let (frame, body) = (&packet.frame, packet.body());
        let protocol = |e: PacketError| Verdict::Close(SessionEnd::Protocol(e.to_string()));
        match frame.kind() {
            packet::PUBLISH => match packet::publish_topic(frame, body) {
                Ok(topic) if self.rules.may_publish(&login.principal, topic) => Verdict::Forward,
                Ok(topic) => {
                    tracing::warn!(username = %login.username, %topic, "refused a publish to a topic this login may not write; connection closed");
                    Verdict::Close(SessionEnd::ForbiddenPublish {
                        topic: topic.into(),
                    })
                }
                Err(e) => protocol(e),
            },
            packet::SUBSCRIBE => match packet::parse_subscribe(frame, body) {
                Ok((id, filters)) => {
                    let refused: Vec<&str> = filters
                        .iter()
                        .copied()
                        .filter(|f| !self.rules.may_subscribe(&login.principal, f))
                        .collect();
                    if refused.is_empty() {
                        Verdict::Forward
                    } else {
                        tracing::warn!(username = %login.username, filters = ?refused, "refused a subscription outside this login's topics");
                        Verdict::Refuse(packet::suback_failure(id, filters.len()))
                    }
                }
                Err(e) => protocol(e),
            },
            packet::UNSUBSCRIBE => match packet::parse_unsubscribe(frame, body) {
                Ok(_) => Verdict::Forward,
                Err(e) => protocol(e),
            },
            packet::PUBACK
            | packet::PUBREC
            | packet::PUBREL
            | packet::PUBCOMP
            | packet::PINGREQ
            | packet::DISCONNECT => Verdict::Forward,
            packet::CONNECT => protocol(PacketError::Malformed("a second CONNECT")),
            _ => protocol(PacketError::Malformed("a packet type clients do not send")),
        }
    }
}

enum Verdict {
    Forward,
    /// Answer with these bytes (a SUBACK refusal) instead of forwarding.
    Refuse(Vec<u8>),
    Close(SessionEnd),
}

/// Copies the broker's bytes to the client as they come, and writes the front's own SUBACK
/// refusals only between two of the broker's packets, and never before its CONNACK.
async fn broker_to_client<R, W>(
    mut upstream: R,
    mut client: W,
    mut refusals: mpsc::Receiver<Vec<u8>>,
) -> SessionEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut boundaries = packet::Boundaries::default();
    let mut connacked = false;
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        tokio::select! {
            read = upstream.read(&mut buf) => {
                let n = match read {
                    Ok(0) => return SessionEnd::BrokerClosed,
                    Ok(n) => n,
                    Err(error) => return SessionEnd::Io(error.to_string()),
                };
                if let Err(error) = boundaries.feed(&buf[..n]) {
                    return SessionEnd::Io(format!("the broker sent {error}"));
                }
                // The broker's first packet is its CONNACK.
                connacked |= boundaries.at_boundary();
                if let Err(error) = client.write_all(&buf[..n]).await {
                    return SessionEnd::Io(error.to_string());
                }
            }
            Some(suback) = refusals.recv(), if connacked && boundaries.at_boundary() => {
                if let Err(error) = client.write_all(&suback).await {
                    return SessionEnd::Io(error.to_string());
                }
            }
        }
    }
}

/// Completes once `login`'s credential no longer holds.
async fn revoked(mut revocations: watch::Receiver<u64>, auth: &DeviceAuth, login: &Login) {
    loop {
        if !auth.holds(login) {
            return;
        }
        if revocations.changed().await.is_err() {
            // The fleet is gone; nothing can be revoked any more.
            std::future::pending::<()>().await;
        }
    }
}

/// One whole packet from the client.
struct Packet {
    frame: Frame,
    bytes: Vec<u8>,
}

impl Packet {
    fn body(&self) -> &[u8] {
        &self.bytes[self.frame.header_len..]
    }
}

/// Buffers client bytes and cuts them into packets, never holding more than one packet (of at
/// most `max_body` bytes) plus one read.
struct PacketReader {
    buf: Vec<u8>,
    max_body: usize,
}

impl PacketReader {
    fn new(max_body: usize) -> PacketReader {
        PacketReader {
            buf: Vec::new(),
            max_body,
        }
    }

    /// The next whole packet already buffered.
    fn take(&mut self) -> Result<Option<Packet>, PacketError> {
        let Some(frame) = packet::frame(&self.buf, self.max_body)? else {
            return Ok(None);
        };
        if self.buf.len() < frame.total_len() {
            return Ok(None);
        }
        let rest = self.buf.split_off(frame.total_len());
        let bytes = std::mem::replace(&mut self.buf, rest);
        Ok(Some(Packet { frame, bytes }))
    }

    /// Reads once more from the client.
    async fn fill<R: AsyncRead + Unpin>(&mut self, client: &mut R) -> Result<(), SessionEnd> {
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let read = client.read(&mut self.buf[start..]).await;
        match read {
            Ok(0) => {
                self.buf.truncate(start);
                Err(SessionEnd::ClientClosed)
            }
            Ok(n) => {
                self.buf.truncate(start + n);
                Ok(())
            }
            Err(error) => {
                self.buf.truncate(start);
                Err(SessionEnd::Io(error.to_string()))
            }
        }
    }

    /// Reads until a whole packet is buffered.
    async fn next<R: AsyncRead + Unpin>(&mut self, client: &mut R) -> Result<Packet, SessionEnd> {
        loop {
            match self.take() {
                Ok(Some(packet)) => return Ok(packet),
                Ok(None) => self.fill(client).await?,
                Err(error) => return Err(SessionEnd::Protocol(error.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests;
