//! The systemd units under `deploy/systemd` as written pass `systemd-analyze verify`, with the
//! binary they start installed at a test path (the check only needs an executable there).
//! Where the machine has no systemd-analyze, the test says so and checks nothing.

use std::path::Path;

fn verify(unit: &str, binary: &str) {
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed here: {unit} not verified");
        return;
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/systemd")
        .join(unit);
    let text = std::fs::read_to_string(&source).expect("read the unit");
    let dir = tempfile::tempdir().expect("temp dir");
    let installed = dir.path().join(binary);
    std::fs::copy("/bin/true", &installed).expect("install a stand-in binary");
    let text = text.replace(
        &format!("/usr/local/bin/{binary}"),
        &installed.display().to_string(),
    );
    assert!(
        text.contains(&installed.display().to_string()),
        "{unit} starts /usr/local/bin/{binary}"
    );
    let path = dir.path().join(unit);
    std::fs::write(&path, text).expect("write the unit");
    let output = std::process::Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "{unit}: {stderr}"
    );
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or(())
}

#[test]
fn the_hub_unit_verifies() {
    verify("shoal-hub.service", "shoal-hub");
}

/// The agent runs as a dynamic user; its root-owned 0600 config reaches it through
/// `LoadCredential=`, not by reading /etc/shoal itself.
#[test]
fn the_agent_unit_verifies_and_takes_its_config_as_a_credential() {
    verify("shoal-agent.service", "shoal-agent");
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/shoal-agent.service"),
    )
    .expect("read the unit");
    assert!(unit.contains("LoadCredential=agent.toml:/etc/shoal/agent.toml"));
    assert!(unit.contains("--config %d/agent.toml"));
}
