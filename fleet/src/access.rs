//! Who may publish and subscribe where on the broker. One rule set, enforced by the embedded
//! broker's front (`shoal-hub`'s `broker_rules`) and written out as a Mosquitto ACL
//! ([`crate::mosquitto`]) for external brokers.
//!
//! A device may publish only on its own `status`, `state`, `blob/req` and `telemetry`, and
//! subscribe only to its own `desired`, `blob/res`, `telemetry/ack` and `cmd/#`. Topics the hub
//! writes (`desired`, `blob/res`, `telemetry/ack`, `events`) accept only the hub, which may
//! publish and subscribe anywhere under the topic prefix.

use shoal_proto::topics::{is_valid_segment, leaf, DeviceTopics};

/// The leaves a device publishes on, under its own topics.
pub const DEVICE_PUBLISHES: [&str; 4] = [
    leaf::STATUS,
    leaf::STATE,
    leaf::BLOB_REQUEST,
    leaf::TELEMETRY,
];

/// The leaves a device subscribes to, under its own topics.
pub const DEVICE_SUBSCRIBES: [&str; 3] = [leaf::DESIRED, leaf::BLOB_RESPONSE, leaf::TELEMETRY_ACK];

/// The command tree a device may subscribe to as a whole (`{device topics}/cmd/#`).
pub const DEVICE_COMMANDS: &str = "cmd";

/// Who a broker connection belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The hub's own login.
    Hub,
    /// An enrolled device.
    Device { workspace: String, device: String },
}

impl Principal {
    /// The device a `{device}@{workspace}` username names; `None` when it is not of that shape.
    pub fn device_from_username(username: &str) -> Option<Principal> {
        let (device, workspace) = username.rsplit_once('@')?;
        (is_valid_segment(device) && is_valid_segment(workspace)).then(|| Principal::Device {
            workspace: workspace.into(),
            device: device.into(),
        })
    }
}

/// The topic rules under one prefix.
#[derive(Debug, Clone)]
pub struct TopicRules {
    prefix: String,
}

impl TopicRules {
    pub fn new(prefix: &str) -> TopicRules {
        TopicRules {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Everything under the prefix: the hub's whole tree (`{prefix}/#`).
    pub fn hub_filter(&self) -> String {
        format!("{}/#", self.prefix)
    }

    /// The exact topics a device may publish on.
    pub fn device_publish_topics(&self, workspace: &str, device: &str) -> Vec<String> {
        let base = self.device_base(workspace, device);
        DEVICE_PUBLISHES
            .iter()
            .map(|leaf| format!("{base}/{leaf}"))
            .collect()
    }

    /// The filters a device may subscribe to: its own hub-written leaves and `cmd/#`.
    pub fn device_subscribe_filters(&self, workspace: &str, device: &str) -> Vec<String> {
        let base = self.device_base(workspace, device);
        DEVICE_SUBSCRIBES
            .iter()
            .map(|leaf| format!("{base}/{leaf}"))
            .chain(std::iter::once(format!("{base}/{DEVICE_COMMANDS}/#")))
            .collect()
    }

    /// Whether `who` may publish on `topic` (a topic name: wildcards are never allowed).
    pub fn may_publish(&self, who: &Principal, topic: &str) -> bool {
        if topic.contains(['+', '#', '\0']) {
            return false;
        }
        match who {
            Principal::Hub => self.under_prefix(topic),
            Principal::Device { workspace, device } => {
                let base = self.device_base(workspace, device);
                match topic
                    .strip_prefix(base.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                {
                    Some(leaf) => DEVICE_PUBLISHES.contains(&leaf),
                    None => false,
                }
            }
        }
    }

    /// Whether `who` may subscribe to `filter`. A device's filter must be one of its own topics
    /// exactly, or lie under its own `cmd/` level (where any wildcard stays inside it).
    pub fn may_subscribe(&self, who: &Principal, filter: &str) -> bool {
        if filter.is_empty() || filter.contains('\0') || filter.starts_with('$') {
            return false;
        }
        match who {
            Principal::Hub => self.under_prefix(filter),
            Principal::Device { workspace, device } => {
                let base = self.device_base(workspace, device);
                let Some(leaf) = filter
                    .strip_prefix(base.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                else {
                    return false;
                };
                if DEVICE_SUBSCRIBES.contains(&leaf) {
                    return true;
                }
                match leaf
                    .strip_prefix(DEVICE_COMMANDS)
                    .and_then(|r| r.strip_prefix('/'))
                {
                    Some(rest) => !rest.is_empty() && well_formed_filter(rest),
                    None => false,
                }
            }
        }
    }

    fn under_prefix(&self, topic: &str) -> bool {
        topic
            .strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.starts_with('/') && well_formed_filter(&rest[1..]))
    }

    fn device_base(&self, workspace: &str, device: &str) -> String {
        // `DeviceTopics` owns the layout; its leaf helper is private, so strip a known leaf.
        let status = DeviceTopics::new(&self.prefix, workspace, device).status();
        status
            .strip_suffix(leaf::STATUS)
            .and_then(|base| base.strip_suffix('/'))
            .unwrap_or(&status)
            .to_string()
    }
}

/// MQTT's rules for wildcards: `+` fills a whole level, `#` is a whole last level.
fn well_formed_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "+" => true,
        "#" => i == levels.len() - 1,
        other => !other.contains(['+', '#']),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(workspace: &str, device: &str) -> Principal {
        Principal::Device {
            workspace: workspace.into(),
            device: device.into(),
        }
    }

    #[test]
    fn usernames_name_devices() {
        assert_eq!(
            Principal::device_from_username("cam-1@default"),
            Some(cam("default", "cam-1"))
        );
        for bad in [
            "cam-1",
            "@default",
            "cam-1@",
            "a/b@default",
            "cam@+",
            "x@y@z",
            "",
        ] {
            assert_eq!(Principal::device_from_username(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_device_publishes_only_on_its_own_uplink_topics() {
        let rules = TopicRules::new("p/shoal/v1");
        let me = cam("default", "cam-1");
        for leaf in ["status", "state", "blob/req", "telemetry"] {
            assert!(
                rules.may_publish(&me, &format!("p/shoal/v1/default/dev/cam-1/{leaf}")),
                "{leaf}"
            );
        }
        for topic in [
            "p/shoal/v1/default/dev/cam-1/desired",
            "p/shoal/v1/default/dev/cam-1/blob/res",
            "p/shoal/v1/default/dev/cam-1/telemetry/ack",
            "p/shoal/v1/default/dev/cam-2/status",
            "p/shoal/v1/default/dev/cam-2/telemetry/ack",
            "p/shoal/v1/other/dev/cam-1/status",
            "p/shoal/v1/default/events",
            "p/shoal/v1/default/dev/cam-1/status/x",
            "p/shoal/v1/default/dev/cam-1",
            "p/shoal/v1/default/dev/cam-10/status",
            "q/shoal/v1/default/dev/cam-1/status",
            "p/shoal/v1/default/dev/cam-1/+",
            "",
        ] {
            assert!(!rules.may_publish(&me, topic), "{topic}");
        }
        assert_eq!(
            rules.device_publish_topics("default", "cam-1").len(),
            DEVICE_PUBLISHES.len()
        );
        for topic in rules.device_publish_topics("default", "cam-1") {
            assert!(rules.may_publish(&me, &topic), "{topic}");
        }
    }

    #[test]
    fn a_device_subscribes_only_to_its_own_downlink_topics() {
        let rules = TopicRules::new("shoal/v1");
        let me = cam("lab", "cam-1");
        for filter in rules.device_subscribe_filters("lab", "cam-1") {
            assert!(rules.may_subscribe(&me, &filter), "{filter}");
        }
        assert!(rules.may_subscribe(&me, "shoal/v1/lab/dev/cam-1/cmd/reboot"));
        assert!(rules.may_subscribe(&me, "shoal/v1/lab/dev/cam-1/cmd/+/x"));
        for filter in [
            "#",
            "+/#",
            "shoal/#",
            "shoal/v1/#",
            "shoal/v1/lab/#",
            "shoal/v1/lab/dev/+/desired",
            "shoal/v1/lab/dev/cam-1/#",
            "shoal/v1/lab/dev/cam-1/+",
            "shoal/v1/lab/dev/cam-2/desired",
            "shoal/v1/default/dev/cam-1/desired",
            "shoal/v1/lab/dev/cam-1/status",
            "shoal/v1/lab/dev/cam-1/cmd",
            "shoal/v1/lab/dev/cam-1/cmd/",
            "shoal/v1/lab/dev/cam-1/cmd/a#",
            "shoal/v1/lab/dev/cam-1/cmd/#/x",
            "shoal/v1/lab/events",
            "$SYS/#",
            "$share/g/shoal/v1/lab/dev/cam-1/desired",
            "",
        ] {
            assert!(!rules.may_subscribe(&me, filter), "{filter}");
        }
    }

    #[test]
    fn the_hub_may_use_everything_under_the_prefix_only() {
        let rules = TopicRules::new("shoal/v1");
        assert!(rules.may_publish(&Principal::Hub, "shoal/v1/lab/dev/cam-1/desired"));
        assert!(rules.may_subscribe(&Principal::Hub, "shoal/v1/+/dev/+/status"));
        assert!(rules.may_subscribe(&Principal::Hub, "shoal/v1/#"));
        assert!(!rules.may_publish(&Principal::Hub, "other/topic"));
        assert!(!rules.may_subscribe(&Principal::Hub, "#"));
        assert!(!rules.may_subscribe(&Principal::Hub, "shoal/v1x/#"));
        assert_eq!(rules.hub_filter(), "shoal/v1/#");
    }
}
