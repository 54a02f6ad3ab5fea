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

use crate::credentials::{verify_password, DevicePassword};
use crate::error::{FleetError, FleetResult};
use shoal_store::check_name;
use shoal_store::storage::Records;
use shoal_store::workspace::Workspaces;

pub const TREE: &str = "devices";

/// The model the hub wants on a device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Desired {
    /// Grows with every change, so an agent can tell a new desired state from a repeat.
    pub revision: u64,
    pub deployment: String,
    pub model: String,
    pub version: u32,
    pub digest: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    pub workspace: String,
    pub id: String,
    pub tags: BTreeMap<String, String>,
    pub created_at_ms: i64,
    pub password_salt: String,
    pub password_hash: String,
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
/// enrollment or removal.
#[derive(Default)]
pub struct DeviceAuth {
    /// username → (salt, hash).
    devices: RwLock<HashMap<String, (String, String)>>,
    /// The hub's own MQTT login, regenerated at every start.
    hub: RwLock<Option<(String, String)>>,
}

impl DeviceAuth {
    pub fn set_hub_login(&self, username: &str, password: &str) {
        *self.hub.write().unwrap_or_else(|p| p.into_inner()) =
            Some((username.into(), password.into()));
    }

    fn insert(&self, device: &Device) {
        self.devices
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                device.mqtt_username(),
                (device.password_salt.clone(), device.password_hash.clone()),
            );
    }

    fn remove(&self, username: &str) {
        self.devices
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(username);
    }

    /// Whether a connection may log in.
    pub fn check(&self, username: &str, password: &str) -> bool {
        if let Some((hub_user, hub_password)) = &*self.hub.read().unwrap_or_else(|p| p.into_inner())
        {
            if username == hub_user {
                return password == hub_password;
            }
        }
        let devices = self.devices.read().unwrap_or_else(|p| p.into_inner());
        match devices.get(username) {
            Some((salt, hash)) => verify_password(salt, hash, password),
            None => false,
        }
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

    /// Sets the desired model of a device, with the next revision.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn set_desired(
        &self,
        workspace: &str,
        id: &str,
        deployment: &str,
        model: &str,
        version: u32,
        digest: &str,
    ) -> FleetResult<Device> {
        self.records
            .update::<Device, FleetError>(TREE, &key(workspace, id), |current| {
                let mut device = current.ok_or_else(|| FleetError::not_found("device", id))?;
                let revision = device.desired.as_ref().map_or(0, |d| d.revision) + 1;
                device.desired = Some(Desired {
                    revision,
                    deployment: deployment.into(),
                    model: model.into(),
                    version,
                    digest: digest.into(),
                });
                Ok(device)
            })
    }

    /// Records an online/offline report. Unknown devices are ignored (and logged).
    pub fn record_status(&self, workspace: &str, id: &str, online: bool) {
        self.touch(workspace, id, |device| device.online = online);
    }

    /// Records a reported state as the device sent it.
    pub fn record_state(&self, workspace: &str, id: &str, payload: &[u8]) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
        self.touch(workspace, id, |device| {
            device.reported = Some(encoded.clone());
            device.online = true;
        });
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
        Ok(if count > 0 {
            vec![format!("{count} devices")]
        } else {
            Vec::new()
        })
    }

    fn delete_all(&self, workspace: &str) -> shoal_store::WorkspaceResult<()> {
        self.records.delete_prefix(TREE, &format!("{workspace}/"))?;
        Ok(())
    }
}
