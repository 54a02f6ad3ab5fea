//! A Mosquitto password file and ACL file for the fleet, so an external Mosquitto enforces the
//! same rules ([`crate::access`]) the embedded broker's front does.
//!
//! Mosquitto's password file wants PBKDF2-SHA512 (`$7$`), which the hub's salted sha256 cannot
//! be turned into; the hub stores a Mosquitto-format hash when it issues a device password
//! ([`crate::credentials::mosquitto_hash`]). Devices enrolled before that have none: they are
//! listed in [`MosquittoFiles::skipped`] and must be enrolled again to use Mosquitto.

use crate::access::TopicRules;
use crate::credentials::mosquitto_hash;
use crate::error::FleetResult;
use crate::fleet::{Device, Fleet};

/// The files, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MosquittoFiles {
    /// `username:$7$…` lines: the hub (when its password was given) and every device.
    pub password_file: String,
    /// `user` blocks: the hub reads and writes under the prefix, each device its own topics.
    pub acl_file: String,
    /// Devices left out of the password file (no Mosquitto hash), with the reason.
    pub skipped: Vec<String>,
}

/// The hub's login on the external broker.
pub struct HubLogin<'a> {
    pub username: &'a str,
    /// Hashed into the password file; `None` leaves the hub's line out (add it with
    /// `mosquitto_passwd`).
    pub password: Option<&'a str>,
}

impl Fleet {
    /// The Mosquitto files for every device of every workspace.
    ///
    /// # Errors
    /// Storage errors, or the random source failing while hashing the hub's password.
    pub fn mosquitto_files(
        &self,
        rules: &TopicRules,
        hub: &HubLogin<'_>,
    ) -> FleetResult<MosquittoFiles> {
        let devices = self.all()?;
        Ok(mosquitto_files(&devices, rules, hub)?)
    }
}

fn mosquitto_files(
    devices: &[Device],
    rules: &TopicRules,
    hub: &HubLogin<'_>,
) -> Result<MosquittoFiles, shoal_store::RandomSourceError> {
    let mut password_file = String::new();
    let mut acl_file = format!(
        "# Shoal's topic rules for Mosquitto, written by `shoal broker mosquitto-config`.\n\
         # The hub reads and writes everything under {prefix}/; each device only its own topics.\n\n\
         user {hub}\ntopic readwrite {filter}\n",
        prefix = rules.prefix(),
        hub = hub.username,
        filter = rules.hub_filter(),
    );
    if let Some(password) = hub.password {
        password_file.push_str(&format!("{}:{}\n", hub.username, mosquitto_hash(password)?));
    }
    let mut skipped = Vec::new();
    for device in devices {
        let username = device.mqtt_username();
        let Some(hash) = &device.mosquitto_hash else {
            skipped.push(format!(
                "{username}: enrolled before the hub kept Mosquitto hashes; remove and add it again"
            ));
            continue;
        };
        password_file.push_str(&format!("{username}:{hash}\n"));
        acl_file.push_str(&format!("\nuser {username}\n"));
        for topic in rules.device_publish_topics(&device.workspace, &device.id) {
            acl_file.push_str(&format!("topic write {topic}\n"));
        }
        for filter in rules.device_subscribe_filters(&device.workspace, &device.id) {
            acl_file.push_str(&format!("topic read {filter}\n"));
        }
    }
    Ok(MosquittoFiles {
        password_file,
        acl_file,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{hub, WS};
    use std::collections::BTreeMap;

    #[test]
    fn every_device_gets_its_own_topics_and_the_hub_the_prefix() {
        let h = hub();
        h.workspaces.create("lab", "").unwrap();
        let a = h.fleet.add(WS, "cam-1", BTreeMap::new()).unwrap();
        h.fleet.add("lab", "cam-1", BTreeMap::new()).unwrap();
        let rules = TopicRules::new("t/shoal/v1");
        let files = h
            .fleet
            .mosquitto_files(
                &rules,
                &HubLogin {
                    username: "shoal-hub",
                    password: Some("hub-secret"),
                },
            )
            .unwrap();
        assert!(files.skipped.is_empty());
        let lines: Vec<&str> = files.password_file.lines().collect();
        assert_eq!(lines.len(), 3, "{}", files.password_file);
        assert!(lines[0].starts_with("shoal-hub:$7$101$"));
        let stored = h.fleet.get(WS, "cam-1").unwrap().mosquitto_hash.unwrap();
        assert!(lines.contains(&format!("cam-1@default:{stored}").as_str()));
        assert!(!files.password_file.contains(&a.password));

        let acl = &files.acl_file;
        assert!(
            acl.contains("user shoal-hub\ntopic readwrite t/shoal/v1/#\n"),
            "{acl}"
        );
        assert!(
            acl.contains(
                "user cam-1@lab\n\
             topic write t/shoal/v1/lab/dev/cam-1/status\n\
             topic write t/shoal/v1/lab/dev/cam-1/state\n\
             topic write t/shoal/v1/lab/dev/cam-1/blob/req\n\
             topic write t/shoal/v1/lab/dev/cam-1/telemetry\n\
             topic read t/shoal/v1/lab/dev/cam-1/desired\n\
             topic read t/shoal/v1/lab/dev/cam-1/blob/res\n\
             topic read t/shoal/v1/lab/dev/cam-1/telemetry/ack\n\
             topic read t/shoal/v1/lab/dev/cam-1/cmd/#\n"
            ),
            "{acl}"
        );
        // No device line grants a wildcard outside its own command tree.
        for line in acl.lines().filter(|l| l.starts_with("topic")) {
            let topic = line.rsplit(' ').next().unwrap();
            assert!(
                !topic.contains('+')
                    && (!topic.contains('#')
                        || topic.ends_with("/cmd/#")
                        || topic == "t/shoal/v1/#"),
                "{line}"
            );
        }
    }

    #[test]
    fn devices_without_a_mosquitto_hash_are_named_and_left_out() {
        let h = hub();
        h.fleet.add(WS, "cam-1", BTreeMap::new()).unwrap();
        let mut old = h.fleet.get(WS, "cam-1").unwrap();
        old.mosquitto_hash = None;
        let files = mosquitto_files(
            &[old],
            &TopicRules::new("shoal/v1"),
            &HubLogin {
                username: "shoal-hub",
                password: None,
            },
        )
        .unwrap();
        assert!(files.password_file.is_empty());
        assert!(!files.acl_file.contains("cam-1@default"));
        assert_eq!(files.skipped.len(), 1);
        assert!(
            files.skipped[0].contains("cam-1@default"),
            "{:?}",
            files.skipped
        );
    }
}
