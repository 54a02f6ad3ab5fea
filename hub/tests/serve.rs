//! The `shoal-hub` binary: starts on ephemeral ports, writes its secrets, stops cleanly on
//! SIGTERM, and refuses a bad configuration with exit code 64.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

const DEADLINE: Duration = Duration::from_secs(30);

/// `shoal-hub serve` in `dir` on ephemeral gRPC and HTTP ports, its broker on `mqtt_listen`.
/// `SHOAL_HUB_BIN` runs the tests against another build of the binary.
fn serve(dir: &std::path::Path, mqtt_listen: &str) -> tokio::process::Command {
    let binary = std::env::var("SHOAL_HUB_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_shoal-hub").to_string());
    let mut command = tokio::process::Command::new(binary);
    command.args(["serve", "--data-dir"]).arg(dir).args([
        "--grpc-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        mqtt_listen,
    ]);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_binary_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve(dir.path(), "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let banner = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("shoal-hub: gRPC ") {
                return line;
            }
        }
        panic!("shoal-hub exited before printing its addresses");
    })
    .await
    .expect("hub starts");
    // "shoal-hub: gRPC 127.0.0.1:P · HTTP 127.0.0.1:Q · MQTT mqtt://127.0.0.1:R · admin token in …"
    let http = banner
        .split(" · ")
        .nth(1)
        .unwrap()
        .trim_start_matches("HTTP ")
        .to_string();
    let health = reqwest::get(format!("http://{http}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["admin.token", "signing.key"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = Instant::now();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("hub stops after SIGTERM")
        .unwrap();
    assert!(
        status.success(),
        "clean exit, got {status:?} after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bad_configuration_exits_64_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal-hub"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args([
            "--mqtt-url",
            "http://broker:1883",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim(), "shoal-hub: invalid configuration: mqtt url 'http://broker:1883': unknown scheme 'http'; expected mqtt://host:port or mqtts://host:port");
}

/// Issue 8: with another broker (Mosquitto) on the MQTT port, the hub used to stop with
/// "cannot start: artifact store: Address already in use (os error 98)". It must name the
/// listener, the address, and the flags that are the way out.
#[tokio::test]
async fn a_taken_mqtt_port_is_named_with_the_way_out() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::time::timeout(
        DEADLINE,
        serve(dir.path(), &addr).env("RUST_LOG", "off").output(),
    )
    .await
    .expect("the hub gives up")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let line = stderr.trim();
    assert!(
        line.contains(&format!("cannot bind the MQTT listener to {addr}")),
        "{line}"
    );
    assert!(
        line.contains("--mqtt-listen") && line.contains("--mqtt-url"),
        "{line}"
    );
    assert!(!line.contains("artifact store"), "{line}");
    drop(taken);
}
