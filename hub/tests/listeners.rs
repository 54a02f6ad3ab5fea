//! The hub's listeners: plaintext only on loopback unless `--insecure` says so, a cap on
//! concurrent connections, and deadlines for the TLS handshake and for request heads, so a
//! client that connects and says nothing, or dribbles, is dropped.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use shoal_hub::config::{ListenerLimits, TlsSource};
use shoal_hub::{Hub, HubConfig};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The longest any step may take; a connection still open after it was not dropped.
const DEADLINE: Duration = Duration::from_secs(30);
/// Short deadlines for the tests that wait for them.
const SHORT: Duration = Duration::from_millis(300);

struct Running {
    grpc: SocketAddr,
    http: SocketAddr,
    mqtt: SocketAddr,
    ca_pem: Option<String>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<shoal_hub::HubResult<()>>,
    _dir: tempfile::TempDir,
}

async fn start(limits: ListenerLimits, tls: bool) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = HubConfig::for_test(dir.path().join("hub"));
    config.limits = limits;
    if tls {
        config.tls = Some(TlsSource::Generated { extra_sans: vec![] });
    }
    let hub = Hub::bind(config).await.expect("bind");
    let (grpc, http, mqtt) = (hub.grpc_addr(), hub.http_addr(), hub.mqtt_addr().unwrap());
    let ca_pem = hub.ca_pem().map(str::to_string);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(hub.run(cancel.clone().cancelled_owned()));
    Running {
        grpc,
        http,
        mqtt,
        ca_pem,
        cancel,
        task,
        _dir: dir,
    }
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the hub stops")
            .unwrap()
            .unwrap();
    }
}

/// Reads until the server closes the connection (whatever it sends first); panics if it is
/// still open after [`DEADLINE`].
async fn wait_until_closed<S: AsyncRead + Unpin>(stream: &mut S, what: &str) {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: the connection was not dropped");
}

/// Sends `bytes` one at a time, 50 ms apart, until the server closes the connection; panics
/// if it is still open after [`DEADLINE`] (or all bytes were sent and it still is).
async fn dribble_until_closed(addr: SocketAddr, bytes: &[u8], what: &str) {
    let stream = TcpStream::connect(addr).await.unwrap();
    dribble_on_until_closed(stream, bytes, what).await;
}

/// [`dribble_until_closed`] on a connection already made.
async fn dribble_on_until_closed<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    bytes: &[u8],
    what: &str,
) {
    let mut buf = [0u8; 1024];
    let dropped = tokio::time::timeout(DEADLINE, async {
        let mut next = bytes.iter();
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => continue,
                },
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    let Some(byte) = next.next() else {
                        // Every byte sent: the server must have closed by now or never will.
                        return stream.read(&mut buf).await.map_or(true, |n| n == 0);
                    };
                    if stream.write_all(&[*byte]).await.is_err() {
                        return true;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        dropped.unwrap_or(false),
        "{what}: a dribbling client was not dropped"
    );
}

/// A request head that never ends, for dribbling.
fn endless_http_head() -> Vec<u8> {
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Pad: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 2000));
    head
}

/// The HTTP/2 client preface, for dribbling.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The start of a TLS ClientHello record announcing 512 bytes, then padding: never complete
/// before the deadline when dribbled.
fn partial_client_hello() -> Vec<u8> {
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.extend(std::iter::repeat_n(0u8, 500));
    hello
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_dribbling_clients_are_dropped_after_the_header_timeout() {
    let hub = start(
        ListenerLimits {
            header_timeout: SHORT,
            ..ListenerLimits::default()
        },
        false,
    )
    .await;
    for (addr, what) in [(hub.http, "HTTP"), (hub.grpc, "gRPC")] {
        let mut silent = TcpStream::connect(addr).await.unwrap();
        wait_until_closed(&mut silent, &format!("{what}, silent")).await;
    }
    dribble_until_closed(hub.http, &endless_http_head(), "HTTP").await;
    dribble_until_closed(hub.grpc, H2_PREFACE, "gRPC").await;

    // A client that sends its request at once is served.
    let health = reqwest::get(format!("http://{}/healthz", hub.http))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    hub.stop().await;
}

/// A TLS connection to `addr` that trusts `ca_pem`, handshake done.
async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &str,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut config = (*shoal_proto::tls::client_config(Some(ca_pem)).unwrap()).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.expect("TLS handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_silent_and_dribbling_clients_are_dropped_after_the_header_timeout() {
    let hub = start(
        ListenerLimits {
            header_timeout: SHORT,
            ..ListenerLimits::default()
        },
        true,
    )
    .await;
    let ca = hub.ca_pem.clone().unwrap();
    for (addr, alpn, what) in [
        (hub.http, &b"http/1.1"[..], "HTTP"),
        (hub.grpc, b"h2", "gRPC"),
    ] {
        let mut silent = tls_connect(addr, &ca, alpn).await;
        wait_until_closed(&mut silent, &format!("{what} over TLS, silent")).await;
    }
    let stream = tls_connect(hub.http, &ca, b"http/1.1").await;
    dribble_on_until_closed(stream, &endless_http_head(), "HTTP over TLS").await;
    let stream = tls_connect(hub.grpc, &ca, b"h2").await;
    dribble_on_until_closed(stream, H2_PREFACE, "gRPC over TLS").await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_that_do_not_finish_in_time_are_dropped() {
    let hub = start(
        ListenerLimits {
            handshake_timeout: SHORT,
            ..ListenerLimits::default()
        },
        true,
    )
    .await;
    for (addr, what) in [(hub.http, "HTTP"), (hub.grpc, "gRPC"), (hub.mqtt, "MQTT")] {
        let mut silent = TcpStream::connect(addr).await.unwrap();
        wait_until_closed(&mut silent, &format!("{what} over TLS, silent")).await;
        dribble_until_closed(addr, &partial_client_hello(), &format!("{what} over TLS")).await;
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_until_a_slot_frees() {
    for tls in [false, true] {
        let hub = start(
            ListenerLimits {
                max_connections: 2,
                // Idle connections keep their slot for the whole test.
                handshake_timeout: DEADLINE * 4,
                header_timeout: DEADLINE * 4,
            },
            tls,
        )
        .await;
        for (addr, what) in [(hub.http, "HTTP"), (hub.grpc, "gRPC")] {
            let what = format!("{what} (tls: {tls})");
            let first = TcpStream::connect(addr).await.unwrap();
            let _second = TcpStream::connect(addr).await.unwrap();
            // Accepted in order: the third is over the cap.
            let mut third = TcpStream::connect(addr).await.unwrap();
            wait_until_closed(&mut third, &format!("{what}, third connection")).await;
            drop(first);
            // The first one's slot frees once the hub sees it close: then one more fits.
            let deadline = tokio::time::Instant::now() + DEADLINE;
            loop {
                let mut probe = TcpStream::connect(addr).await.unwrap();
                let mut buf = [0u8; 1];
                // Over the cap the hub closes at once; within it, it waits for us to speak.
                let open = tokio::time::timeout(SHORT, probe.read(&mut buf))
                    .await
                    .is_err();
                if open {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{what}: no slot freed after the first connection closed"
                );
            }
        }
        hub.stop().await;
    }
}

/// `shoal-hub serve` on ephemeral ports with these listen addresses and extra flags.
fn serve(dir: &std::path::Path, listen: [&str; 3], extra: &[&str]) -> tokio::process::Command {
    let binary = std::env::var("SHOAL_HUB_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_shoal-hub").to_string());
    let mut command = tokio::process::Command::new(binary);
    command
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--grpc-listen", listen[0], "--http-listen", listen[1]])
        .args(["--mqtt-listen", listen[2]])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_beyond_loopback_is_refused_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let loopback = "127.0.0.1:0";
    for (listen, flag) in [
        (["0.0.0.0:0", loopback, loopback], "--grpc-listen"),
        ([loopback, "0.0.0.0:0", loopback], "--http-listen"),
        ([loopback, loopback, "0.0.0.0:0"], "--mqtt-listen"),
    ] {
        let output = tokio::time::timeout(DEADLINE, serve(dir.path(), listen, &[]).output())
            .await
            .expect("the hub exits")
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{flag}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("--tls") && stderr.contains("--insecure"),
            "the refusal names the listener and the ways out: {stderr}"
        );
    }

    // --insecure says so; --tls needs no such flag.
    for extra in [&["--insecure"][..], &["--tls"][..]] {
        let mut child = serve(dir.path(), ["0.0.0.0:0", loopback, loopback], extra)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.starts_with("shoal-hub: gRPC ") {
                    return;
                }
            }
            panic!("shoal-hub {extra:?} exited before serving");
        })
        .await
        .expect("the hub starts");
        child.kill().await.unwrap();
    }
}
