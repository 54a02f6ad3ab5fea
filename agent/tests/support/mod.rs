//! A harness for the agent's own end-to-end checks: a real broker (rumqttd on a free port), a
//! scripted hub (a plain MQTT client that signs manifests, serves blobs, and receives and
//! acknowledges telemetry windows), and agents on ephemeral HTTP ports with their own data
//! directories.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use prost::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sha2::{Digest, Sha256};
use shoal_agent::{
    AgentConfigFile, AgentError, AgentSection, DeviceSection, HubSection, Overrides,
};
use shoal_proto::device::{
    desired_state_signed_bytes, BlobChunk, BlobRequest, DesiredBody, DesiredState, DeviceStatus,
    Manifest, ReportedState, TelemetryAck, TelemetryWindow, UpdatePhase,
};
use shoal_proto::topics::DeviceTopics;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub const WORKSPACE: &str = "default";
pub const DEVICE: &str = "cam-01";
pub const CHUNK_BYTES: usize = 16 * 1024;
pub const WAIT: Duration = Duration::from_secs(20);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A manifest and the key the desired state carrying it is to be signed with.
#[derive(Clone)]
pub struct ToSign {
    pub key: SigningKey,
    pub manifest: Manifest,
}

/// A port on 127.0.0.1 held, until dropped, by a socket bound to it with SO_REUSEADDR that does
/// not listen. Meanwhile connections to the port are refused and `bind(:0)` elsewhere does not
/// hand it out; yet on Linux a listener that sets SO_REUSEADDR too (tokio's and std's do) can
/// bind it and listen: that is how a broker takes the port over with no gap in which another
/// process could take it.
pub struct ReservedPort {
    pub port: u16,
    _socket: tokio::net::TcpSocket,
}

/// Reserves a port the kernel picks: see [`ReservedPort`].
pub fn reserve_port() -> ReservedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let port = socket.local_addr().unwrap().port();
    ReservedPort {
        port,
        _socket: socket,
    }
}

/// How many ports [`start_broker`] tries before it gives up.
const BROKER_ATTEMPTS: usize = 5;

/// Starts rumqttd on a free port, on its own named thread, and waits until it serves MQTT.
///
/// rumqttd binds the port itself, so it can find it taken. The port stays reserved until the
/// broker serves (on Linux; elsewhere the reservation has to go first); and if the broker's
/// listener fails anyway, say with AddrInUse, the broker is started again on a fresh port,
/// a bounded number of times.
pub async fn start_broker() -> u16 {
    let mut failures = Vec::new();
    for _ in 0..BROKER_ATTEMPTS {
        let reserved = reserve_port();
        let port = reserved.port;
        // Linux lets a listener bind over the reservation; BSDs would refuse it.
        let reserved = cfg!(target_os = "linux").then_some(reserved);
        match start_broker_on(port).await {
            Ok(()) => {
                drop(reserved);
                return port;
            }
            Err(failure) => failures.push(format!("port {port}: {failure}")),
        }
    }
    panic!("no broker after {BROKER_ATTEMPTS} attempts: {failures:#?}");
}

/// Starts rumqttd on `port` and waits until it is the one serving there: a message sent to the
/// port over TCP comes out of an in-process link into this very broker, so another process
/// listening on the port is never taken for it. Fails when the broker's listener stops (which
/// for rumqttd 0.20 only happens when it cannot bind), or after [`WAIT`].
async fn start_broker_on(port: u16) -> Result<(), String> {
    let config = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 100
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 20480
max_inflight_count = 100
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = toml::from_str(&config).unwrap();
    let mut broker = rumqttd::Broker::new(config);
    let probe_topic = format!("shoal-test/probe/{port}");
    let nonce = format!("{:?}", std::time::SystemTime::now());
    let (mut link_tx, mut link_rx) = broker
        .link("shoal-test-probe")
        .map_err(|e| format!("in-process link: {e}"))?;
    link_tx
        .subscribe(probe_topic.clone())
        .map_err(|e| format!("in-process subscription: {e}"))?;
    let (stopped_tx, mut stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("rumqttd-{port}"))
        .spawn(move || {
            // Returns only once every server of the broker stopped: here, its one listener.
            // (rumqttd logs why at error level.)
            let outcome = broker.start();
            eprintln!("broker on {port} stopped: {outcome:?}");
            let _ = stopped_tx.send(());
        })
        .unwrap();

    let mut options = MqttOptions::new(format!("shoal-test-probe-{port}"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (probe, mut eventloop) = AsyncClient::new(options, 10);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        tokio::select! {
            _ = &mut stopped => {
                return Err("the broker's listener stopped: it could not bind the port".into());
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(format!("not serving after {WAIT:?}"));
            }
            polled = eventloop.poll() => match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    probe
                        .try_publish(&probe_topic, QoS::AtMostOnce, false, nonce.clone())
                        .map_err(|e| format!("probe publish: {e}"))?;
                }
                Ok(_) => {}
                // Not listening yet: the next poll connects again.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            notification = link_rx.next() => match notification {
                Ok(Some(rumqttd::Notification::Forward(forward)))
                    if forward.publish.payload.as_ref() == nonce.as_bytes() =>
                {
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => return Err(format!("in-process link: {e}")),
            },
        }
    }
}

/// How the scripted hub misbehaves.
#[derive(Debug, Default)]
pub struct Faults {
    /// Chunks at these offsets are dropped the first time they would be sent.
    pub drop_once: HashSet<u64>,
    /// Every served chunk has its first byte flipped.
    pub corrupt: bool,
}

/// A hub stand-in: signs manifests, publishes desired states, serves blob requests.
pub struct FakeHub {
    client: AsyncClient,
    pub prefix: String,
    pub key: SigningKey,
    blobs: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    pub faults: Arc<Mutex<Faults>>,
    pub requests: Arc<Mutex<Vec<BlobRequest>>>,
    pub states: watch::Receiver<Option<ReportedState>>,
    pub statuses: watch::Receiver<Option<DeviceStatus>>,
    /// Every telemetry window received, duplicates included, in arrival order.
    pub windows: Arc<Mutex<Vec<TelemetryWindow>>>,
    /// Bumped on every telemetry window received.
    pub windows_received: watch::Receiver<u64>,
    /// Whether received windows are acknowledged (as the real hub does once it stored them).
    pub acking: Arc<AtomicBool>,
}

impl FakeHub {
    pub async fn start(port: u16, prefix: &str) -> FakeHub {
        let mut options = MqttOptions::new(format!("fake-hub-{port}"), "127.0.0.1", port);
        options
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let topics = DeviceTopics::new(prefix, WORKSPACE, DEVICE);
        client
            .subscribe(topics.blob_request(), QoS::AtLeastOnce)
            .await
            .unwrap();
        client
            .subscribe(topics.state(), QoS::AtLeastOnce)
            .await
            .unwrap();
        client
            .subscribe(topics.status(), QoS::AtLeastOnce)
            .await
            .unwrap();
        client
            .subscribe(topics.telemetry(), QoS::AtLeastOnce)
            .await
            .unwrap();

        let (states_tx, states) = watch::channel(None);
        let (statuses_tx, statuses) = watch::channel(None);
        let (requests_tx, mut requests_rx) = mpsc::unbounded_channel::<BlobRequest>();
        let (connected_tx, mut connected_rx) = watch::channel(false);
        let state_topic = topics.state();
        let status_topic = topics.status();
        let request_topic = topics.blob_request();
        let telemetry_topic = topics.telemetry();
        let windows: Arc<Mutex<Vec<TelemetryWindow>>> = Arc::default();
        let (windows_tx, windows_received) = watch::channel(0u64);
        let acking = Arc::new(AtomicBool::new(true));
        let (acks_tx, mut acks_rx) = mpsc::unbounded_channel::<u64>();
        let (received, ack_enabled) = (windows.clone(), acking.clone());
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected_tx.send_replace(true);
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if publish.topic == state_topic {
                            states_tx.send_replace(Some(
                                ReportedState::decode(publish.payload).unwrap(),
                            ));
                        } else if publish.topic == status_topic {
                            statuses_tx
                                .send_replace(Some(DeviceStatus::decode(publish.payload).unwrap()));
                        } else if publish.topic == request_topic {
                            let _ = requests_tx.send(BlobRequest::decode(publish.payload).unwrap());
                        } else if publish.topic == telemetry_topic {
                            let window = TelemetryWindow::decode(publish.payload).unwrap();
                            if ack_enabled.load(Ordering::SeqCst) {
                                let _ = acks_tx.send(window.seq);
                            }
                            received.lock().unwrap().push(window);
                            windows_tx.send_modify(|n| *n += 1);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, connected_rx.wait_for(|c| *c))
            .await
            .expect("the fake hub connects to the broker")
            .unwrap();

        let blobs: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let faults: Arc<Mutex<Faults>> = Arc::default();
        let requests: Arc<Mutex<Vec<BlobRequest>>> = Arc::default();
        let (serve_blobs, serve_faults, serve_requests, serve_client) = (
            blobs.clone(),
            faults.clone(),
            requests.clone(),
            client.clone(),
        );
        let (ack_client, ack_topic) = (client.clone(), topics.telemetry_ack());
        tokio::spawn(async move {
            while let Some(seq) = acks_rx.recv().await {
                let ack = TelemetryAck { seqs: vec![seq] };
                let _ = ack_client
                    .publish(&ack_topic, QoS::AtLeastOnce, false, ack.encode_to_vec())
                    .await;
            }
        });
        let response_topic = topics.blob_response();
        tokio::spawn(async move {
            while let Some(request) = requests_rx.recv().await {
                serve_requests.lock().unwrap().push(request.clone());
                let blob = serve_blobs.lock().unwrap().get(&request.digest).cloned();
                let Some(blob) = blob else {
                    let chunk = BlobChunk {
                        digest: request.digest.clone(),
                        offset: request.offset,
                        error: format!("blob {} not found", request.digest),
                        ..Default::default()
                    };
                    serve_client
                        .publish(
                            &response_topic,
                            QoS::AtLeastOnce,
                            false,
                            chunk.encode_to_vec(),
                        )
                        .await
                        .unwrap();
                    continue;
                };
                let end = (request.offset + request.length).min(blob.len() as u64);
                let mut offset = request.offset;
                while offset < end {
                    let next = (offset + CHUNK_BYTES as u64).min(end);
                    let mut data = blob[offset as usize..next as usize].to_vec();
                    let (drop, corrupt) = {
                        let mut faults = serve_faults.lock().unwrap();
                        (faults.drop_once.remove(&offset), faults.corrupt)
                    };
                    if corrupt {
                        data[0] ^= 0xFF;
                    }
                    if !drop {
                        let chunk = BlobChunk {
                            digest: request.digest.clone(),
                            offset,
                            data,
                            total_size: blob.len() as u64,
                            error: String::new(),
                        };
                        serve_client
                            .publish(
                                &response_topic,
                                QoS::AtLeastOnce,
                                false,
                                chunk.encode_to_vec(),
                            )
                            .await
                            .unwrap();
                    }
                    offset = next;
                }
            }
        });

        FakeHub {
            client,
            prefix: prefix.to_string(),
            key: SigningKey::from_bytes(&[42u8; 32]),
            blobs,
            faults,
            requests,
            states,
            statuses,
            windows,
            windows_received,
            acking,
        }
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Stores a blob and returns its digest.
    pub fn add_blob(&self, bytes: &[u8]) -> String {
        let digest = digest(bytes);
        self.blobs
            .lock()
            .unwrap()
            .insert(digest.clone(), bytes.to_vec());
        digest
    }

    /// The manifest of `bytes`, to be signed with `key` when it is desired.
    pub fn sign(&self, key: &SigningKey, name: &str, version: u32, bytes: &[u8]) -> ToSign {
        self.sign_manifest(key, &manifest(name, version, bytes))
    }

    pub fn sign_manifest(&self, key: &SigningKey, manifest: &Manifest) -> ToSign {
        ToSign {
            key: key.clone(),
            manifest: manifest.clone(),
        }
    }

    /// Publishes a raw payload on the device's telemetry ack topic.
    pub async fn publish_ack(&self, payload: Vec<u8>) {
        let topic = DeviceTopics::new(&self.prefix, WORKSPACE, DEVICE).telemetry_ack();
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    pub fn set_acking(&self, acking: bool) {
        self.acking.store(acking, Ordering::SeqCst);
    }

    /// Windows received, the first copy of each (boot epoch, seq): how the hub deduplicates.
    pub fn unique_windows(&self) -> BTreeMap<(u64, u64), TelemetryWindow> {
        let mut unique = BTreeMap::new();
        for window in self.windows.lock().unwrap().iter() {
            unique
                .entry((window.boot_epoch, window.seq))
                .or_insert_with(|| window.clone());
        }
        unique
    }

    /// How many times each (boot epoch, seq) arrived.
    pub fn receipts(&self) -> BTreeMap<(u64, u64), usize> {
        let mut receipts = BTreeMap::new();
        for window in self.windows.lock().unwrap().iter() {
            *receipts.entry((window.boot_epoch, window.seq)).or_default() += 1;
        }
        receipts
    }

    /// Waits until the windows received so far satisfy `accept`.
    pub async fn wait_for_windows(
        &self,
        what: &str,
        accept: impl Fn(&BTreeMap<(u64, u64), TelemetryWindow>) -> bool,
    ) -> BTreeMap<(u64, u64), TelemetryWindow> {
        let mut received = self.windows_received.clone();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            received.borrow_and_update();
            let unique = self.unique_windows();
            if accept(&unique) {
                return unique;
            }
            if tokio::time::timeout_at(deadline, received.changed())
                .await
                .is_err()
            {
                panic!("no telemetry windows {what}; received: {unique:#?}");
            }
        }
    }

    /// Publishes a desired state for the device at `revision`, signed with the model's key
    /// (the hub's when there is no model).
    pub async fn desire(&self, revision: u64, model: Option<ToSign>) {
        let key = model.as_ref().map_or(self.key.clone(), |m| m.key.clone());
        let body = DesiredBody {
            workspace: WORKSPACE.into(),
            device: DEVICE.into(),
            deployment: format!("dep-{revision}"),
            revision,
            model: model.map(|m| m.manifest),
        }
        .encode_to_vec();
        let signature = key
            .sign(&desired_state_signed_bytes(&body))
            .to_bytes()
            .to_vec();
        let desired = DesiredState { body, signature };
        self.publish_desired(desired.encode_to_vec()).await;
    }

    pub async fn publish_desired(&self, payload: Vec<u8>) {
        let topic = DeviceTopics::new(&self.prefix, WORKSPACE, DEVICE).desired();
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .unwrap();
    }

    /// Waits for a reported state that satisfies `accept`.
    pub async fn wait_for_state(
        &self,
        what: &str,
        accept: impl Fn(&ReportedState) -> bool,
    ) -> ReportedState {
        let mut states = self.states.clone();
        let waited =
            tokio::time::timeout(WAIT, states.wait_for(|s| s.as_ref().is_some_and(&accept))).await;
        match waited {
            Ok(Ok(state)) => state.clone().unwrap(),
            _ => panic!("no reported state {what}; last: {:?}", self.states.borrow()),
        }
    }

    /// Waits for the update of `revision` to reach `phase`.
    pub async fn wait_for_phase(&self, revision: u64, phase: UpdatePhase) -> ReportedState {
        self.wait_for_state(&format!("with revision {revision} {phase:?}"), |s| {
            s.update
                .as_ref()
                .is_some_and(|u| u.revision == revision && u.phase == phase as i32)
        })
        .await
    }

    pub fn requests_for(&self, digest: &str) -> Vec<BlobRequest> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.digest == digest)
            .cloned()
            .collect()
    }
}

pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// An unsigned manifest for a model, with no baseline.
pub fn manifest(name: &str, version: u32, bytes: &[u8]) -> Manifest {
    Manifest {
        workspace: WORKSPACE.into(),
        model: name.into(),
        version,
        digest: digest(bytes),
        size_bytes: bytes.len() as u64,
        signature: None,
        created_at_ms: 1,
        ..Default::default()
    }
}

/// Checks `check` until it holds, up to [`WAIT`]; a short pause between checks.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn config_file(
    mqtt_port: u16,
    prefix: &str,
    public_key: &str,
    data_dir: &Path,
) -> AgentConfigFile {
    AgentConfigFile {
        version: 1,
        device: DeviceSection {
            id: DEVICE.into(),
            workspace: WORKSPACE.into(),
        },
        hub: HubSection {
            mqtt_url: format!("mqtt://127.0.0.1:{mqtt_port}"),
            mqtt_username: String::new(),
            mqtt_password: String::new(),
            topic_prefix: prefix.into(),
            public_key: public_key.into(),
            ca_pem: None,
        },
        agent: AgentSection {
            data_dir: Some(data_dir.to_path_buf()),
            http_listen: Some("127.0.0.1:0".parse().unwrap()),
            download_window_bytes: None,
            chunk_timeout_ms: Some(300),
            download_rate_limit_bytes_per_sec: None,
            ..Default::default()
        },
    }
}

/// An agent running in this process.
pub struct TestAgent {
    pub http: SocketAddr,
    pub boot_epoch: u64,
    pub data_dir: PathBuf,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), AgentError>>,
}

impl TestAgent {
    pub async fn start(file: AgentConfigFile) -> TestAgent {
        let config = file.build_and_validate(&Overrides::default()).unwrap();
        let data_dir = config.data_dir.clone();
        let bound = shoal_agent::Agent::bind(config).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let http = bound.http_addr();
        let boot_epoch = bound.boot_epoch();
        let task = tokio::spawn(bound.run(async move {
            let _ = stopped.await;
        }));
        TestAgent {
            http,
            boot_epoch,
            data_dir,
            stop,
            task,
        }
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("agent shut down in time")
            .unwrap()
            .unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The `telemetry` object of `GET /v1/model`.
    pub async fn telemetry(&self) -> serde_json::Value {
        self.get("/v1/model").await.1["telemetry"].clone()
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = reqwest::get(self.url(path)).await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn post(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .post(self.url(path))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

/// A TCP proxy in front of the broker whose connections can be cut, to simulate a flaky link.
pub struct Proxy {
    pub port: u16,
    cuts: watch::Sender<u64>,
    refusing: Arc<AtomicBool>,
}

impl Proxy {
    pub async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cuts = watch::Sender::new(0u64);
        let refusing = Arc::new(AtomicBool::new(false));
        let (accept_cuts, accept_refusing) = (cuts.clone(), refusing.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if accept_refusing.load(Ordering::SeqCst) {
                    continue;
                }
                let mut cut = accept_cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            port,
            cuts,
            refusing,
        }
    }

    /// Drops every open connection and refuses new ones for `outage`.
    pub async fn cut(&self, outage: Duration) {
        self.hold();
        tokio::time::sleep(outage).await;
        self.release();
    }

    /// Drops every open connection and refuses new ones until [`Proxy::release`].
    pub fn hold(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Accepts connections again.
    pub fn release(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }
}
