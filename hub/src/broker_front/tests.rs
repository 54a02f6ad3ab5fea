//! The front over an in-memory client stream and a loopback socket standing in for rumqttd,
//! which records what reaches it. (The scenarios in `tests/tests/broker_rules.rs` run the same
//! checks through a real hub and its rumqttd.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use shoal_fleet::access::TopicRules;
use shoal_fleet::fleet::DeviceAuth;
use shoal_fleet::Fleet;
use shoal_store::{MemoryStore, Records, Workspaces};

use super::packet::{self, SUBACK_FAILURE};
use super::{Front, SessionEnd};

const PREFIX: &str = "t/shoal/v1";
const DEADLINE: Duration = Duration::from_secs(30);

struct Setup {
    fleet: Fleet,
    auth: Arc<DeviceAuth>,
    password: String,
    upstream: TcpListener,
}

async fn setup() -> Setup {
    let records = Records::new(Arc::new(MemoryStore::default()));
    let workspaces = Workspaces::new(records.clone());
    workspaces.ensure_default().unwrap();
    let fleet = Fleet::new(records, workspaces).unwrap();
    let password = fleet
        .add("default", "cam-1", BTreeMap::new())
        .unwrap()
        .password;
    let auth = fleet.auth();
    auth.set_hub_login("shoal-hub", "hub-secret");
    Setup {
        fleet,
        auth,
        password,
        upstream: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    }
}

impl Setup {
    fn front(&self, connect_timeout: Duration) -> Front {
        Front::new(
            self.auth.clone(),
            TopicRules::new(PREFIX),
            connect_timeout,
            20 * 1024,
            self.upstream.local_addr().unwrap(),
        )
    }

    /// Runs a session over an in-memory stream; returns the client's end and the session.
    fn start(
        &self,
        connect_timeout: Duration,
    ) -> (
        DuplexStream,
        tokio::task::JoinHandle<SessionEnd>,
        CancellationToken,
    ) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let front = self.front(connect_timeout);
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let session = tokio::spawn(async move {
            front
                .splice(server, "127.0.0.1:9".parse().unwrap(), &stop)
                .await
        });
        (client, session, cancel)
    }
}

/// An MQTT string or binary field: its length (u16, big-endian), then its bytes.
pub(super) fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// An MQTT packet: the first byte, the remaining length (variable-length), the body.
pub(super) fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn connect(user: &str, password: &str, will: Option<&str>) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(4);
    body.push(0xc2 | if will.is_some() { 0x04 } else { 0 });
    body.extend(60u16.to_be_bytes());
    body.extend(string(b"c1"));
    if let Some(topic) = will {
        body.extend(string(topic.as_bytes()));
        body.extend(string(b"offline"));
    }
    body.extend(string(user.as_bytes()));
    body.extend(string(password.as_bytes()));
    packet(0x10, &body)
}

fn subscribe(id: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    for f in filters {
        body.extend(string(f.as_bytes()));
        body.push(1);
    }
    packet(0x82, &body)
}

fn publish(topic: &str) -> Vec<u8> {
    let mut body = string(topic.as_bytes());
    body.extend(1u16.to_be_bytes());
    body.extend_from_slice(b"payload");
    packet(0x32, &body)
}

fn own(leaf: &str) -> String {
    format!("{PREFIX}/default/dev/cam-1/{leaf}")
}

async fn read_exact(stream: &mut (impl AsyncReadExt + Unpin), n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut buf))
        .await
        .expect("bytes arrive")
        .expect("stream open");
    buf
}

async fn end(session: tokio::task::JoinHandle<SessionEnd>) -> SessionEnd {
    tokio::time::timeout(DEADLINE, session)
        .await
        .expect("session ends")
        .expect("session task does not panic")
}

#[tokio::test]
async fn a_client_that_sends_nothing_or_dribbles_is_dropped_at_the_deadline() {
    let s = setup().await;
    let (_silent, session, _cancel) = s.start(Duration::from_millis(200));
    assert_eq!(end(session).await, SessionEnd::HandshakeTimeout);

    let (mut dribbler, session, _cancel) = s.start(Duration::from_millis(300));
    let bytes = connect("cam-1@default", &s.password, None);
    // Half the CONNECT, then nothing more: the deadline covers the whole packet.
    dribbler.write_all(&bytes[..bytes.len() / 2]).await.unwrap();
    assert_eq!(end(session).await, SessionEnd::HandshakeTimeout);
}

#[tokio::test]
async fn unknown_users_wrong_passwords_and_foreign_wills_get_a_connack_refusal() {
    let s = setup().await;
    let cases = [
        (
            connect("ghost@default", "x", None),
            packet::CONNACK_NOT_AUTHORIZED,
        ),
        (
            connect("cam-1@default", "wrong", None),
            packet::CONNACK_BAD_CREDENTIALS,
        ),
        (
            connect(
                "cam-1@default",
                &s.password,
                Some(&format!("{PREFIX}/default/dev/cam-2/status")),
            ),
            packet::CONNACK_NOT_AUTHORIZED,
        ),
    ];
    for (bytes, code) in cases {
        let (mut client, session, _cancel) = s.start(DEADLINE);
        client.write_all(&bytes).await.unwrap();
        assert_eq!(read_exact(&mut client, 4).await, packet::connack(code));
        assert!(matches!(end(session).await, SessionEnd::Refused(_)));
    }
    // None of them reached the broker.
    let accepted = tokio::time::timeout(Duration::from_millis(1), s.upstream.accept()).await;
    assert!(accepted.is_err(), "the broker saw no connection");
}

#[tokio::test]
async fn a_fragmented_session_is_forwarded_and_a_foreign_subscription_answered_here() {
    let s = setup().await;
    let (mut client, session, _cancel) = s.start(DEADLINE);
    let mut sent = connect("cam-1@default", &s.password, Some(&own("status")));
    sent.extend(subscribe(7, &[&own("desired"), &own("blob/res")]));
    sent.extend(publish(&own("telemetry")));
    let refused = subscribe(8, &[&own("desired"), "#"]);
    sent.extend(&refused);
    sent.extend(packet(0xc0, &[])); // PINGREQ
                                    // One byte a write: every packet arrives across many reads.
    let writer = tokio::spawn(async move {
        for byte in sent {
            client.write_all(&[byte]).await.unwrap();
        }
        client
    });
    let (mut broker, _) = s.upstream.accept().await.unwrap();
    let mut expected = connect("cam-1@default", &s.password, Some(&own("status")));
    expected.extend(subscribe(7, &[&own("desired"), &own("blob/res")]));
    expected.extend(publish(&own("telemetry")));
    expected.extend(packet(0xc0, &[]));
    assert_eq!(read_exact(&mut broker, expected.len()).await, expected);

    let mut client = writer.await.unwrap();
    // The broker's CONNACK, split so the front's SUBACK must wait for its end.
    broker.write_all(&[0x20]).await.unwrap();
    broker.flush().await.unwrap();
    broker.write_all(&[0x02, 0x00, 0x00]).await.unwrap();
    let mut answer = read_exact(&mut client, 4).await;
    answer.extend(read_exact(&mut client, 6).await);
    assert_eq!(answer[..4], [0x20, 0x02, 0x00, 0x00]);
    assert_eq!(answer[4..], [0x90, 4, 0, 8, SUBACK_FAILURE, SUBACK_FAILURE]);
    drop(client);
    assert_eq!(end(session).await, SessionEnd::ClientClosed);
}

#[tokio::test]
async fn a_publish_to_another_devices_topic_closes_the_connection() {
    let s = setup().await;
    for topic in [
        format!("{PREFIX}/default/dev/cam-2/telemetry/ack"),
        own("desired"),
        format!("{PREFIX}/other/dev/cam-1/state"),
    ] {
        let (mut client, session, _cancel) = s.start(DEADLINE);
        let connect = connect("cam-1@default", &s.password, None);
        client.write_all(&connect).await.unwrap();
        let (mut broker, _) = s.upstream.accept().await.unwrap();
        assert_eq!(read_exact(&mut broker, connect.len()).await, connect);
        client.write_all(&publish(&topic)).await.unwrap();
        assert_eq!(end(session).await, SessionEnd::ForbiddenPublish { topic });
        let mut rest = Vec::new();
        broker.read_to_end(&mut rest).await.unwrap();
        assert!(
            rest.is_empty(),
            "the forbidden publish never reached the broker"
        );
    }
}

#[tokio::test]
async fn a_removed_device_is_disconnected_at_once() {
    let s = setup().await;
    let (mut client, session, _cancel) = s.start(DEADLINE);
    client
        .write_all(&connect("cam-1@default", &s.password, None))
        .await
        .unwrap();
    let (_broker, _) = s.upstream.accept().await.unwrap();
    s.fleet.remove("default", "cam-1").unwrap();
    assert_eq!(end(session).await, SessionEnd::Revoked);
}

#[tokio::test]
async fn oversized_and_garbage_streams_end_the_session_without_panicking() {
    let s = setup().await;
    let (mut client, session, _cancel) = s.start(DEADLINE);
    client
        .write_all(&[0x10, 0xff, 0xff, 0xff, 0x7f])
        .await
        .unwrap();
    assert!(matches!(end(session).await, SessionEnd::Protocol(e) if e.contains("over the limit")));

    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        let (mut client, session, _cancel) = s.start(Duration::from_millis(200));
        let mut garbage = Vec::new();
        for _ in 0..(seed % 300) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            garbage.push(seed as u8);
        }
        let _ = client.write_all(&garbage).await;
        drop(client);
        // Any end but a panic (a JoinError) is fine.
        let _ = end(session).await;
    }
    // Garbage after a good CONNECT, too.
    let (mut client, session, _cancel) = s.start(DEADLINE);
    client
        .write_all(&connect("cam-1@default", &s.password, None))
        .await
        .unwrap();
    let (_broker, _) = s.upstream.accept().await.unwrap();
    client
        .write_all(&[0x82, 0x03, 0x00, 0x01, 0xff])
        .await
        .unwrap();
    assert!(matches!(end(session).await, SessionEnd::Protocol(_)));
}
