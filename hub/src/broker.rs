//! The embedded MQTT broker: rumqttd on its own named thread, behind a listener the hub owns.
//!
//! rumqttd binds its own socket, cannot report the bound address and cannot be stopped. So it
//! listens on a private loopback port and the hub accepts connections on the public address
//! itself (port 0 allowed) and splices each one through. That gives the hub the real bound
//! address and a clean shutdown: closing the public side drops every client, and devices see
//! the broker go away exactly as they would with an external one. The rumqttd threads idle
//! until the process exits.
//!
//! Each connection goes through [`Front::splice`] (`broker_front`), which enforces the fleet's
//! topic rules, the CONNECT deadline and revocations; here the listener caps how many
//! connections are open at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use shoal_fleet::access::TopicRules;
use shoal_fleet::fleet::DeviceAuth;
use shoal_store::IoError;

use crate::broker_front::Front;
use crate::config::MqttLimits;
use crate::error::{HubError, HubResult};

/// rumqttd's own default; model chunks are sized to fit it.
pub const MAX_PAYLOAD_BYTES: usize = 20 * 1024;
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);
const START_ATTEMPTS: usize = 3;

/// rumqttd keeps a log per subscription filter, in segments; the oldest segment is dropped
/// when there are more than this many. 256 KiB × 4 bounds one filter's log to about 1 MiB
/// (a download window of 16 chunks fits in one segment); a reader that falls further behind
/// skips ahead and the agent asks for the missing chunks again.
pub const ROUTER_SEGMENT_BYTES: usize = 256 * 1024;
pub const ROUTER_SEGMENTS_PER_FILTER: usize = 4;

/// A running embedded broker.
pub struct EmbeddedBroker {
    public: TcpListener,
    front: Arc<Front>,
    max_connections: usize,
    internal: SocketAddr,
    tls: Option<BrokerTls>,
}

/// TLS on the broker's public listener.
#[derive(Clone)]
pub struct BrokerTls {
    pub acceptor: TlsAcceptor,
    /// A client whose handshake takes longer is dropped.
    pub handshake_timeout: Duration,
}

impl EmbeddedBroker {
    /// Binds the public listener and starts rumqttd on a private loopback port, checking every
    /// login with `auth` and every topic against the rules under `topic_prefix`. With `tls`,
    /// clients of the public listener speak MQTT over TLS.
    ///
    /// # Errors
    /// [`HubError::Bind`] when the public address cannot be bound (naming it, and the way
    /// out when it is taken); an I/O error when rumqttd does not come up.
    pub async fn start(
        listen: SocketAddr,
        auth: Arc<DeviceAuth>,
        topic_prefix: &str,
        limits: MqttLimits,
        tls: Option<BrokerTls>,
    ) -> HubResult<EmbeddedBroker> {
        let public = TcpListener::bind(listen)
            .await
            .map_err(|e| HubError::bind("MQTT", listen, e))?;
        let mut last_error = None;
        let starting = IoError::with("start the embedded MQTT broker");
        for _ in 0..START_ATTEMPTS {
            let started = match free_loopback_port() {
                Ok(internal) => {
                    start_rumqttd(internal, auth.clone(), limits.max_connections).map(|()| internal)
                }
                Err(e) => Err(e),
            };
            let internal = match started {
                Ok(internal) => internal,
                Err(e) => return Err(starting(e).into()),
            };
            match wait_until_accepting(internal).await {
                Ok(()) => {
                    let front = Front::new(
                        auth,
                        TopicRules::new(topic_prefix),
                        limits.connect_timeout,
                        MAX_PAYLOAD_BYTES,
                        internal,
                    );
                    return Ok(EmbeddedBroker {
                        public,
                        front: Arc::new(front),
                        max_connections: limits.max_connections,
                        internal,
                        tls,
                    });
                }
                // Another process took the port between our probe and rumqttd's bind.
                Err(e) => last_error = Some(e),
            }
        }
        let error = last_error.unwrap_or_else(|| std::io::Error::other("it did not start"));
        Err(starting(error).into())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.public
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// rumqttd's private loopback address (plaintext): the hub's own client connects here,
    /// so it needs no certificate for whatever name the public one carries.
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal
    }

    /// Splices client connections to rumqttd until `cancel` fires, then drops them all. A
    /// connection over the cap is closed at once.
    pub async fn serve(self, cancel: CancellationToken) {
        let connections = TaskTracker::new();
        let open = Arc::new(Semaphore::new(self.max_connections));
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = self.public.accept() => accepted,
            };
            let (client, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "embedded broker accept failed");
                    continue;
                }
            };
            let Ok(permit) = open.clone().try_acquire_owned() else {
                tracing::warn!(%peer, max = self.max_connections, "mqtt connection refused: the broker is at its connection cap (--mqtt-max-connections)");
                drop(client);
                continue;
            };
            let front = self.front.clone();
            let cancel = cancel.clone();
            let tls = self.tls.clone();
            connections.spawn(async move {
                let _ = client.set_nodelay(true);
                if let Some(tls) = tls {
                    let handshake =
                        tokio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(client));
                    let accepted = tokio::select! {
                        _ = cancel.cancelled() => return,
                        accepted = handshake => accepted,
                    };
                    match accepted {
                        Ok(Ok(stream)) => {
                            front.splice(stream, peer, &cancel).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%error, %peer, "mqtt TLS handshake failed")
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "mqtt TLS handshake did not finish in time")
                        }
                    }
                } else {
                    front.splice(client, peer, &cancel).await;
                }
                drop(permit);
            });
        }
        connections.close();
        connections.wait().await;
    }
}

fn free_loopback_port() -> std::io::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    probe.local_addr()
}

async fn wait_until_accepting(addr: SocketAddr) -> std::io::Result<()> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        match TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn start_rumqttd(
    listen: SocketAddr,
    auth: Arc<DeviceAuth>,
    max_connections: usize,
) -> std::io::Result<()> {
    let mut connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MAX_PAYLOAD_BYTES,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(
        move |_client_id: String, username: String, password: String| {
            let allowed = auth.check(&username, &password);
            if !allowed {
                tracing::warn!(%username, "embedded broker refused a login");
            }
            async move { allowed }
        },
    );
    let server = rumqttd::ServerSettings {
        name: "shoal-v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            // The front caps clients; the margin is the hub's own connection.
            max_connections: max_connections + 10,
            max_outgoing_packet_count: 200,
            max_segment_size: ROUTER_SEGMENT_BYTES,
            max_segment_count: ROUTER_SEGMENTS_PER_FILTER,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("shoal-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(error) = broker.start() {
                tracing::error!(%error, "embedded broker stopped");
            }
        })?;
    Ok(())
}
