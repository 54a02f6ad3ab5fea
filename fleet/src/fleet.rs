//! Devices: enrollment with their own MQTT credentials, and what they last reported.
//!
//! The hub keeps a salted hash of each device's password. The embedded broker asks
//! [`DeviceAuth`] about every connection; the MQTT loop feeds status and reported state in here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use base64::Engine;
use prost::Message;
use serde::{Deserialize, Serialize};
use shoal_proto::device::ReportedState;

use shoal_store::secrets::constant_time_eq;
use tokio::sync::watch;

use crate::access::Principal;
use crate::credentials::{verify_password, DevicePassword};
use crate::error::{FleetError, FleetResult};
use crate::telemetry::Rejection;
use shoal_store::check_name;
use shoal_store::storage::Records;
use shoal_store::workspace::Workspaces;

pub const TREE: &str = "devices";

/// The tree of hub-wide counters.
pub const COUNTERS_TREE: &str = "counters";
/// The counter desired-state revisions are taken from.
const REVISION_COUNTER: &str = "desired_revision";

/// The model the hub wants on a device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Desired {
    /// Taken from one hub-wide counter at every change, so it only grows for a device and is
    /// never reused, even for a device removed and enrolled again under the same id: an
    /// agent refuses anything lower than what it already accepted.
    pub revision: u64,
    pub deployment: String,
    pub model: String,
    pub version: u32,
    pub digest: String,
    /// The version's drift baseline blob (digest, size) when the revision was taken: what
    /// the revision's manifest refers to, so re-publishing it is always the same bytes. With
    /// `digest`, the only blobs this device may fetch.
    #[serde(default)]
    pub baseline: Option<(String, u64)>,
    /// The model version the device was told to run before this one (what it moves away
    /// from): its windows are still accepted while the device switches.
    #[serde(default)]
    pub moving_from: Option<(String, u32)>,
}

impl Desired {
    /// Whether windows about `model@version` are accepted from this device: the version it
    /// is assigned, or the one it is moving away from.
    pub fn accepts_windows_of(&self, model: &str, version: u32) -> bool {
        (self.model == model && self.version == version)
            || self
                .moving_from
                .as_ref()
                .is_some_and(|(m, v)| m == model && *v == version)
    }

    /// Whether a device assigned this may fetch blob `digest` (its model or its baseline).
    pub fn references_blob(&self, digest: &str) -> bool {
        self.digest == digest || self.baseline.as_ref().is_some_and(|(d, _)| d == digest)
    }
}

/// What a desired state names: the deployment, the version and its blobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment<'a> {
    pub deployment: &'a str,
    pub model: &'a str,
    pub version: u32,
    pub digest: &'a str,
    /// The drift baseline blob: digest and size.
    pub baseline: Option<(&'a str, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    pub workspace: String,
    pub id: String,
    pub tags: BTreeMap<String, String>,
    pub created_at_ms: i64,
    pub password_salt: String,
    pub password_hash: String,
    /// The password in Mosquitto's password-file format, for external brokers (devices
    /// enrolled before it was kept have none: re-enroll them to use Mosquitto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mosquitto_hash: Option<String>,
    pub online: bool,
    pub last_seen_ms: i64,
    /// The last `ReportedState` protobuf, base64: kept as the device sent it.
    #[serde(default)]
    pub reported: Option<String>,
    #[serde(default)]
    pub desired: Option<Desired>,
}

impl Device {
    pub fn reported_state(&self) -> Option<ReportedState> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.reported.as_ref()?)
            .ok()?;
        ReportedState::decode(bytes.as_slice()).ok()
    }

    /// The MQTT username of this device.
    pub fn mqtt_username(&self) -> String {
        mqtt_username(&self.workspace, &self.id)
    }
}

/// A report the hub would not record, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RefusedReport {
    /// What it is counted as.
    pub reason: Rejection,
    pub message: String,
}

/// Devices log in as `{device}@{workspace}`: ids are unique only within a workspace.
pub fn mqtt_username(workspace: &str, id: &str) -> String {
    format!("{id}@{workspace}")
}

/// A new device and its one-time-shown password.
pub struct Enrollment {
    pub device: Device,
    pub password: String,
}

/// Credentials the broker checks connections against, kept in memory and refreshed on every
/// enrollment or removal. Every removal is announced on [`DeviceAuth::revocations`], so the
/// embedded broker's front can end the sessions of credentials that no longer hold.
pub struct DeviceAuth {
    /// username → the device and its password's salted hash.
    devices: RwLock<HashMap<String, DeviceLogin>>,
    /// The hub's own MQTT login, regenerated at every start.
    hub: RwLock<Option<(String, String)>>,
    /// Bumped after every removal of a login.
    revocations: watch::Sender<u64>,
}

#[derive(Clone)]
struct DeviceLogin {
    workspace: String,
    id: String,
    salt: String,
    hash: String,
}

/// A successful login: who it is, and the credential it used, so that [`DeviceAuth::holds`]
/// can later tell whether that credential still stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub principal: Principal,
    /// The stored hash (a device) or password (the hub) the login matched.
    credential: String,
}

impl Default for DeviceAuth {
    fn default() -> Self {
        DeviceAuth {
            devices: RwLock::default(),
            hub: RwLock::default(),
            revocations: watch::channel(0).0,
        }
    }
}

impl DeviceAuth {
    pub fn set_hub_login(&self, username: &str, password: &str) {
        *self.hub.write().unwrap_or_else(|p| p.into_inner()) =
            Some((username.into(), password.into()));
        self.revocations.send_modify(|n| *n += 1);
    }

    /// The hub's MQTT login (user name and password), once set.
    pub fn hub_login(&self) -> Option<(String, String)> {
        self.hub.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The hub's MQTT username, once set.
    pub fn hub_username(&self) -> Option<String> {
        let hub = self.hub.read().unwrap_or_else(|p| p.into_inner());
        hub.as_ref().map(|(user, _)| user.clone())
    }

    fn insert(&self, device: &Device) {
        self.devices
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                device.mqtt_username(),
                DeviceLogin {
                    workspace: device.workspace.clone(),
                    id: device.id.clone(),
                    salt: device.password_salt.clone(),
                    hash: device.password_hash.clone(),
                },
            );
    }

    fn remove(&self, username: &str) {
        let removed = self
            .devices
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(username);
        if removed.is_some() {
            tracing::info!(%username, "device login revoked");
            self.revocations.send_modify(|n| *n += 1);
        }
    }

    /// Whether a connection may log in.
    pub fn check(&self, username: &str, password: &str) -> bool {
        self.login(username, password).is_some()
    }

    /// Whether `username` is the hub's or an enrolled device's (before any password check).
    pub fn knows(&self, username: &str) -> bool {
        self.hub_username().as_deref() == Some(username)
            || self
                .devices
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(username)
    }

    /// Checks a login and says who it is; `None` for an unknown user or a wrong password.
    pub fn login(&self, username: &str, password: &str) -> Option<Login> {
        if let Some((hub_user, hub_password)) = &*self.hub.read().unwrap_or_else(|p| p.into_inner())
        {
            if username == hub_user {
                return constant_time_eq(password.as_bytes(), hub_password.as_bytes()).then(|| {
                    Login {
                        username: username.into(),
                        principal: Principal::Hub,
                        credential: hub_password.clone(),
                    }
                });
            }
        }
        let devices = self.devices.read().unwrap_or_else(|p| p.into_inner());
        let device = devices.get(username)?;
        verify_password(&device.salt, &device.hash, password).then(|| Login {
            username: username.into(),
            principal: Principal::Device {
                workspace: device.workspace.clone(),
                device: device.id.clone(),
            },
            credential: device.hash.clone(),
        })
    }

    /// Whether the credential `login` used still stands: false once the device is removed
    /// (even if it was enrolled again since, with a new password) or the hub's login changed.
    pub fn holds(&self, login: &Login) -> bool {
        match login.principal {
            Principal::Hub => {
                let hub = self.hub.read().unwrap_or_else(|p| p.into_inner());
                hub.as_ref().is_some_and(|(user, password)| {
                    *user == login.username && *password == login.credential
                })
            }
            Principal::Device { .. } => self
                .devices
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&login.username)
                .is_some_and(|device| device.hash == login.credential),
        }
    }

    /// Changes whenever a login is revoked: a device removed (alone or with its workspace) or
    /// the hub's login replaced. Holders of a [`Login`] re-check it with [`DeviceAuth::holds`].
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }
}

#[derive(Clone)]
pub struct Fleet {
    records: Records,
    workspaces: Workspaces,
    auth: Arc<DeviceAuth>,
}

fn key(workspace: &str, id: &str) -> String {
    format!("{workspace}/{id}")
}

impl Fleet {
    /// Loads every device's credentials into the broker's view.
    ///
    /// # Errors
    /// Storage errors.
    pub fn new(records: Records, workspaces: Workspaces) -> FleetResult<Fleet> {
        let auth = Arc::new(DeviceAuth::default());
        for device in records.scan::<Device>(TREE, "")? {
            auth.insert(&device);
        }
        Ok(Fleet {
            records,
            workspaces,
            auth,
        })
    }

    pub fn auth(&self) -> Arc<DeviceAuth> {
        self.auth.clone()
    }

    /// Registers a device and issues its MQTT password.
    ///
    /// # Errors
    /// `NotFound` for the workspace, `InvalidArgument` for the id, `AlreadyExists`.
    pub fn add(
        &self,
        workspace: &str,
        id: &str,
        tags: BTreeMap<String, String>,
    ) -> FleetResult<Enrollment> {
        self.workspaces.require(workspace)?;
        check_name("device id", id)?;
        let password = DevicePassword::generate()?;
        let device = Device {
            workspace: workspace.into(),
            id: id.into(),
            tags,
            created_at_ms: shoal_store::now_ms(),
            password_salt: password.salt,
            password_hash: password.hash,
            mosquitto_hash: Some(password.mosquitto_hash),
            online: false,
            last_seen_ms: 0,
            reported: None,
            desired: None,
        };
        if !self
            .records
            .insert_new(TREE, &key(workspace, id), &device)?
        {
            return Err(FleetError::already_exists("device", id));
        }
        self.records.flush()?;
        self.auth.insert(&device);
        tracing::info!(%workspace, device = %id, "device enrolled");
        Ok(Enrollment {
            device,
            password: password.password,
        })
    }

    /// # Errors
    /// `NotFound`.
    pub fn get(&self, workspace: &str, id: &str) -> FleetResult<Device> {
        self.records
            .get(TREE, &key(workspace, id))?
            .ok_or_else(|| FleetError::not_found("device", id))
    }

    /// # Errors
    /// `NotFound` for the workspace.
    pub fn list(&self, workspace: &str) -> FleetResult<Vec<Device>> {
        self.workspaces.require(workspace)?;
        Ok(self.records.scan(TREE, &format!("{workspace}/"))?)
    }

    /// Every device of every workspace (for re-publishing desired state at start-up).
    ///
    /// # Errors
    /// Storage errors.
    pub fn all(&self) -> FleetResult<Vec<Device>> {
        Ok(self.records.scan(TREE, "")?)
    }

    /// # Errors
    /// `NotFound`.
    pub fn remove(&self, workspace: &str, id: &str) -> FleetResult<()> {
        let device = self.get(workspace, id)?;
        self.records.delete(TREE, &key(workspace, id))?;
        self.auth.remove(&device.mqtt_username());
        Ok(())
    }

    /// Takes the next desired-state revision from the hub-wide counter (compare-and-swap, so
    /// two writers never get the same number).
    ///
    /// # Errors
    /// Storage errors.
    pub fn next_revision(&self) -> FleetResult<u64> {
        self.records
            .update::<u64, FleetError>(COUNTERS_TREE, REVISION_COUNTER, |current| {
                Ok(current.unwrap_or(0) + 1)
            })
    }

    /// Sets the desired model of a device, with a new revision.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn set_desired(
        &self,
        workspace: &str,
        id: &str,
        assignment: &Assignment,
    ) -> FleetResult<Device> {
        self.get(workspace, id)?;
        let revision = self.next_revision()?;
        self.records
            .update::<Device, FleetError>(TREE, &key(workspace, id), |current| {
                let mut device = current.ok_or_else(|| FleetError::not_found("device", id))?;
                let moving_from = match &device.desired {
                    Some(old)
                        if old.model != assignment.model || old.version != assignment.version =>
                    {
                        Some((old.model.clone(), old.version))
                    }
                    Some(old) => old.moving_from.clone(),
                    None => None,
                };
                device.desired = Some(Desired {
                    revision,
                    deployment: assignment.deployment.into(),
                    model: assignment.model.into(),
                    version: assignment.version,
                    digest: assignment.digest.into(),
                    baseline: assignment.baseline.map(|(d, n)| (d.to_string(), n)),
                    moving_from,
                });
                Ok(device)
            })
    }

    /// Records an online/offline report. Unknown devices are ignored (and logged).
    pub fn record_status(&self, workspace: &str, id: &str, online: bool) {
        self.touch(workspace, id, |device| device.online = online);
    }

    /// Records a reported state as the device sent it on its own `state` topic (`id` comes
    /// from the topic).
    ///
    /// # Errors
    /// [`RefusedReport`] for a payload that does not decode or that names another device: it
    /// is not recorded (the caller counts it). An unknown device is ignored (and logged).
    pub fn record_state(
        &self,
        workspace: &str,
        id: &str,
        payload: &[u8],
    ) -> Result<(), RefusedReport> {
        let state = ReportedState::decode(payload).map_err(|e| RefusedReport {
            reason: Rejection::Malformed,
            message: format!("malformed reported state: {e}"),
        })?;
        if state.device_id != id {
            return Err(RefusedReport {
                reason: Rejection::WrongDevice,
                message: format!(
                    "reported state of device '{}' arrived on the topic of '{id}'",
                    state.device_id
                ),
            });
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
        self.touch(workspace, id, |device| {
            device.reported = Some(encoded.clone());
            device.online = true;
        });
        Ok(())
    }

    fn touch(&self, workspace: &str, id: &str, mut change: impl FnMut(&mut Device)) {
        let now = shoal_store::now_ms();
        let result =
            self.records
                .update::<Device, FleetError>(TREE, &key(workspace, id), |current| {
                    let mut device = current.ok_or_else(|| FleetError::not_found("device", id))?;
                    change(&mut device);
                    device.last_seen_ms = now;
                    Ok(device)
                });
        if let Err(error) = result {
            tracing::debug!(%workspace, device = %id, %error, "ignored a report");
        }
    }
}

/// Devices are keyed `{workspace}/…`.
impl shoal_store::WorkspaceContents for Fleet {
    fn held(&self, workspace: &str) -> shoal_store::WorkspaceResult<Vec<String>> {
        let count = self.records.count(TREE, &format!("{workspace}/"))?;
        Ok(shoal_store::held_count(count, "device")
            .into_iter()
            .collect())
    }

    fn delete_all(&self, workspace: &str) -> shoal_store::WorkspaceResult<()> {
        // Their broker logins go with them, as with `remove`.
        for device in self
            .records
            .scan::<Device>(TREE, &format!("{workspace}/"))?
        {
            self.records.delete(TREE, &key(workspace, &device.id))?;
            self.auth.remove(&device.mqtt_username());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{hub, WS};
    use shoal_proto::device::{ActiveModel, ReportedState};
    use shoal_store::{ErrorCode, ServiceError, WorkspaceContents, WorkspaceError};

    fn tags() -> BTreeMap<String, String> {
        BTreeMap::from([("site".to_string(), "north".to_string())])
    }

    #[test]
    fn an_enrolled_device_logs_in_with_its_own_password_only() {
        let h = hub();
        let auth = h.fleet.auth();
        let enrollment = h.fleet.add(WS, "cam-1", tags()).unwrap();
        let username = "cam-1@default";
        assert_eq!(enrollment.device.mqtt_username(), username);
        assert!(auth.check(username, &enrollment.password));
        assert!(!auth.check(username, "guess"));
        assert!(!auth.check(username, ""));
        assert!(!auth.check("cam-1", &enrollment.password));
        assert!(!auth.check("cam-1@other", &enrollment.password));

        // The hub keeps a salted hash, never the password.
        let stored = h.fleet.get(WS, "cam-1").unwrap();
        assert_ne!(stored.password_hash, enrollment.password);
        assert!(!stored.password_salt.is_empty());
        assert!(crate::credentials::verify_password(
            &stored.password_salt,
            &stored.password_hash,
            &enrollment.password
        ));
        assert_eq!(stored.tags, tags());
        assert!(!stored.online);
        assert!(stored.desired.is_none());
        assert_eq!(h.fleet.list(WS).unwrap().len(), 1);
    }

    #[test]
    fn credentials_are_loaded_again_by_a_new_fleet_over_the_same_store() {
        let h = hub();
        let enrollment = h.fleet.add(WS, "cam-1", tags()).unwrap();
        let restarted = Fleet::new(h.records.clone(), h.workspaces.clone()).unwrap();
        assert!(restarted
            .auth()
            .check("cam-1@default", &enrollment.password));
    }

    #[test]
    fn the_hub_login_is_checked_apart_from_devices() {
        let h = hub();
        let auth = h.fleet.auth();
        let enrollment = h.fleet.add(WS, "cam-1", tags()).unwrap();
        auth.set_hub_login("hub-xyz", "hub-secret");
        assert!(auth.check("hub-xyz", "hub-secret"));
        assert!(!auth.check("hub-xyz", &enrollment.password));
        assert!(!auth.check("cam-1@default", "hub-secret"));
        assert!(auth.check("cam-1@default", &enrollment.password));
    }

    #[test]
    fn the_same_id_in_two_workspaces_is_two_devices_with_two_logins() {
        let h = hub();
        h.workspaces.create("lab", "").unwrap();
        let a = h.fleet.add(WS, "cam-1", tags()).unwrap();
        let b = h.fleet.add("lab", "cam-1", tags()).unwrap();
        let auth = h.fleet.auth();
        assert!(auth.check("cam-1@default", &a.password));
        assert!(auth.check("cam-1@lab", &b.password));
        assert!(!auth.check("cam-1@lab", &a.password));
        assert_eq!(h.fleet.list("lab").unwrap().len(), 1);
        assert_eq!(h.fleet.all().unwrap().len(), 2);
    }

    #[test]
    fn a_duplicate_device_id_is_refused_and_the_first_password_still_works() {
        let h = hub();
        let first = h.fleet.add(WS, "cam-1", tags()).unwrap();
        let error = h
            .fleet
            .add(WS, "cam-1", BTreeMap::new())
            .err()
            .expect("a taken id is refused");
        assert!(
            matches!(error, FleetError::AlreadyExists { kind: "device", .. }),
            "{error:?}"
        );
        assert_eq!(error.error_code(), ErrorCode::AlreadyExists);
        assert!(h.fleet.auth().check("cam-1@default", &first.password));
        // The first enrollment's record is untouched.
        assert_eq!(h.fleet.get(WS, "cam-1").unwrap().tags, tags());
    }

    #[test]
    fn a_bad_device_id_or_unknown_workspace_is_refused() {
        let h = hub();
        for id in ["", "a/b", "a+", "a#", "has space", &"x".repeat(65)] {
            let error = h
                .fleet
                .add(WS, id, BTreeMap::new())
                .err()
                .unwrap_or_else(|| panic!("'{id}' is refused"));
            assert_eq!(error.error_code(), ErrorCode::InvalidArgument, "{id}");
            assert!(error.to_string().contains("device id"), "{error}");
        }
        let error = h
            .fleet
            .add("nowhere", "cam-1", BTreeMap::new())
            .err()
            .unwrap();
        assert_eq!(error.error_code(), ErrorCode::NotFound, "{error:?}");
        assert!(h.fleet.all().unwrap().is_empty());
        assert_eq!(
            h.fleet.list("nowhere").unwrap_err().error_code(),
            ErrorCode::NotFound
        );
    }

    #[test]
    fn a_removed_device_can_no_longer_log_in() {
        let h = hub();
        let enrollment = h.fleet.add(WS, "cam-1", tags()).unwrap();
        let keep = h.fleet.add(WS, "cam-2", tags()).unwrap();
        h.fleet.remove(WS, "cam-1").unwrap();
        assert!(!h.fleet.auth().check("cam-1@default", &enrollment.password));
        assert!(h.fleet.auth().check("cam-2@default", &keep.password));
        assert!(matches!(
            h.fleet.get(WS, "cam-1"),
            Err(FleetError::NotFound { kind: "device", .. })
        ));
        assert!(matches!(
            h.fleet.remove(WS, "cam-1"),
            Err(FleetError::NotFound { .. })
        ));
        // The id can be enrolled again, with a new password.
        let again = h.fleet.add(WS, "cam-1", tags()).unwrap();
        assert_ne!(again.password, enrollment.password);
        assert!(h.fleet.auth().check("cam-1@default", &again.password));
        assert!(!h.fleet.auth().check("cam-1@default", &enrollment.password));
    }

    #[test]
    fn each_desired_state_change_takes_the_next_revision() {
        let h = hub();
        h.fleet.add(WS, "cam-1", tags()).unwrap();
        let assign = |deployment, version, digest| Assignment {
            deployment,
            model: "sensor",
            version,
            digest,
            baseline: None,
        };
        let first = h
            .fleet
            .set_desired(WS, "cam-1", &assign("d1", 1, "aa"))
            .unwrap();
        assert_eq!(first.desired.unwrap().revision, 1);
        let second = h
            .fleet
            .set_desired(WS, "cam-1", &assign("d2", 2, "bb"))
            .unwrap();
        assert_eq!(
            second.desired,
            Some(Desired {
                revision: 2,
                deployment: "d2".into(),
                model: "sensor".into(),
                version: 2,
                digest: "bb".into(),
                baseline: None,
                moving_from: Some(("sensor".into(), 1)),
            })
        );
        assert_eq!(h.fleet.get(WS, "cam-1").unwrap().desired, second.desired);
        assert!(matches!(
            h.fleet.set_desired(WS, "ghost", &assign("d1", 1, "aa")),
            Err(FleetError::NotFound { .. })
        ));

        // Revisions come from one hub-wide counter: another device, or the same id removed
        // and enrolled again, never gets a number handed out before.
        h.fleet.add(WS, "cam-2", tags()).unwrap();
        let other = h
            .fleet
            .set_desired(WS, "cam-2", &assign("d1", 1, "aa"))
            .unwrap();
        assert_eq!(other.desired.unwrap().revision, 3);
        h.fleet.remove(WS, "cam-1").unwrap();
        h.fleet.add(WS, "cam-1", tags()).unwrap();
        let again = h
            .fleet
            .set_desired(WS, "cam-1", &assign("d1", 1, "aa"))
            .unwrap();
        assert_eq!(again.desired.unwrap().revision, 4);
    }

    #[test]
    fn reports_update_the_device_and_unknown_devices_are_ignored() {
        let h = hub();
        h.fleet.add(WS, "cam-1", tags()).unwrap();
        h.fleet.record_status(WS, "cam-1", true);
        let device = h.fleet.get(WS, "cam-1").unwrap();
        assert!(device.online);
        assert!(device.last_seen_ms > 0);
        h.fleet.record_status(WS, "cam-1", false);
        assert!(!h.fleet.get(WS, "cam-1").unwrap().online);

        let state = ReportedState {
            device_id: "cam-1".into(),
            agent_version: "0.1.0".into(),
            active: Some(ActiveModel {
                model: "sensor".into(),
                version: 3,
                digest: "cc".into(),
            }),
            ..Default::default()
        };
        h.fleet
            .record_state(WS, "cam-1", &state.encode_to_vec())
            .unwrap();
        let device = h.fleet.get(WS, "cam-1").unwrap();
        assert!(device.online, "a state report means the device is online");
        assert_eq!(device.reported_state(), Some(state.clone()));

        // A state naming another device, or one that does not decode, is refused and changes
        // nothing.
        h.fleet.add(WS, "cam-2", tags()).unwrap();
        let error = h
            .fleet
            .record_state(WS, "cam-2", &state.encode_to_vec())
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("device 'cam-1' arrived on the topic of 'cam-2'"),
            "{error}"
        );
        assert!(h.fleet.get(WS, "cam-2").unwrap().reported.is_none());
        assert!(h.fleet.record_state(WS, "cam-2", b"\xff\xff").is_err());

        // Neither creates a device.
        h.fleet.record_status(WS, "ghost", true);
        let ghost = ReportedState {
            device_id: "ghost".into(),
            ..Default::default()
        };
        h.fleet
            .record_state(WS, "ghost", &ghost.encode_to_vec())
            .unwrap();
        assert_eq!(h.fleet.all().unwrap().len(), 2);
    }

    #[test]
    fn workspace_contents_count_devices_and_delete_them() {
        let h = hub();
        h.workspaces.create("lab", "").unwrap();
        assert!(h.fleet.held(WS).unwrap().is_empty());
        h.fleet.add(WS, "cam-1", tags()).unwrap();
        h.fleet.add(WS, "cam-2", tags()).unwrap();
        h.fleet.add("lab", "cam-1", tags()).unwrap();
        assert_eq!(h.fleet.held(WS).unwrap(), vec!["2 devices".to_string()]);

        let error = h.workspaces.delete(WS, false, &[&h.fleet]).unwrap_err();
        assert!(
            matches!(&error, WorkspaceError::NotEmpty { held, .. } if held == "2 devices"),
            "{error:?}"
        );
        assert_eq!(h.fleet.list(WS).unwrap().len(), 2);

        h.fleet.delete_all(WS).unwrap();
        assert!(h.fleet.held(WS).unwrap().is_empty());
        assert!(h.fleet.list(WS).unwrap().is_empty());
        assert_eq!(h.fleet.list("lab").unwrap().len(), 1);
    }

    #[test]
    fn removals_are_announced_and_end_the_logins_they_revoke() {
        let h = hub();
        h.workspaces.create("lab", "").unwrap();
        let auth = h.fleet.auth();
        let mut revocations = auth.revocations();
        let first = h.fleet.add(WS, "cam-1", tags()).unwrap();
        let other = h.fleet.add("lab", "cam-2", tags()).unwrap();
        let login = auth.login("cam-1@default", &first.password).unwrap();
        assert_eq!(
            login.principal,
            Principal::Device {
                workspace: WS.into(),
                device: "cam-1".into()
            }
        );
        let kept = auth.login("cam-2@lab", &other.password).unwrap();
        assert!(auth.holds(&login) && auth.holds(&kept));
        assert!(
            !revocations.has_changed().unwrap(),
            "enrolling revokes nothing"
        );

        h.fleet.remove(WS, "cam-1").unwrap();
        assert!(revocations.has_changed().unwrap());
        revocations.borrow_and_update();
        assert!(!auth.holds(&login));
        assert!(auth.holds(&kept));
        // Enrolled again under the same id: the old session's credential still does not hold.
        let again = h.fleet.add(WS, "cam-1", tags()).unwrap();
        assert!(!auth.holds(&login));
        assert!(auth.holds(&auth.login("cam-1@default", &again.password).unwrap()));

        h.workspaces.delete("lab", true, &[&h.fleet]).unwrap();
        assert!(revocations.has_changed().unwrap());
        assert!(!auth.holds(&kept));
        assert!(!auth.knows("cam-2@lab"));

        auth.set_hub_login("hub", "one");
        let hub_login = auth.login("hub", "one").unwrap();
        assert_eq!(hub_login.principal, Principal::Hub);
        assert!(auth.knows("hub"));
        auth.set_hub_login("hub", "two");
        assert!(!auth.holds(&hub_login));
    }

    #[test]
    fn devices_of_a_deleted_workspace_can_no_longer_log_in() {
        let h = hub();
        h.workspaces.create("lab", "").unwrap();
        let enrollment = h.fleet.add("lab", "cam-1", tags()).unwrap();
        h.workspaces.delete("lab", true, &[&h.fleet]).unwrap();
        assert!(!h.fleet.auth().check("cam-1@lab", &enrollment.password));
    }
}
