//! Deployments: a model version sent to a set of devices as their signed desired state.
//!
//! This first form sends to every target at once. The record already carries a strategy and
//! per-device status so staged rollouts (canary, waves, gates) extend it instead of replacing it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shoal_proto::device::{DesiredBody, DesiredState, UpdatePhase};

use crate::error::{FleetError, FleetResult};
use crate::fleet::{Assignment, Device, Fleet};
use crate::publish::DevicePublisher;
use shoal_registry::registry::Registry;
use shoal_registry::ManifestSigner;
use shoal_store::check_name;
use shoal_store::storage::Records;
use shoal_store::workspace::Workspaces;

pub const TREE: &str = "deployments";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    AllAtOnce,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    pub workspace: String,
    pub name: String,
    pub model: String,
    /// What the user asked for ("3", "production"), kept for the record.
    pub model_reference: String,
    /// The version the reference resolved to at creation.
    pub version: u32,
    pub digest: String,
    pub devices: Vec<String>,
    pub strategy: Strategy,
    pub created_at_ms: i64,
}

/// Where one device is with a deployment, derived from what it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRollout {
    pub device: String,
    /// pending, downloading, verifying, active, failed or superseded.
    pub state: &'static str,
    pub error: String,
}

#[derive(Clone)]
pub struct Deployments {
    records: Records,
    workspaces: Workspaces,
    registry: Registry,
    fleet: Fleet,
    signer: Arc<ManifestSigner>,
    publisher: Arc<dyn DevicePublisher>,
}

impl Deployments {
    pub fn new(
        records: Records,
        workspaces: Workspaces,
        registry: Registry,
        fleet: Fleet,
        signer: Arc<ManifestSigner>,
        publisher: Arc<dyn DevicePublisher>,
    ) -> Deployments {
        Deployments {
            records,
            workspaces,
            registry,
            fleet,
            signer,
            publisher,
        }
    }

    /// Creates a deployment and publishes the signed desired state to every target device.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name or no devices, `NotFound` for the model, version or a
    /// device, `AlreadyExists` for the name.
    pub async fn create(
        &self,
        workspace: &str,
        name: &str,
        model: &str,
        reference: &str,
        devices: Vec<String>,
    ) -> FleetResult<Deployment> {
        self.workspaces.require(workspace)?;
        check_name("deployment name", name)?;
        if devices.is_empty() {
            return Err(FleetError::invalid(
                "a deployment needs at least one device",
            ));
        }
        let version = self.registry.resolve(workspace, model, reference)?;
        let mut targets = Vec::with_capacity(devices.len());
        for id in &devices {
            if targets.iter().any(|d: &Device| &d.id == id) {
                continue;
            }
            targets.push(self.fleet.get(workspace, id)?);
        }
        let deployment = Deployment {
            workspace: workspace.into(),
            name: name.into(),
            model: model.into(),
            model_reference: if reference.is_empty() {
                shoal_registry::registry::LATEST.into()
            } else {
                reference.into()
            },
            version: version.version,
            digest: version.digest.clone(),
            devices: targets.iter().map(|d| d.id.clone()).collect(),
            strategy: Strategy::AllAtOnce,
            created_at_ms: shoal_store::now_ms(),
        };
        if !self
            .records
            .insert_new(TREE, &format!("{workspace}/{name}"), &deployment)?
        {
            return Err(FleetError::already_exists("deployment", name));
        }
        let assignment = Assignment {
            deployment: name,
            model,
            version: version.version,
            digest: &version.digest,
            baseline: version
                .baseline
                .as_ref()
                .map(|b| (b.digest.as_str(), b.size_bytes)),
        };
        for target in &targets {
            let device = self.fleet.set_desired(workspace, &target.id, &assignment)?;
            self.publish_desired(&device).await?;
        }
        self.records.flush()?;
        tracing::info!(%workspace, deployment = %name, model = %model, version = version.version, devices = targets.len(), "deployment created");
        Ok(deployment)
    }

    /// # Errors
    /// `NotFound`.
    pub fn get(&self, workspace: &str, name: &str) -> FleetResult<Deployment> {
        self.workspaces.require(workspace)?;
        self.records
            .get(TREE, &format!("{workspace}/{name}"))?
            .ok_or_else(|| FleetError::not_found("deployment", name))
    }

    /// # Errors
    /// `NotFound` for the workspace.
    pub fn list(&self, workspace: &str) -> FleetResult<Vec<Deployment>> {
        self.workspaces.require(workspace)?;
        Ok(self.records.scan(TREE, &format!("{workspace}/"))?)
    }

    /// Each target device's progress, from its last reported state.
    ///
    /// # Errors
    /// Storage errors.
    pub fn rollout_status(&self, deployment: &Deployment) -> FleetResult<Vec<DeviceRollout>> {
        let mut out = Vec::with_capacity(deployment.devices.len());
        for id in &deployment.devices {
            let device = match self.fleet.get(&deployment.workspace, id) {
                Ok(device) => device,
                Err(FleetError::NotFound { .. }) => {
                    out.push(DeviceRollout {
                        device: id.clone(),
                        state: "failed",
                        error: "device was removed".into(),
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            out.push(device_rollout(deployment, &device));
        }
        Ok(out)
    }

    /// The signed desired state of a device, if the hub wants a model on it: addressed to the
    /// device and its workspace, with the device's revision. Signing is deterministic, so the
    /// same revision always gives the same bytes (a re-publish after a restart is identical).
    ///
    /// # Errors
    /// `NotFound` when the desired version has disappeared.
    pub fn desired_state(&self, device: &Device) -> FleetResult<Option<DesiredState>> {
        let Some(desired) = &device.desired else {
            return Ok(None);
        };
        let version = self.registry.resolve(
            &device.workspace,
            &desired.model,
            &desired.version.to_string(),
        )?;
        let mut manifest = version.manifest();
        // The baseline the revision was taken with (blobs are never deleted): a baseline set
        // later comes with a new revision (`refresh_version`), never under an old one.
        manifest.baseline =
            desired
                .baseline
                .as_ref()
                .map(|(digest, size_bytes)| shoal_proto::device::BlobRef {
                    digest: digest.clone(),
                    size_bytes: *size_bytes,
                });
        Ok(Some(self.signer.sign_desired(&DesiredBody {
            workspace: device.workspace.clone(),
            device: device.id.clone(),
            deployment: desired.deployment.clone(),
            revision: desired.revision,
            model: Some(manifest),
        })))
    }

    /// Publishes a device's desired state (retained), if it has one.
    ///
    /// # Errors
    /// When the state cannot be built or the MQTT client is gone.
    pub async fn publish_desired(&self, device: &Device) -> FleetResult<()> {
        if let Some(state) = self.desired_state(device)? {
            self.publisher
                .publish_desired(&device.workspace, &device.id, &state)
                .await?;
        }
        Ok(())
    }

    /// Sets a version's drift baseline from a CSV file (see `Registry::set_baseline`) and
    /// tells the devices already running that version, so they bin their inputs over the new
    /// baseline from now on. A device that cannot be told now gets the new manifest with its
    /// next desired-state publish (every reconnect of the hub's client); that is logged.
    ///
    /// # Errors
    /// What the registry refuses.
    pub async fn set_baseline(
        &self,
        workspace: &str,
        name: &str,
        reference: &str,
        input: &str,
        features: Vec<String>,
        csv: std::path::PathBuf,
    ) -> FleetResult<shoal_registry::ModelVersion> {
        let version = self
            .registry
            .set_baseline(workspace, name, reference, input, features, csv)
            .await?;
        if let Err(error) = self
            .refresh_version(workspace, &version.model, version.version)
            .await
        {
            tracing::warn!(%error, "cannot tell devices about the new baseline");
        }
        Ok(version)
    }

    /// Removes a device: its record, its broker login, and its retained topics, so nothing
    /// stale greets a device enrolled again under the same id.
    ///
    /// # Errors
    /// `NotFound`; a publish error when the retained topics could not be cleared (the device
    /// is removed all the same).
    pub async fn remove_device(&self, workspace: &str, id: &str) -> FleetResult<()> {
        self.fleet.remove(workspace, id)?;
        self.publisher.clear_retained(workspace, id).await?;
        Ok(())
    }

    /// Gives every device that should run `model@version` a new revision and publishes it,
    /// after something in its signed manifest changed (a drift baseline set after
    /// deployment), so devices bin their inputs over the new baseline without a new
    /// deployment. Returns how many devices were told.
    ///
    /// # Errors
    /// When the fleet cannot be listed.
    pub async fn refresh_version(
        &self,
        workspace: &str,
        model: &str,
        version: u32,
    ) -> FleetResult<usize> {
        let mut told = 0;
        for device in self.fleet.all()? {
            let wants = device.workspace == workspace
                && device
                    .desired
                    .as_ref()
                    .is_some_and(|d| d.model == model && d.version == version);
            if !wants {
                continue;
            }
            let Some(desired) = device.desired.clone() else {
                continue;
            };
            let current = self
                .registry
                .resolve(workspace, model, &version.to_string())?;
            let device = self.fleet.set_desired(
                workspace,
                &device.id,
                &Assignment {
                    deployment: &desired.deployment,
                    model,
                    version,
                    digest: &desired.digest,
                    baseline: current
                        .baseline
                        .as_ref()
                        .map(|b| (b.digest.as_str(), b.size_bytes)),
                },
            )?;
            if let Err(error) = self.publish_desired(&device).await {
                tracing::warn!(device = %device.id, %error, "cannot re-publish desired state");
            } else {
                told += 1;
            }
        }
        if told > 0 {
            tracing::info!(%workspace, %model, version, devices = told, "new manifest published to the devices running it");
        }
        Ok(told)
    }

    /// Re-publishes every device's desired state: an embedded broker keeps retained messages
    /// in memory only, so after a restart the hub says again what each device should run.
    pub async fn republish_all(&self) {
        let devices = match self.fleet.all() {
            Ok(devices) => devices,
            Err(error) => {
                tracing::warn!(%error, "cannot list devices to re-publish desired state");
                return;
            }
        };
        for device in devices {
            if let Err(error) = self.publish_desired(&device).await {
                tracing::warn!(workspace = %device.workspace, device = %device.id, %error, "cannot re-publish desired state");
            }
        }
    }
}

fn device_rollout(deployment: &Deployment, device: &Device) -> DeviceRollout {
    let rollout = |state: &'static str, error: String| DeviceRollout {
        device: device.id.clone(),
        state,
        error,
    };
    let superseded = device
        .desired
        .as_ref()
        .is_some_and(|d| d.deployment != deployment.name);
    let reported = device.reported_state();
    let active = reported
        .as_ref()
        .and_then(|r| r.active.as_ref())
        .is_some_and(|a| a.digest == deployment.digest);
    if superseded {
        return rollout("superseded", String::new());
    }
    if active {
        return rollout("active", String::new());
    }
    let refused = reported
        .as_ref()
        .and_then(|r| r.refused.as_ref())
        .filter(|r| {
            device
                .desired
                .as_ref()
                .is_some_and(|d| d.revision == r.revision)
        });
    if let Some(refused) = refused {
        return rollout(
            "failed",
            format!("the device refused the desired state: {}", refused.reason),
        );
    }
    let update = reported
        .and_then(|r| r.update)
        .filter(|u| u.digest == deployment.digest);
    match update {
        None => rollout("pending", String::new()),
        Some(update) => {
            match UpdatePhase::try_from(update.phase).unwrap_or(UpdatePhase::Unspecified) {
                UpdatePhase::Downloading => rollout("downloading", String::new()),
                UpdatePhase::Verifying => rollout("verifying", String::new()),
                UpdatePhase::Active => rollout("active", String::new()),
                UpdatePhase::Failed => rollout("failed", update.error),
                UpdatePhase::Unspecified => rollout("pending", String::new()),
            }
        }
    }
}

/// Deployments are keyed `{workspace}/…`.
impl shoal_store::WorkspaceContents for Deployments {
    fn held(&self, workspace: &str) -> shoal_store::WorkspaceResult<Vec<String>> {
        let count = self.records.count(TREE, &format!("{workspace}/"))?;
        Ok(shoal_store::held_count(count, "deployment")
            .into_iter()
            .collect())
    }

    fn delete_all(&self, workspace: &str) -> shoal_store::WorkspaceResult<()> {
        self.records.delete_prefix(TREE, &format!("{workspace}/"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
