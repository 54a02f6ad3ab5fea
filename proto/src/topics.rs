//! The MQTT topic layout shared by the hub and its agents.
//!
//! Every topic sits under a prefix (by default `shoal/v1`) and a workspace:
//! `{prefix}/{workspace}/dev/{device}/{leaf}`. A different prefix lets several hubs, or several
//! test runs, share one broker without seeing each other.

/// The prefix used unless a hub is configured otherwise.
pub const DEFAULT_PREFIX: &str = "shoal/v1";

/// The leaf topics under a device.
pub mod leaf {
    /// Online / offline, retained; also the agent's last will.
    pub const STATUS: &str = "status";
    /// Reported state, retained.
    pub const STATE: &str = "state";
    /// Desired state from the hub, retained.
    pub const DESIRED: &str = "desired";
    /// Blob chunk requests from the agent.
    pub const BLOB_REQUEST: &str = "blob/req";
    /// Blob chunks from the hub.
    pub const BLOB_RESPONSE: &str = "blob/res";
    /// Closed telemetry windows from the agent.
    pub const TELEMETRY: &str = "telemetry";
    /// The hub's acknowledgements of stored windows.
    pub const TELEMETRY_ACK: &str = "telemetry/ack";
}

/// The topics of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTopics {
    base: String,
}

impl DeviceTopics {
    pub fn new(prefix: &str, workspace: &str, device: &str) -> Self {
        Self {
            base: format!("{prefix}/{workspace}/dev/{device}"),
        }
    }

    pub fn status(&self) -> String {
        self.leaf(leaf::STATUS)
    }

    pub fn state(&self) -> String {
        self.leaf(leaf::STATE)
    }

    pub fn desired(&self) -> String {
        self.leaf(leaf::DESIRED)
    }

    pub fn blob_request(&self) -> String {
        self.leaf(leaf::BLOB_REQUEST)
    }

    pub fn blob_response(&self) -> String {
        self.leaf(leaf::BLOB_RESPONSE)
    }

    pub fn telemetry(&self) -> String {
        self.leaf(leaf::TELEMETRY)
    }

    pub fn telemetry_ack(&self) -> String {
        self.leaf(leaf::TELEMETRY_ACK)
    }

    fn leaf(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.base)
    }
}

/// The topic the hub publishes workspace events on (alerts, later rollout and registry events).
pub fn events(prefix: &str, workspace: &str) -> String {
    format!("{prefix}/{workspace}/events")
}

/// The subscription filter for one leaf across every device of every workspace under `prefix`.
pub fn all_devices_filter(prefix: &str, leaf: &str) -> String {
    format!("{prefix}/+/dev/+/{leaf}")
}

/// A device topic split into its workspace, device and leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedDeviceTopic<'a> {
    pub workspace: &'a str,
    pub device: &'a str,
    pub leaf: &'a str,
}

/// Splits `{prefix}/{workspace}/dev/{device}/{leaf}`; `None` for any other topic.
pub fn parse_device_topic<'a>(prefix: &str, topic: &'a str) -> Option<ParsedDeviceTopic<'a>> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let (workspace, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("dev/")?;
    let (device, leaf) = rest.split_once('/')?;
    if workspace.is_empty() || device.is_empty() || leaf.is_empty() {
        return None;
    }
    Some(ParsedDeviceTopic {
        workspace,
        device,
        leaf,
    })
}

/// Whether `name` may be used as a workspace or device id: it becomes one topic level, so no
/// MQTT wildcards, separators or control characters.
pub fn is_valid_segment(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        let topics = DeviceTopics::new("t1/shoal/v1", "default", "cam-01");
        assert_eq!(
            topics.blob_request(),
            "t1/shoal/v1/default/dev/cam-01/blob/req"
        );
        let topic = topics.blob_request();
        let parsed = parse_device_topic("t1/shoal/v1", &topic).unwrap();
        assert_eq!(
            parsed,
            ParsedDeviceTopic {
                workspace: "default",
                device: "cam-01",
                leaf: "blob/req"
            }
        );
        assert!(parse_device_topic("other", &topics.state()).is_none());
        assert!(parse_device_topic("t1/shoal/v1", "t1/shoal/v1/default/x/cam").is_none());
    }

    #[test]
    fn segments_refuse_wildcards() {
        assert!(is_valid_segment("cam-01"));
        assert!(!is_valid_segment("a/b"));
        assert!(!is_valid_segment("+"));
        assert!(!is_valid_segment(""));
    }
}
