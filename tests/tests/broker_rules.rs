//! Attacks on the broker holding one enrolled device's credentials, on the embedded broker and
//! on a private Mosquitto configured by `shoal broker mosquitto-config`: a device reads only its
//! own topics and writes only its own uplink topics, while an agent still gets its model.
//! On the embedded broker also: a removed device (or a deleted workspace's) is disconnected at
//! once and cannot log in again, and the listener's limits (connection cap, CONNECT deadline)
//! hold.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode,
};
use shoal_hub::config::MqttLimits;
use shoal_integration_tests::{unique, wait_for, TestAgent, TestHub, DEADLINE};
use shoal_model::build::Mlp;
use shoal_proto::fleet::{AddDeviceRequest, DeviceCredentials, RemoveDeviceRequest};
use shoal_proto::mqtt_url::MqttUrl;
use shoal_proto::topics::DeviceTopics;
use shoal_proto::workspace::{CreateWorkspaceRequest, DeleteWorkspaceRequest};
use tokio::io::AsyncReadExt;

const FORGED: &[u8] = b"forged";

/// A raw MQTT client with a login.
fn client(url: &str, login: Option<(&str, &str)>, id: &str) -> (AsyncClient, EventLoop) {
    let url = MqttUrl::parse(url).expect("an mqtt url");
    let mut options = MqttOptions::new(id, url.host, url.port);
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    options.set_max_packet_size(1 << 20, 1 << 20);
    AsyncClient::new(options, 64)
}

fn device_client(creds: &DeviceCredentials) -> (AsyncClient, EventLoop) {
    client(
        &creds.mqtt_url,
        Some((&creds.mqtt_username, &creds.mqtt_password)),
        &unique("dev-"),
    )
}

async fn enroll(hub: &TestHub, workspace: &str, id: &str) -> DeviceCredentials {
    hub.client()
        .await
        .fleet
        .add_device(AddDeviceRequest {
            workspace: workspace.into(),
            id: id.into(),
            tags: Default::default(),
        })
        .await
        .expect("add device")
        .into_inner()
}

/// Polls until the ConnAck (panics on a refusal).
async fn connected(eventloop: &mut EventLoop) {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return,
                Ok(_) => {}
                Err(error) => panic!("connection refused: {error}"),
            }
        }
    })
    .await
    .expect("connack in time");
}

/// What the broker answers a fresh login with: `Ok` for a ConnAck, else the error.
async fn try_login(url: &str, user: &str, password: &str) -> Result<(), ConnectionError> {
    try_connect(url, Some((user, password))).await
}

async fn try_connect(url: &str, login: Option<(&str, &str)>) -> Result<(), ConnectionError> {
    let (_client, mut eventloop) = client(url, login, &unique("login-"));
    tokio::time::timeout(DEADLINE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
    })
    .await
    .expect("an answer in time")
}

/// The world the attacks run in: a victim agent (`cam-02`) running a deployed model, whose
/// desired state (with its signed manifest) is retained on the broker; a device in another
/// workspace with a retained status; and the attacker's credentials (`cam-01`).
struct World {
    attacker: DeviceCredentials,
    agent: TestAgent,
    _dirs: tempfile::TempDir,
}

async fn world(hub: &TestHub) -> World {
    let dirs = tempfile::tempdir().unwrap();
    let version = hub
        .register("occupancy", &Mlp::seeded(&[4, 8, 2], 1).to_onnx())
        .await
        .unwrap();
    let attacker = enroll(hub, "default", "cam-01").await;
    let victim = hub.add_device("cam-02").await;
    hub.client()
        .await
        .workspaces
        .create_workspace(CreateWorkspaceRequest {
            name: "lab".into(),
            description: String::new(),
        })
        .await
        .expect("create workspace");
    let neighbour = enroll(hub, "lab", "cam-09").await;
    World {
        attacker,
        agent: world_agent(hub, victim, &version.digest, dirs.path()).await,
        _dirs: world_neighbour(hub, &neighbour, dirs).await,
    }
}

async fn world_agent(
    hub: &TestHub,
    victim: shoal_agent::config::AgentConfigFile,
    digest: &str,
    dir: &Path,
) -> TestAgent {
    let agent = TestAgent::start(victim, &dir.join("cam-02")).await;
    hub.deploy("lobby", "occupancy", "1", &["cam-02"]).await;
    // End to end under the rules: the agent subscribes, fetches its blob and reports.
    agent.wait_for_model(digest).await;
    hub.wait_for_active("cam-02", digest).await;
    agent
}

/// The other workspace's device leaves a retained status, as an agent does.
async fn world_neighbour(
    hub: &TestHub,
    neighbour: &DeviceCredentials,
    dirs: tempfile::TempDir,
) -> tempfile::TempDir {
    let (client, mut eventloop) = device_client(neighbour);
    let status = DeviceTopics::new(&hub.topic_prefix, "lab", "cam-09").status();
    client
        .publish(status, QoS::AtLeastOnce, true, b"online".to_vec())
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, async {
        while !matches!(
            eventloop.poll().await,
            Ok(Event::Incoming(Packet::PubAck(_)))
        ) {}
    })
    .await
    .expect("the neighbour's status is stored");
    dirs
}

/// The attacker subscribes to everything it can think of, then to its own desired topic; the
/// hub publishes a marker there. Returns every topic the attacker received before the marker.
async fn topics_seen_by_a_greedy_subscriber(
    hub: &TestHub,
    attacker: &DeviceCredentials,
) -> Vec<String> {
    let own = DeviceTopics::new(&hub.topic_prefix, "default", "cam-01");
    let (client, mut eventloop) = device_client(attacker);
    connected(&mut eventloop).await;
    let greedy = [
        "#".to_string(),
        format!("{}/#", hub.topic_prefix),
        format!("{}/+/dev/+/desired", hub.topic_prefix),
        format!("{}/lab/#", hub.topic_prefix),
        format!("{}/default/dev/cam-02/#", hub.topic_prefix),
    ];
    for filter in &greedy {
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    }
    client
        .subscribe(own.desired(), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (hub_client, mut hub_loop) = hub.mqtt_client_as_hub(&unique("marker-"));
    tokio::spawn(async move { while hub_loop.poll().await.is_ok() {} });
    let mut subacks = 0;
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        loop {
            match eventloop
                .poll()
                .await
                .expect("the attacker stays connected")
            {
                Event::Incoming(Packet::SubAck(ack)) => {
                    subacks += 1;
                    if subacks == greedy.len() {
                        // Every greedy filter refused (embedded) or granted (Mosquitto): either
                        // way, what arrives below is what it yields.
                        tracing::info!(codes = ?ack.return_codes, "greedy suback");
                    }
                    if subacks == greedy.len() + 1 {
                        assert!(
                            matches!(ack.return_codes[..], [SubscribeReasonCode::Success(_)]),
                            "the device's own desired topic is granted: {ack:?}"
                        );
                        hub_client
                            .publish(own.desired(), QoS::AtLeastOnce, false, b"marker".to_vec())
                            .await
                            .unwrap();
                    }
                }
                Event::Incoming(Packet::Publish(p)) if p.payload.as_ref() == b"marker" => break,
                Event::Incoming(Packet::Publish(p)) => seen.push(p.topic),
                _ => {}
            }
        }
    })
    .await
    .expect("the marker arrives");
    seen
}

/// For each topic the attacker may not write, a fresh connection publishes `forged` there
/// (retained), then a marker on its own status. Returns the topics where a new subscriber with
/// the hub's login finds `forged` retained.
async fn topics_forged_by_a_device(hub: &TestHub, attacker: &DeviceCredentials) -> Vec<String> {
    let victim = DeviceTopics::new(&hub.topic_prefix, "default", "cam-02");
    let own = DeviceTopics::new(&hub.topic_prefix, "default", "cam-01");
    let targets = [
        victim.telemetry_ack(),
        victim.desired(),
        victim.state(),
        victim.status(),
        victim.blob_response(),
        own.desired(),
        own.telemetry_ack(),
        DeviceTopics::new(&hub.topic_prefix, "lab", "cam-09").status(),
    ];
    for target in &targets {
        let (client, mut eventloop) = device_client(attacker);
        client
            .publish(target, QoS::AtLeastOnce, true, FORGED.to_vec())
            .await
            .unwrap();
        client
            .publish(
                own.status(),
                QoS::AtLeastOnce,
                false,
                b"still here".to_vec(),
            )
            .await
            .unwrap();
        // Mosquitto drops the forbidden publish and acknowledges both; the embedded broker
        // closes the connection at the forbidden one. Either way the broker is done with it.
        tokio::time::timeout(DEADLINE, async {
            let mut acks = 0;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acks += 1;
                        if acks == 2 {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        })
        .await
        .expect("the broker answers the attacker");
    }
    let mut forged = Vec::new();
    for target in targets {
        if hub.retained_on(&target).await.iter().any(|p| p == FORGED) {
            forged.push(target);
        }
    }
    forged
}

fn assert_only_own(hub: &TestHub, seen: &[String]) {
    let own = format!("{}/default/dev/cam-01/", hub.topic_prefix);
    let foreign: Vec<&String> = seen.iter().filter(|t| !t.starts_with(&own)).collect();
    assert!(
        foreign.is_empty(),
        "a device read other devices' topics: {foreign:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_reads_and_writes_only_its_own_topics_on_the_embedded_broker() {
    let hub = TestHub::builder().embedded().start().await;
    let world = world(&hub).await;

    let seen = topics_seen_by_a_greedy_subscriber(&hub, &world.attacker).await;
    assert_only_own(&hub, &seen);
    let forged = topics_forged_by_a_device(&hub, &world.attacker).await;
    assert!(forged.is_empty(), "a device wrote on {forged:?}");

    // The victim still runs its model, and the hub still serves it.
    let (status, _) = world
        .agent
        .infer(&shoal_integration_tests::infer_body(&[[
            1.0, 2.0, 3.0, 4.0,
        ]]))
        .await;
    assert_eq!(status, 200);
    world.agent.stop().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_devices_and_deleted_workspaces_lose_their_sessions_at_once() {
    let hub = TestHub::builder().embedded().start().await;
    let dirs = tempfile::tempdir().unwrap();
    let cam = enroll(&hub, "default", "cam-01").await;
    hub.client()
        .await
        .workspaces
        .create_workspace(CreateWorkspaceRequest {
            name: "lab".into(),
            description: String::new(),
        })
        .await
        .unwrap();
    let lab = enroll(&hub, "lab", "cam-09").await;
    // A real agent, too: its session ends and its reconnects are refused.
    let agent_config = hub.add_device("cam-02").await;
    let agent_login = (
        agent_config.hub.mqtt_username.clone(),
        agent_config.hub.mqtt_password.clone(),
    );
    let agent = TestAgent::start(agent_config, &dirs.path().join("cam-02")).await;
    wait_for("cam-02 to come online", || async {
        hub.device("cam-02").await.online.then_some(())
    })
    .await;

    let (_cam_client, mut cam_loop) = device_client(&cam);
    connected(&mut cam_loop).await;
    let (_lab_client, mut lab_loop) = device_client(&lab);
    connected(&mut lab_loop).await;

    for id in ["cam-01", "cam-02"] {
        hub.client()
            .await
            .fleet
            .remove_device(RemoveDeviceRequest {
                workspace: "default".into(),
                id: id.into(),
            })
            .await
            .unwrap();
    }
    hub.client()
        .await
        .workspaces
        .delete_workspace(DeleteWorkspaceRequest {
            name: "lab".into(),
            force: true,
        })
        .await
        .unwrap();

    for eventloop in [&mut cam_loop, &mut lab_loop] {
        tokio::time::timeout(DEADLINE, async { while eventloop.poll().await.is_ok() {} })
            .await
            .expect("the revoked session is closed");
    }
    for (creds, user, password) in [
        (&cam, &cam.mqtt_username, &cam.mqtt_password),
        (&lab, &lab.mqtt_username, &lab.mqtt_password),
        (&cam, &agent_login.0, &agent_login.1),
    ] {
        let refused = try_login(&creds.mqtt_url, user, password).await;
        assert!(
            matches!(refused, Err(ConnectionError::ConnectionRefused(_))),
            "{user}: {refused:?}"
        );
    }
    agent.stop().await;
    hub.shutdown().await;
}

/// A raw TCP connection that reads until the broker closes it; `true` if it did within the
/// deadline.
async fn closed_by_broker(stream: &mut tokio::net::TcpStream, deadline: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(deadline, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn mqtt_addr(hub: &TestHub) -> SocketAddr {
    let url = MqttUrl::parse(&hub.mqtt_url).unwrap();
    format!("{}:{}", url.host, url.port).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once_and_a_freed_slot_serves_again() {
    let hub = TestHub::builder()
        .embedded()
        .mqtt_limits(MqttLimits {
            max_connections: 2,
            connect_timeout: DEADLINE * 4,
        })
        .start()
        .await;
    let cam = enroll(&hub, "default", "cam-01").await;
    // The hub's own client connects to rumqttd's private port, not through the front, so both
    // slots are for clients; wait for it anyway so the broker is fully up.
    wait_for("the hub's own MQTT session", || async {
        let health: serde_json::Value = reqwest::get(format!("http://{}/healthz", hub.http_addr))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (health["mqtt_connected"] == true).then_some(())
    })
    .await;
    let addr = mqtt_addr(&hub);
    let first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_by_broker(&mut third, Duration::from_secs(20)).await,
        "a connection over the cap is closed"
    );
    drop(first);
    // A freed slot serves a device again (the hub releases it once it sees the close).
    wait_for("a freed slot to serve a login", || async {
        try_login(&cam.mqtt_url, &cam.mqtt_username, &cam.mqtt_password)
            .await
            .ok()
    })
    .await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_no_connect_or_dribbles_is_dropped_at_the_handshake_deadline() {
    let hub = TestHub::builder()
        .embedded()
        .mqtt_limits(MqttLimits {
            max_connections: 100,
            connect_timeout: Duration::from_millis(500),
        })
        .start()
        .await;
    let addr = mqtt_addr(&hub);
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut dribbler = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The first bytes of a CONNECT, then nothing.
    tokio::io::AsyncWriteExt::write_all(&mut dribbler, &[0x10, 0x20, 0x00, 0x04, b'M'])
        .await
        .unwrap();
    // rumqttd's own timeout is 60 s; the front's deadline closes both long before.
    assert!(closed_by_broker(&mut silent, Duration::from_secs(20)).await);
    assert!(closed_by_broker(&mut dribbler, Duration::from_secs(20)).await);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_larger_than_a_filters_log_still_reaches_its_agent() {
    let hub = TestHub::builder().embedded().start().await;
    let dirs = tempfile::tempdir().unwrap();
    // About 3 MiB of weights: more than one subscription filter's log holds (1 MiB).
    let onnx = Mlp::seeded(&[4, 1024, 700, 2], 3).to_onnx();
    let log_bytes =
        shoal_hub::broker::ROUTER_SEGMENT_BYTES * shoal_hub::broker::ROUTER_SEGMENTS_PER_FILTER;
    assert!(onnx.len() > 2 * log_bytes, "{} bytes", onnx.len());
    let version = hub.register("big", &onnx).await.unwrap();
    let agent = TestAgent::start(hub.add_device("cam-01").await, &dirs.path().join("a")).await;
    hub.deploy("big", "big", "1", &["cam-01"]).await;
    agent.wait_for_model(&version.digest).await;
    agent.stop().await;
    hub.shutdown().await;
}

// --- Mosquitto ---

/// A private Mosquitto on an ephemeral port, killed on drop.
struct Mosquitto {
    child: tokio::process::Child,
}

impl Mosquitto {
    /// Starts `mosquitto -c` on a config of `listener PORT 127.0.0.1` and the snippet
    /// `shoal broker mosquitto-config` wrote into `dir`.
    async fn start(dir: &Path, port: u16) -> Mosquitto {
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("mosquitto is installed (.ci/run installs the Debian package)");
        let snippet = std::fs::read_to_string(dir.join("mosquitto.conf")).unwrap();
        let conf = dir.join("test.conf");
        // Started as root, Mosquitto would switch to the `mosquitto` user, which cannot read
        // a private temp folder; as anyone else `user` has no effect.
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nuser root\n{snippet}"),
        )
        .unwrap();
        let child = tokio::process::Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .kill_on_drop(true)
            .spawn()
            .expect("start mosquitto");
        wait_for("mosquitto to accept connections", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        Mosquitto { child }
    }

    /// Reloads the password and ACL files, as `kill -HUP` does.
    fn reload(&self) {
        let pid = self.child.id().expect("mosquitto runs");
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_reads_and_writes_only_its_own_topics_on_mosquitto() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let hub_password = unique("hub-");
    let hub = TestHub::builder()
        .external(&format!("mqtt://shoal-hub:{hub_password}@127.0.0.1:{port}"))
        .start()
        .await;
    let files = tempfile::tempdir().unwrap();
    // A first export before any device, then Mosquitto, then devices, then again and a reload:
    // the way an operator runs it as devices come and go.
    let config = shoal_cli::mosquitto_config(&mut hub.client().await, files.path(), None, None)
        .await
        .expect("export");
    assert!(
        config.hub_password_included,
        "the hub's --mqtt-url login is in the file"
    );
    assert!(config.skipped.is_empty());
    let mosquitto = Mosquitto::start(files.path(), port).await;

    let attacker = enroll(&hub, "default", "cam-01").await;
    // Not in Mosquitto's files yet.
    assert!(try_login(
        &attacker.mqtt_url,
        &attacker.mqtt_username,
        &attacker.mqtt_password
    )
    .await
    .is_err());

    let dirs = tempfile::tempdir().unwrap();
    let version = hub
        .register("occupancy", &Mlp::seeded(&[4, 8, 2], 1).to_onnx())
        .await
        .unwrap();
    let victim = hub.add_device("cam-02").await;
    hub.client()
        .await
        .workspaces
        .create_workspace(CreateWorkspaceRequest {
            name: "lab".into(),
            description: String::new(),
        })
        .await
        .unwrap();
    let neighbour = enroll(&hub, "lab", "cam-09").await;
    shoal_cli::mosquitto_config(&mut hub.client().await, files.path(), None, None)
        .await
        .expect("export again");
    mosquitto.reload();
    wait_for("mosquitto to accept the new devices", || async {
        try_login(
            &attacker.mqtt_url,
            &attacker.mqtt_username,
            &attacker.mqtt_password,
        )
        .await
        .ok()
    })
    .await;
    let agent = world_agent(&hub, victim, &version.digest, dirs.path()).await;
    let _dirs = world_neighbour(&hub, &neighbour, dirs).await;

    let seen = topics_seen_by_a_greedy_subscriber(&hub, &attacker).await;
    assert_only_own(&hub, &seen);
    let forged = topics_forged_by_a_device(&hub, &attacker).await;
    assert!(forged.is_empty(), "a device wrote on {forged:?}");
    // Anonymous clients are refused.
    assert!(try_connect(&attacker.mqtt_url, None).await.is_err());

    agent.stop().await;
    hub.shutdown().await;
    drop(mosquitto);
}
