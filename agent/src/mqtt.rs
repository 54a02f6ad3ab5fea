//! The agent's MQTT connection: one rumqttc client, its event loop, and the session around it.
//!
//! Three pieces, none of which can block another:
//! - [`EventLoopDriver`] polls the rumqttc `EventLoop` in its own task. It never publishes and
//!   never awaits anything but the poll and its backoff: incoming publishes are handed over with
//!   `watch::send_replace` (desired state: only the latest matters) and `mpsc::try_send` (blob
//!   chunks: a dropped chunk is asked for again; telemetry acknowledgements: a dropped one means
//!   the window is sent again and acknowledged again), and each ConnAck bumps a counter.
//! - [`Announcer`] reacts to that counter: it subscribes (a clean session forgets subscriptions),
//!   publishes `online` and the reported state; and it re-publishes the state on every change.
//!   Its awaits on the client's bounded request channel cannot deadlock, since the driver keeps
//!   draining that channel.
//! - [`MqttLink`] is the handle the updater uses to ask for blob chunks and the telemetry
//!   forwarder uses to send windows (`try_publish` both: when the channel is full the chunk
//!   timeout asks again, and the window waits for the next attempt).
//!
//! Reconnection is rumqttc's (polling again reconnects); the driver only backs off between
//! failed attempts, 200 ms doubling to 5 s, reset by a successful ConnAck.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use rumqttc::{
    AsyncClient, ClientError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, Publish,
    QoS, SubscribeFilter,
};
use sha2::{Digest, Sha256};
use shoal_proto::device::{BlobRequest, DeviceStatus};
use shoal_proto::topics::DeviceTopics;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::AgentConfig;
use crate::report::{unix_millis, Reporter};

/// How often the client pings an idle broker; the broker declares the agent dead (and publishes
/// its last will) after 1.5 times this without traffic.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Blob chunks are at most 16 KiB of data; this leaves room for much larger hub settings.
pub const MAX_INCOMING_PACKET_BYTES: usize = 512 * 1024;
/// The agent's own messages (state, status, blob requests) are small.
pub const MAX_OUTGOING_PACKET_BYTES: usize = 64 * 1024;
/// The client's request channel to the event loop.
pub const REQUEST_CHANNEL_CAPACITY: usize = 64;
/// Chunks waiting for the updater; a window of 256 KiB is 16 chunks of 16 KiB.
pub const CHUNK_CHANNEL_CAPACITY: usize = 64;
/// Telemetry acknowledgements waiting for the forwarder (each one names up to a few windows).
pub const ACK_CHANNEL_CAPACITY: usize = 64;
/// The first wait after a failed connection attempt.
pub const BACKOFF_START: Duration = Duration::from_millis(200);
/// The longest wait between connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long shutdown waits to hand the `offline` status and the DISCONNECT to the event loop.
pub const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// The client id: stable per device and per hub (the prefix), unique across workspaces.
pub fn client_id(workspace: &str, device: &str, topic_prefix: &str) -> String {
    let prefix_hash = hex::encode(Sha256::digest(topic_prefix.as_bytes()));
    format!("shoal-{workspace}-{device}-{}", &prefix_hash[..8])
}

/// Builds the client, its event loop, the session announcer and the channels between them.
pub fn connect(config: &AgentConfig, boot_epoch: u64) -> Mqtt {
    let topics = DeviceTopics::new(
        &config.mqtt.topic_prefix,
        &config.workspace,
        &config.device_id,
    );
    let mut options = MqttOptions::new(
        client_id(
            &config.workspace,
            &config.device_id,
            &config.mqtt.topic_prefix,
        ),
        config.mqtt.host.clone(),
        config.mqtt.port,
    );
    options
        .set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_max_packet_size(MAX_INCOMING_PACKET_BYTES, MAX_OUTGOING_PACKET_BYTES)
        .set_last_will(LastWill::new(
            topics.status(),
            // The broker publishes this when the agent vanishes; the time of death is unknown.
            DeviceStatus {
                online: false,
                at_ms: 0,
                boot_epoch,
            }
            .encode_to_vec(),
            QoS::AtLeastOnce,
            true,
        ));
    if let Some((username, password)) = &config.mqtt.credentials {
        options.set_credentials(username.clone(), password.clone());
    }
    if let Some(tls) = &config.mqtt.tls {
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls.0.clone()),
        ));
    }
    let (client, eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);

    let (desired_tx, desired_rx) = watch::channel(None);
    let (chunks_tx, chunks_rx) = mpsc::channel(CHUNK_CHANNEL_CAPACITY);
    let (acks_tx, acks_rx) = mpsc::channel(ACK_CHANNEL_CAPACITY);
    let (connected_tx, connected_rx) = watch::channel(false);
    let (connacks_tx, connacks_rx) = watch::channel(0u64);
    let (sessions_tx, sessions_rx) = watch::channel(0u64);

    Mqtt {
        link: MqttLink {
            client: client.clone(),
            topics: topics.clone(),
            connected: connected_rx.clone(),
            sessions: sessions_rx,
        },
        inbox: Inbox {
            desired: desired_rx,
            chunks: chunks_rx,
        },
        telemetry_acks: acks_rx,
        driver: EventLoopDriver {
            eventloop,
            desired_topic: topics.desired(),
            blob_topic: topics.blob_response(),
            ack_topic: topics.telemetry_ack(),
            desired_tx,
            chunks_tx,
            acks_tx,
            connected_tx,
            connacks_tx,
        },
        announcer: Announcer {
            client,
            topics,
            connacks: connacks_rx,
            connected: connected_rx,
            sessions_tx,
            boot_epoch,
        },
    }
}

/// The parts [`connect`] returns, each to be moved into its own task.
pub struct Mqtt {
    pub link: MqttLink,
    pub inbox: Inbox,
    /// The hub's `TelemetryAck` payloads (raw protobuf), for the telemetry forwarder.
    pub telemetry_acks: mpsc::Receiver<Bytes>,
    pub driver: EventLoopDriver,
    pub announcer: Announcer,
}

/// What the hub sends this device.
#[derive(Debug)]
pub struct Inbox {
    /// The latest desired-state payload (raw protobuf); `None` until one arrives.
    pub desired: watch::Receiver<Option<Bytes>>,
    /// Blob chunk payloads (raw protobuf), in arrival order.
    pub chunks: mpsc::Receiver<Bytes>,
}

/// The handle the rest of the agent publishes through.
#[derive(Debug, Clone)]
pub struct MqttLink {
    client: AsyncClient,
    topics: DeviceTopics,
    /// Whether the broker connection is up.
    pub connected: watch::Receiver<bool>,
    /// Bumped once the device's topics are subscribed in a new session: a blob request sent
    /// after that is answered into a live subscription.
    pub sessions: watch::Receiver<u64>,
}

impl MqttLink {
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Queues a blob request without waiting.
    ///
    /// # Errors
    /// When the request channel is full or the event loop is gone; the caller asks again later.
    pub fn request_blob(&self, request: &BlobRequest) -> Result<(), ClientError> {
        self.client.try_publish(
            self.topics.blob_request(),
            QoS::AtLeastOnce,
            false,
            request.encode_to_vec(),
        )
    }

    /// Queues a telemetry window (an encoded `TelemetryWindow`) at QoS 1 without waiting.
    ///
    /// # Errors
    /// When the request channel is full or the event loop is gone; the window stays buffered
    /// and is sent later.
    pub fn publish_telemetry(&self, payload: Vec<u8>) -> Result<(), ClientError> {
        self.client
            .try_publish(self.topics.telemetry(), QoS::AtLeastOnce, false, payload)
    }

    /// Publishes `offline` (retained) and asks the event loop to disconnect, each bounded by
    /// [`GOODBYE_TIMEOUT`]: with no broker, there is nobody to say goodbye to.
    pub async fn say_goodbye(&self, boot_epoch: u64) {
        let offline = DeviceStatus {
            online: false,
            at_ms: unix_millis(),
            boot_epoch,
        };
        let publish = self.client.publish(
            self.topics.status(),
            QoS::AtLeastOnce,
            true,
            offline.encode_to_vec(),
        );
        match tokio::time::timeout(GOODBYE_TIMEOUT, publish).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => debug!(%error, "cannot queue the offline status"),
            Err(_) => debug!("timed out queueing the offline status"),
        }
        match tokio::time::timeout(GOODBYE_TIMEOUT, self.client.disconnect()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => debug!(%error, "cannot queue the mqtt disconnect"),
            Err(_) => debug!("timed out queueing the mqtt disconnect"),
        }
    }
}

/// Polls the rumqttc event loop and hands incoming messages over without ever blocking.
pub struct EventLoopDriver {
    eventloop: EventLoop,
    desired_topic: String,
    blob_topic: String,
    ack_topic: String,
    desired_tx: watch::Sender<Option<Bytes>>,
    chunks_tx: mpsc::Sender<Bytes>,
    acks_tx: mpsc::Sender<Bytes>,
    connected_tx: watch::Sender<bool>,
    /// Bumped on every ConnAck; the announcer re-subscribes.
    connacks_tx: watch::Sender<u64>,
}

impl EventLoopDriver {
    /// Polls until the agent's DISCONNECT has gone out, or until `stop` fires while there is no
    /// connection to say goodbye on. Connection errors are logged and retried with backoff.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut backoff = Backoff::new();
        loop {
            let disconnected = !*self.connected_tx.borrow();
            let polled = tokio::select! {
                polled = self.eventloop.poll() => polled,
                _ = stop.cancelled(), if disconnected => {
                    debug!("mqtt event loop stopped while disconnected");
                    break;
                }
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff.reset();
                    info!(
                        session_present = ack.session_present,
                        "connected to the mqtt broker"
                    );
                    self.connected_tx.send_replace(true);
                    self.connacks_tx.send_modify(|n| *n += 1);
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => self.forward(publish),
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    self.connected_tx.send_replace(false);
                    info!("disconnected from the mqtt broker");
                    break;
                }
                Ok(_) => {}
                Err(error) => {
                    self.connected_tx.send_replace(false);
                    if stop.is_cancelled() {
                        debug!(%error, "mqtt connection ended during shutdown");
                        break;
                    }
                    let delay = backoff.next_delay();
                    warn!(%error, retry_in_ms = delay.as_millis() as u64, "mqtt connection failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.cancelled() => break,
                    }
                }
            }
        }
    }

    fn forward(&self, publish: Publish) {
        if publish.topic == self.desired_topic {
            debug!(bytes = publish.payload.len(), "desired state received");
            self.desired_tx.send_replace(Some(publish.payload));
        } else if publish.topic == self.blob_topic {
            match self.chunks_tx.try_send(publish.payload) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    debug!("dropping a blob chunk: the updater is behind and will ask again")
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        } else if publish.topic == self.ack_topic {
            match self.acks_tx.try_send(publish.payload) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    debug!(
                        "dropping a telemetry ack: the windows will be sent and acknowledged again"
                    )
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        } else {
            debug!(topic = %publish.topic, "ignoring a publish on an unexpected topic");
        }
    }
}

/// Re-establishes the session on every connection and publishes the reported state.
pub struct Announcer {
    client: AsyncClient,
    topics: DeviceTopics,
    connacks: watch::Receiver<u64>,
    connected: watch::Receiver<bool>,
    sessions_tx: watch::Sender<u64>,
    boot_epoch: u64,
}

impl Announcer {
    /// Runs until `cancel` fires.
    pub async fn run(mut self, reporter: Reporter, cancel: CancellationToken) {
        let mut changes = reporter.subscribe();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                changed = self.connacks.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.connacks.borrow_and_update();
                    changes.borrow_and_update();
                    tokio::select! {
                        result = self.start_session(&reporter) => {
                            if let Err(error) = result {
                                warn!(%error, "cannot start the mqtt session");
                            }
                        }
                        _ = cancel.cancelled() => break,
                    }
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    changes.borrow_and_update();
                    if !*self.connected.borrow() {
                        // Published on the next ConnAck.
                        continue;
                    }
                    tokio::select! {
                        result = self.publish_state(&reporter) => {
                            if let Err(error) = result {
                                warn!(%error, "cannot publish the reported state");
                            }
                        }
                        _ = cancel.cancelled() => break,
                    }
                }
            }
        }
    }

    async fn start_session(&self, reporter: &Reporter) -> Result<(), ClientError> {
        let filters = [
            SubscribeFilter::new(self.topics.desired(), QoS::AtLeastOnce),
            SubscribeFilter::new(self.topics.blob_response(), QoS::AtLeastOnce),
            SubscribeFilter::new(self.topics.telemetry_ack(), QoS::AtLeastOnce),
        ];
        self.client.subscribe_many(filters).await?;
        self.sessions_tx.send_modify(|n| *n += 1);
        let online = DeviceStatus {
            online: true,
            at_ms: unix_millis(),
            boot_epoch: self.boot_epoch,
        };
        self.client
            .publish(
                self.topics.status(),
                QoS::AtLeastOnce,
                true,
                online.encode_to_vec(),
            )
            .await?;
        self.publish_state(reporter).await
    }

    async fn publish_state(&self, reporter: &Reporter) -> Result<(), ClientError> {
        let state = reporter.snapshot();
        self.client
            .publish(
                self.topics.state(),
                QoS::AtLeastOnce,
                true,
                state.encode_to_vec(),
            )
            .await
    }
}

/// Waits between failed connection attempts: doubling from [`BACKOFF_START`] to [`BACKOFF_MAX`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff {
            next: BACKOFF_START,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<u64> = (0..7)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(200));
    }

    #[test]
    fn client_ids_are_stable_and_name_the_device() {
        let id = client_id("default", "cam-01", "shoal/v1");
        assert!(id.starts_with("shoal-default-cam-01-"), "{id}");
        assert_eq!(id.len(), "shoal-default-cam-01-".len() + 8);
        assert_eq!(id, client_id("default", "cam-01", "shoal/v1"));
        assert_ne!(id, client_id("default", "cam-01", "test/shoal/v1"));
    }
}
