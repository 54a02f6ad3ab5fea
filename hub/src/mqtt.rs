//! The hub's MQTT side: one client (to the embedded broker or an external one) that takes
//! device status, reported state and blob requests, and publishes desired state and chunks.
//!
//! The rumqttc event loop runs in its own task and only forwards; handling happens in
//! spawned tasks so that a publish waiting on the event loop can never deadlock with it.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use shoal_proto::device::{BlobChunk, BlobRequest, DesiredState, DeviceStatus, TelemetryAck};
use shoal_proto::topics::{self, leaf, DeviceTopics};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use shoal_fleet::deployment::Deployments;
use shoal_fleet::fleet::Fleet;
use shoal_fleet::publish::{DevicePublisher, PublishError};
use shoal_fleet::telemetry::Ingested;
use shoal_store::artifacts::{is_valid_digest, ArtifactStore};

use crate::broker::MAX_PAYLOAD_BYTES;

/// Data bytes per chunk: with the protobuf framing and topic it stays under the 20 KiB payload
/// limit of rumqttd's default, and of most brokers'.
pub const CHUNK_BYTES: u64 = 16 * 1024;
/// The most one blob request may ask for; agents ask for windows well below it.
pub const MAX_REQUEST_BYTES: u64 = 4 * 1024 * 1024;
/// Blob requests served at once; more wait their turn.
const CONCURRENT_BLOB_REQUESTS: usize = 32;
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where the hub's client connects and how it logs in.
#[derive(Debug, Clone)]
pub struct MqttTarget {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
    pub topic_prefix: String,
    /// `mqtts://`: TLS with these settings (an external broker's CA, or the system's roots).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The fleet's way out to devices, over the hub's MQTT client.
#[derive(Clone)]
pub struct MqttPublisher {
    client: AsyncClient,
    prefix: String,
}

fn publish_error(error: rumqttc::ClientError) -> PublishError {
    PublishError(format!("mqtt publish: {error}"))
}

/// The size of a QoS 1 PUBLISH packet's variable part (topic length prefix, topic, packet id,
/// payload): what a broker holds against its payload limit (rumqttd disconnects a client whose
/// packet's remaining length exceeds it).
pub fn publish_packet_bytes(topic: &str, payload: &[u8]) -> usize {
    2 + topic.len() + 2 + payload.len()
}

/// Publishes at QoS 1 through the hub's client, refusing (logged, and an error for the caller)
/// a message larger than the broker's limit instead of sending it: one oversized message
/// would make the broker drop the hub's whole connection, and every device with it.
///
/// # Errors
/// [`PublishError`] naming the topic and the sizes, or when the client is gone.
pub async fn publish_checked(
    client: &AsyncClient,
    topic: String,
    retain: bool,
    payload: Vec<u8>,
) -> Result<(), PublishError> {
    let size = publish_packet_bytes(&topic, &payload);
    if size > MAX_PAYLOAD_BYTES {
        tracing::error!(%topic, bytes = size, limit = MAX_PAYLOAD_BYTES, "refusing to publish a message larger than the broker's payload limit");
        return Err(PublishError(format!(
            "a {size}-byte message on {topic} exceeds the broker's {MAX_PAYLOAD_BYTES}-byte payload limit; it was not sent (large data must travel as a blob)"
        )));
    }
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await
        .map_err(publish_error)
}

#[async_trait::async_trait]
impl DevicePublisher for MqttPublisher {
    async fn publish_desired(
        &self,
        workspace: &str,
        device: &str,
        state: &DesiredState,
    ) -> Result<(), PublishError> {
        let topic = DeviceTopics::new(&self.prefix, workspace, device).desired();
        publish_checked(&self.client, topic, true, state.encode_to_vec()).await
    }

    async fn publish_event(&self, workspace: &str, payload: Vec<u8>) -> Result<(), PublishError> {
        publish_checked(
            &self.client,
            topics::events(&self.prefix, workspace),
            false,
            payload,
        )
        .await
    }

    async fn clear_retained(&self, workspace: &str, device: &str) -> Result<(), PublishError> {
        let topics = DeviceTopics::new(&self.prefix, workspace, device);
        for topic in [topics.desired(), topics.state(), topics.status()] {
            self.client
                .publish(topic, QoS::AtLeastOnce, true, Vec::new())
                .await
                .map_err(publish_error)?;
        }
        Ok(())
    }
}

/// Creates the client; nothing is sent until [`run`] polls the event loop.
pub fn connect(target: &MqttTarget) -> (MqttPublisher, AsyncClient, EventLoop) {
    let mut suffix = [0u8; 6];
    let _ = getrandom::getrandom(&mut suffix);
    let mut options = MqttOptions::new(
        format!("shoal-hub-{}", hex::encode(suffix)),
        &target.host,
        target.port,
    );
    options.set_keep_alive(Duration::from_secs(15));
    options.set_clean_session(true);
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    options.set_inflight(200);
    if let Some((user, password)) = &target.credentials {
        options.set_credentials(user, password);
    }
    if let Some(tls) = &target.tls {
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls.clone()),
        ));
    }
    let (client, eventloop) = AsyncClient::new(options, 1024);
    let publisher = MqttPublisher {
        client: client.clone(),
        prefix: target.topic_prefix.clone(),
    };
    (publisher, client, eventloop)
}

/// What the MQTT loop needs from the rest of the hub.
#[derive(Clone)]
pub struct MqttContext {
    pub prefix: String,
    pub fleet: Fleet,
    pub deployments: Deployments,
    pub artifacts: ArtifactStore,
    pub telemetry: shoal_fleet::telemetry::Telemetry,
    pub client: AsyncClient,
    /// Set once the first subscription is acknowledged, for readiness (health).
    pub connected: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Polls the event loop until `cancel`, reconnecting with backoff.
pub async fn run(context: MqttContext, mut eventloop: EventLoop, cancel: CancellationToken) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let (telemetry_tx, telemetry_rx) = mpsc::unbounded_channel();
    let ingester = tokio::spawn(ingest_worker(context.clone(), telemetry_rx));
    let handler = {
        let context = context.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let blob_slots = Arc::new(Semaphore::new(CONCURRENT_BLOB_REQUESTS));
            loop {
                let event = tokio::select! {
                    _ = cancel.cancelled() => break,
                    event = rx.recv() => match event { Some(e) => e, None => break },
                };
                handle(&context, event, &blob_slots, &telemetry_tx);
            }
        })
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let polled = tokio::select! {
            _ = cancel.cancelled() => break,
            polled = eventloop.poll() => polled,
        };
        match polled {
            Ok(event) => {
                if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                    backoff = Duration::from_millis(100);
                }
                // Unbounded on purpose: the handler never waits on this loop, and a bounded
                // channel here could stall the event loop behind a slow handler.
                let _ = tx.send(event);
            }
            Err(error) => {
                context.connected.send_replace(false);
                tracing::warn!(%error, retry_in = ?backoff, "hub mqtt connection lost");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
            }
        }
    }
    let _ = context.client.try_disconnect();
    handler.abort();
    // The handler held the queue's sender: the worker finishes what is queued, then ends.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), ingester).await;
}

fn handle(
    context: &MqttContext,
    event: Event,
    blob_slots: &Arc<Semaphore>,
    telemetry: &TelemetryQueue,
) {
    match event {
        Event::Incoming(Packet::ConnAck(_)) => {
            let context = context.clone();
            tokio::spawn(async move {
                for leaf in [
                    leaf::STATUS,
                    leaf::STATE,
                    leaf::BLOB_REQUEST,
                    leaf::TELEMETRY,
                ] {
                    let filter = topics::all_devices_filter(&context.prefix, leaf);
                    if let Err(error) = context.client.subscribe(filter, QoS::AtLeastOnce).await {
                        tracing::warn!(%error, "hub mqtt subscribe failed");
                    }
                }
                context.deployments.republish_all().await;
            });
        }
        Event::Incoming(Packet::SubAck(_)) => {
            context.connected.send_replace(true);
        }
        Event::Incoming(Packet::Publish(publish)) => {
            let Some(parsed) = topics::parse_device_topic(&context.prefix, &publish.topic) else {
                return;
            };
            let (workspace, device) = (parsed.workspace.to_string(), parsed.device.to_string());
            match parsed.leaf {
                leaf::STATUS => match DeviceStatus::decode(publish.payload.as_ref()) {
                    Ok(status) => context
                        .fleet
                        .record_status(&workspace, &device, status.online),
                    Err(error) => {
                        tracing::warn!(%workspace, %device, %error, "malformed device status")
                    }
                },
                leaf::STATE => {
                    // An empty retained payload is a clean-up (device removal), not a report.
                    if publish.payload.is_empty() {
                        return;
                    }
                    if let Err(refused) =
                        context
                            .fleet
                            .record_state(&workspace, &device, &publish.payload)
                    {
                        tracing::warn!(%workspace, %device, error = %refused, "reported state refused");
                        if let Err(error) =
                            context
                                .telemetry
                                .count_rejected(&workspace, &device, refused.reason)
                        {
                            tracing::warn!(%error, "cannot count a refused report");
                        }
                    }
                }
                leaf::BLOB_REQUEST => match BlobRequest::decode(publish.payload.as_ref()) {
                    Ok(request) => {
                        let context = context.clone();
                        let slots = blob_slots.clone();
                        tokio::spawn(async move {
                            let Ok(_slot) = slots.acquire_owned().await else {
                                return;
                            };
                            serve_blob(&context, &workspace, &device, request).await;
                        });
                    }
                    Err(error) => {
                        tracing::warn!(%workspace, %device, %error, "malformed blob request")
                    }
                },
                leaf::TELEMETRY => {
                    // One worker ingests in order: concurrent writers of one device's
                    // statistics and roll-ups would only retry each other's updates.
                    let _ = telemetry.send((workspace, device, publish.payload.clone()));
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// Windows waiting for the ingest worker: (workspace, device, payload).
type TelemetryQueue = mpsc::UnboundedSender<(String, String, bytes::Bytes)>;

/// Most windows stored in one blocking call.
const INGEST_BATCH: usize = 256;

/// Stores windows in arrival order, in batches, and acknowledges each device's stored (or
/// already stored) windows with one message per batch. A window the hub refuses is not
/// acknowledged: the device's buffer keeps it until its age limit, and counts it then.
async fn ingest_worker(
    context: MqttContext,
    mut queue: mpsc::UnboundedReceiver<(String, String, bytes::Bytes)>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < INGEST_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let telemetry = context.telemetry.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let mut acks: std::collections::BTreeMap<(String, String), Vec<u64>> =
                Default::default();
            for (workspace, device, payload) in batch {
                match telemetry.ingest(&workspace, &device, &payload) {
                    Ok(
                        Ingested::Stored { seq }
                        | Ingested::Duplicate { seq }
                        | Ingested::Rejected { seq, .. },
                    ) => acks.entry((workspace, device)).or_default().push(seq),
                    Err(error) => {
                        tracing::warn!(%workspace, %device, %error, "telemetry window refused")
                    }
                }
            }
            // An acknowledgement means durable: the agent deletes what the hub acknowledges,
            // so the batch reaches disk before any of it is acknowledged.
            if !acks.is_empty() {
                if let Err(error) = telemetry.flush() {
                    tracing::error!(%error, "cannot flush stored telemetry windows; not acknowledging them");
                    acks.clear();
                }
            }
            acks
        })
        .await;
        let acks = match stored {
            Ok(acks) => acks,
            Err(error) => {
                tracing::error!(%error, "telemetry ingestion task failed");
                continue;
            }
        };
        for ((workspace, device), seqs) in acks {
            let topic = DeviceTopics::new(&context.prefix, &workspace, &device).telemetry_ack();
            let ack = TelemetryAck { seqs };
            if let Err(error) =
                publish_checked(&context.client, topic, false, ack.encode_to_vec()).await
            {
                tracing::warn!(%error, "cannot acknowledge telemetry windows");
            }
        }
    }
}

/// Answers one blob request with chunks, or with one chunk carrying an error.
async fn serve_blob(context: &MqttContext, workspace: &str, device: &str, request: BlobRequest) {
    let topic = DeviceTopics::new(&context.prefix, workspace, device).blob_response();
    let chunks = match check_blob_request(context, workspace, device, &request) {
        Ok(()) => read_chunks(&context.artifacts, &request).await,
        Err(error) => Err(error),
    };
    let chunks = chunks.unwrap_or_else(|error| {
        tracing::warn!(%workspace, %device, digest = %request.digest, %error, "blob request refused");
        vec![BlobChunk { digest: request.digest.clone(), offset: request.offset, error, ..Default::default() }]
    });
    for chunk in chunks {
        if let Err(error) =
            publish_checked(&context.client, topic.clone(), false, chunk.encode_to_vec()).await
        {
            tracing::warn!(%error, "cannot publish a blob chunk");
            return;
        }
    }
}

/// A device may fetch only the blobs its current desired state references: its model and its
/// drift baseline. The device is the one the topic names.
fn check_blob_request(
    context: &MqttContext,
    workspace: &str,
    device: &str,
    request: &BlobRequest,
) -> Result<(), String> {
    if !is_valid_digest(&request.digest) {
        return Err(format!("'{}' is not a sha256 digest", request.digest));
    }
    let record = context
        .fleet
        .get(workspace, device)
        .map_err(|e| e.to_string())?;
    let assigned = record
        .desired
        .as_ref()
        .is_some_and(|d| d.references_blob(&request.digest));
    if !assigned {
        return Err(format!(
            "blob {} is not referenced by the desired state of device '{device}'",
            request.digest
        ));
    }
    Ok(())
}

async fn read_chunks(
    artifacts: &ArtifactStore,
    request: &BlobRequest,
) -> Result<Vec<BlobChunk>, String> {
    let length = request.length.clamp(1, MAX_REQUEST_BYTES);
    let (data, total) = artifacts
        .read_range(&request.digest, request.offset, length)
        .await
        .map_err(|e| format!("cannot read blob {}: {e}", request.digest))?;
    let mut chunks = Vec::with_capacity(data.len().div_ceil(CHUNK_BYTES as usize));
    for (i, piece) in data.chunks(CHUNK_BYTES as usize).enumerate() {
        chunks.push(BlobChunk {
            digest: request.digest.clone(),
            offset: request.offset + i as u64 * CHUNK_BYTES,
            data: piece.to_vec(),
            total_size: total,
            error: String::new(),
        });
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_message_over_the_broker_limit_is_refused_before_it_is_sent() {
        // A client whose event loop is never polled: whatever reaches it stays queued.
        let (client, _eventloop) =
            AsyncClient::new(MqttOptions::new("limit-test", "127.0.0.1", 1), 10);
        let topic = "shoal/v1/default/dev/cam-01/desired".to_string();
        let room = MAX_PAYLOAD_BYTES - publish_packet_bytes(&topic, &[]);
        publish_checked(&client, topic.clone(), true, vec![0; room])
            .await
            .expect("a message at the limit is sent");
        let error = publish_checked(&client, topic.clone(), true, vec![0; room + 1])
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&topic), "{message}");
        assert!(
            message.contains(&format!("{MAX_PAYLOAD_BYTES}-byte payload limit")),
            "{message}"
        );
    }
}
