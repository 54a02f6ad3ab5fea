//! Real agent processes and a link that can be cut: for scenarios that kill an agent with
//! SIGKILL or take its broker away.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;
use shoal_agent::config::AgentConfigFile;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::{wait_for, DEADLINE};

/// A TCP proxy in front of a broker. [`LinkProxy::cut`] drops every connection and refuses new
/// ones until [`LinkProxy::restore`]: to the agent behind it, the broker is gone.
pub struct LinkProxy {
    pub url: String,
    up: Arc<AtomicBool>,
    /// Cancelled to drop the connections of one "link up" period.
    connections: Arc<std::sync::Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl LinkProxy {
    /// Proxies to the broker at `mqtt://host:port`.
    pub async fn start(broker_url: &str) -> LinkProxy {
        let target = shoal_proto::mqtt_url::MqttUrl::parse(broker_url).expect("broker url");
        let target = format!("{}:{}", target.host, target.port);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("mqtt://{}", listener.local_addr().expect("addr"));
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (up_task, connections_task, stop_task) =
            (up.clone(), connections.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    _ = stop_task.cancelled() => break,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                };
                if !up_task.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused, in effect
                }
                let cut = connections_task.lock().expect("lock").clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    }
                });
            }
        });
        LinkProxy {
            url,
            up,
            connections,
            stop,
        }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut token = self.connections.lock().expect("lock");
        token.cancel();
        *token = CancellationToken::new();
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.connections.lock().map(|t| t.cancel()).ok();
    }
}

/// A real agent process (this crate's `test-agent` binary, which is `shoal-agent`).
pub struct AgentProcess {
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    child: tokio::process::Child,
}

impl AgentProcess {
    /// Writes `config` next to `data_dir` and starts the agent binary on it (scenarios pass
    /// `env!("CARGO_BIN_EXE_test-agent")`), connecting to `mqtt_url` (a [`LinkProxy`], say)
    /// instead of the config's broker when given.
    pub async fn start(
        binary: &str,
        config: &AgentConfigFile,
        data_dir: &Path,
        mqtt_url: Option<&str>,
    ) -> AgentProcess {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let config_path = data_dir.with_extension("toml");
        std::fs::write(&config_path, toml::to_string(config).expect("config"))
            .expect("write config");
        let mut command = tokio::process::Command::new(binary);
        command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info,rumqttc=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(url) = mqtt_url {
            command.args(["--mqtt-url", url]);
        }
        let mut child = command.spawn().expect("spawn the agent");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                let line = strip_ansi(&line);
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("http_addr="))
                {
                    if let (Some(tx), Ok(addr)) = (tx.take(), addr.parse::<SocketAddr>()) {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let http_addr = tokio::time::timeout(DEADLINE, rx)
            .await
            .expect("the agent says where it listens")
            .expect("address");
        AgentProcess {
            http_addr,
            data_dir: data_dir.to_path_buf(),
            child,
        }
    }

    /// The process id, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: no shutdown, no flush, no goodbye.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("kill");
        tokio::time::timeout(crate::DEADLINE, self.child.wait())
            .await
            .expect("a SIGKILLed agent is reaped")
            .ok();
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = reqwest::get(format!("http://{}{path}", self.http_addr))
            .await
            .expect("agent answers");
        response.json().await.expect("json")
    }

    pub async fn infer(&self, body: &Value) -> u16 {
        reqwest::Client::new()
            .post(format!("http://{}/v1/infer", self.http_addr))
            .json(body)
            .send()
            .await
            .expect("agent answers")
            .status()
            .as_u16()
    }

    /// Waits until every answered request is in a closed window: the open one is empty and a
    /// window closed after `since_seq`. Returns the seq of the last closed window.
    pub async fn wait_for_closed_windows(&self, since_seq: Option<u64>) -> u64 {
        wait_for("the agent to close its window", || async {
            let model = self.get("/v1/model").await;
            let telemetry = &model["telemetry"];
            let open = telemetry["open_window"]["inferences"].as_u64().unwrap_or(0);
            let last = telemetry["last_closed_seq"].as_u64()?;
            (open == 0 && since_seq.is_none_or(|s| last > s)).then_some(last)
        })
        .await
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
