use shoal_proto::device::ReportedState;
use shoal_proto::fleet::{self as pb, fleet_service_server::FleetService};
use tonic::{Request, Response, Status};

use super::{status, workspace_or_default};
use shoal_fleet::fleet::{Device, Fleet};

pub struct FleetApi {
    pub fleet: Fleet,
    /// The broker URL devices are told to use.
    pub advertised_mqtt_url: String,
    pub topic_prefix: String,
    pub hub_public_key: String,
    /// The CA devices pin for the broker's TLS certificate; empty without TLS.
    pub hub_ca_pem: String,
    /// Clears a removed device's retained topics.
    /// Removes devices with their retained topics.
    pub deployments: shoal_fleet::Deployments,
}

pub(crate) fn device_to_wire(d: Device) -> pb::Device {
    let reported: Option<ReportedState> = d.reported_state();
    pb::Device {
        desired_model: d
            .desired
            .as_ref()
            .map(|x| format!("{}@{}", x.model, x.version))
            .unwrap_or_default(),
        desired_revision: d.desired.as_ref().map_or(0, |x| x.revision),
        workspace: d.workspace,
        id: d.id,
        tags: d.tags.into_iter().collect(),
        created_at_ms: d.created_at_ms,
        online: d.online,
        last_seen_ms: d.last_seen_ms,
        reported,
    }
}

#[tonic::async_trait]
impl FleetService for FleetApi {
    async fn add_device(
        &self,
        request: Request<pb::AddDeviceRequest>,
    ) -> Result<Response<pb::DeviceCredentials>, Status> {
        let r = request.into_inner();
        let enrollment = self
            .fleet
            .add(
                workspace_or_default(&r.workspace),
                &r.id,
                r.tags.into_iter().collect(),
            )
            .map_err(status)?;
        let username = enrollment.device.mqtt_username();
        Ok(Response::new(pb::DeviceCredentials {
            device: Some(device_to_wire(enrollment.device)),
            mqtt_url: self.advertised_mqtt_url.clone(),
            mqtt_username: username,
            mqtt_password: enrollment.password,
            topic_prefix: self.topic_prefix.clone(),
            hub_public_key: self.hub_public_key.clone(),
            hub_ca_pem: self.hub_ca_pem.clone(),
        }))
    }

    async fn get_device(
        &self,
        request: Request<pb::GetDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let r = request.into_inner();
        let device = self
            .fleet
            .get(workspace_or_default(&r.workspace), &r.id)
            .map_err(status)?;
        Ok(Response::new(device_to_wire(device)))
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let r = request.into_inner();
        let devices = self
            .fleet
            .list(workspace_or_default(&r.workspace))
            .map_err(status)?;
        Ok(Response::new(pb::ListDevicesResponse {
            devices: devices.into_iter().map(device_to_wire).collect(),
        }))
    }

    async fn remove_device(
        &self,
        request: Request<pb::RemoveDeviceRequest>,
    ) -> Result<Response<pb::RemoveDeviceResponse>, Status> {
        let r = request.into_inner();
        let workspace = workspace_or_default(&r.workspace);
        self.deployments
            .remove_device(workspace, &r.id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RemoveDeviceResponse {}))
    }
}
