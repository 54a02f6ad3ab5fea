//! `shoal login`, `shoal token` and `shoal audit` as a user runs them: login saves hub and
//! token in a private config file that later commands read; flags and the environment win
//! over it; a token created with `-o json` is printed once and works; a reader cannot create.

use std::process::Output;

use shoal_hub::{Hub, HubConfig};
use tokio_util::sync::CancellationToken;

/// Runs `shoal` with only the environment given (no inherited SHOAL_* or config).
async fn shoal(config: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
    command
        .args(args)
        .env_remove("SHOAL_HUB")
        .env_remove("SHOAL_TOKEN")
        .env_remove("SHOAL_WORKSPACE")
        .env_remove("SHOAL_CA")
        .env("SHOAL_CONFIG", config);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().await.expect("run shoal")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "shoal failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_saves_a_private_config_that_tokens_and_audit_commands_use() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::bind(HubConfig::for_test(dir.path().join("hub")))
        .await
        .unwrap();
    let url = format!("http://{}", hub.grpc_addr());
    let admin = std::fs::read_to_string(hub.admin_token_path())
        .unwrap()
        .trim()
        .to_string();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(hub.run(cancel.clone().cancelled_owned()));
    let config = dir.path().join("cfg/shoal/config.toml");

    // A wrong token is not saved.
    let refused = shoal(
        &config,
        &[],
        &["login", "--hub", &url, "--token", "shoal_nope"],
    )
    .await;
    assert!(!refused.status.success());
    assert!(!config.exists());

    let logged_in = shoal(&config, &[], &["login", "--hub", &url, "--token", &admin]).await;
    stdout(&logged_in);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(saved.contains(&url) && saved.contains(&admin), "{saved}");

    // Later commands need no flags.
    let created = stdout(
        &shoal(
            &config,
            &[],
            &[
                "token",
                "create",
                "ci",
                "--role",
                "reader",
                "--expires",
                "30d",
                "-o",
                "json",
            ],
        )
        .await,
    );
    let created: serde_json::Value = serde_json::from_str(&created).expect("json");
    assert_eq!(created["name"], "ci");
    let secret = created["token"].as_str().expect("the secret").to_string();
    assert!(created["expires_at_ms"].as_i64().is_some(), "{created}");

    // The environment wins over the config file: act as the reader.
    let as_reader = [("SHOAL_TOKEN", secret.as_str())];
    let who = stdout(&shoal(&config, &as_reader, &["token", "whoami", "-o", "json"]).await);
    assert!(who.contains("\"ci\"") && who.contains("reader"), "{who}");
    let denied = shoal(&config, &as_reader, &["experiment", "create", "x"]).await;
    assert!(!denied.status.success());
    let message = String::from_utf8_lossy(&denied.stderr);
    assert!(message.contains("reader"), "{message}");

    let listed = stdout(&shoal(&config, &[], &["token", "list", "-o", "json"]).await);
    assert!(
        listed.contains("\"ci\"") && !listed.contains(&secret),
        "{listed}"
    );
    let audit = stdout(
        &shoal(
            &config,
            &[],
            &[
                "audit", "list", "--since", "1h", "--actor", "ci", "-o", "json",
            ],
        )
        .await,
    );
    let audit: serde_json::Value = serde_json::from_str(&audit).expect("json");
    assert_eq!(audit[0]["result"], "PERMISSION_DENIED", "{audit}");

    stdout(&shoal(&config, &[], &["token", "revoke", "ci"]).await);
    let revoked = shoal(&config, &as_reader, &["token", "whoami"]).await;
    assert!(!revoked.status.success());
    assert!(
        String::from_utf8_lossy(&revoked.stderr).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );

    cancel.cancel();
    task.await.unwrap().unwrap();
}
