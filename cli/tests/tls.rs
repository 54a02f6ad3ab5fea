//! The `shoal` binary against a hub serving TLS: it trusts the hub's CA through `SHOAL_CA` or
//! `--ca`, and `shoal device add` writes an agent config with an `mqtts://` broker and the
//! hub's CA pinned, which the agent's own parser accepts.

use shoal_hub::config::TlsSource;
use shoal_hub::{Hub, HubConfig};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_add_over_https_pins_the_hubs_ca() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = HubConfig::for_test(dir.path().join("hub"));
    config.tls = Some(TlsSource::Generated { extra_sans: vec![] });
    let hub = Hub::bind(config).await.unwrap();
    let url = format!("https://{}", hub.grpc_addr());
    let ca = hub.ca_path().expect("a generated CA").to_path_buf();
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let token = std::fs::read_to_string(hub.admin_token_path()).unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(hub.run(cancel.clone().cancelled_owned()));

    let shoal = |args: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
        command
            .args(args)
            .env("SHOAL_HUB", &url)
            .env("SHOAL_TOKEN", token.trim())
            .env_remove("SHOAL_CA")
            .env_remove("SHOAL_WORKSPACE");
        command
    };

    // Without the CA the hub's certificate is not trusted: one line, non-zero exit.
    let output = shoal(&["workspace", "list"]).output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // SHOAL_CA and --ca both name it.
    let agent_toml = dir.path().join("cam.toml");
    let output = shoal(&["device", "add", "cam", "--output"])
        .arg(&agent_toml)
        .env("SHOAL_CA", &ca)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = shoal(&["device", "list", "--ca"])
        .arg(&ca)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let text = std::fs::read_to_string(&agent_toml).unwrap();
    let file = shoal_agent::config::AgentConfigFile::parse(&text, "cam.toml").unwrap();
    assert!(file.hub.mqtt_url.starts_with("mqtts://"), "{text}");
    assert_eq!(file.hub.ca_pem.as_deref(), Some(ca_pem.as_str()));
    let checked = file
        .build_and_validate(&shoal_agent::config::Overrides::default())
        .expect("the agent accepts what the CLI wrote");
    assert!(checked.mqtt.tls.is_some());

    cancel.cancel();
    task.await.unwrap().unwrap();
}
