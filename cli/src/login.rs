//! `shoal login` and the config file it writes, as kubeconfig does: the hub, the token, the
//! CA bundle and the default workspace, so later commands need no flags.
//!
//! The file is `$SHOAL_CONFIG`, else `$XDG_CONFIG_HOME/shoal/config.toml`, else
//! `~/.config/shoal/config.toml`; it is written with mode 0600 because it holds a token.
//! Flags and the environment (`SHOAL_HUB`, `SHOAL_TOKEN`, `SHOAL_WORKSPACE`, `SHOAL_CA`)
//! override what it says (see [`crate::Settings`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, CliResult};

/// What the config file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The hub's gRPC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The CA bundle that signs the hub's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// The workspace commands act in when no `-w` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

/// Where the config file is, from the environment `var` reads (`None`: no home to put it in).
pub fn config_path(var: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(path) = set("SHOAL_CONFIG") {
        return Some(PathBuf::from(path));
    }
    if let Some(dir) = set("XDG_CONFIG_HOME") {
        return Some(Path::new(&dir).join("shoal").join("config.toml"));
    }
    set("HOME").map(|home| Path::new(&home).join(".config/shoal/config.toml"))
}

/// Reads the config file; a missing file is an empty config.
///
/// # Errors
/// A file that cannot be read or parsed, naming it.
pub fn load(path: &Path) -> CliResult<ConfigFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            CliError::Message(format!(
                "config file {} is not valid: {e} (fix it or run `shoal login` again)",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(CliError::Message(format!(
            "cannot read config file {}: {e}",
            path.display()
        ))),
    }
}

/// Writes the config file with mode 0600 (replacing it atomically), creating its folder.
///
/// # Errors
/// A folder or file that cannot be written, naming it.
pub fn save(path: &Path, config: &ConfigFile) -> CliResult<()> {
    use std::io::Write;
    let write_error = |source| CliError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_error)?;
    }
    let text = toml::to_string(config)
        .map_err(|e| CliError::Message(format!("cannot encode the config: {e}")))?;
    let temporary = path.with_extension("toml.tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary).map_err(write_error)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    std::fs::rename(&temporary, path).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_config_path_follows_shoal_config_then_xdg_then_home() {
        let all = env(&[
            ("SHOAL_CONFIG", "/etc/shoal.toml"),
            ("XDG_CONFIG_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(config_path(&all), Some(PathBuf::from("/etc/shoal.toml")));
        let xdg = env(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(
            config_path(&xdg),
            Some(PathBuf::from("/x/shoal/config.toml"))
        );
        let home = env(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "")]);
        assert_eq!(
            config_path(&home),
            Some(PathBuf::from("/h/.config/shoal/config.toml"))
        );
        assert_eq!(config_path(&env(&[])), None);
    }

    #[test]
    fn saved_configs_are_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/config.toml");
        assert_eq!(load(&path).unwrap(), ConfigFile::default());
        let config = ConfigFile {
            hub: Some("http://hub:7070".into()),
            token: Some("shoal_secret".into()),
            ca: Some("/etc/ca.pem".into()),
            workspace: Some("occ".into()),
        };
        save(&path, &config).unwrap();
        save(&path, &config).unwrap();
        assert_eq!(load(&path).unwrap(), config);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "hub = 3\n").unwrap();
        let bad = load(&path).unwrap_err().to_string();
        assert!(
            bad.contains("config.toml") && bad.contains("shoal login"),
            "{bad}"
        );
    }
}
