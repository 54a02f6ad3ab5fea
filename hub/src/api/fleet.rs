use shoal_proto::device::ReportedState;
use shoal_proto::fleet::{self as pb, fleet_service_server::FleetService};
use tonic::{Request, Response, Status};

use super::{authorize, authorize_in, status, workspace_or_default};
use shoal_access::Target;
use shoal_fleet::access::TopicRules;
use shoal_fleet::fleet::{Device, Fleet};
use shoal_fleet::mosquitto::HubLogin;

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
    /// The hub's login on an external broker (from `--mqtt-url`), for the Mosquitto export.
    pub external_mqtt_login: Option<(String, Option<String>)>,
}

/// The hub's user name on a broker unless the request or `--mqtt-url` names another.
pub const DEFAULT_HUB_MQTT_USERNAME: &str = "shoal-hub";

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
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
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
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
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
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
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
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let workspace = workspace_or_default(&r.workspace);
        self.deployments
            .remove_device(workspace, &r.id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RemoveDeviceResponse {}))
    }

    async fn export_mosquitto_config(
        &self,
        request: Request<pb::ExportMosquittoConfigRequest>,
    ) -> Result<Response<pb::MosquittoConfig>, Status> {
        authorize(request.extensions(), Target::Hub)?;
        let r = request.into_inner();
        let (url_user, url_password) = self.external_mqtt_login.clone().unwrap_or_default();
        let username = [r.hub_username.as_str(), url_user.as_str()]
            .into_iter()
            .find(|u| !u.is_empty())
            .unwrap_or(DEFAULT_HUB_MQTT_USERNAME)
            .to_string();
        if username.contains(|c: char| c == ':' || c.is_whitespace() || c.is_control()) {
            return Err(Status::invalid_argument(format!(
                "hub user name {username:?}: no ':', spaces or control characters (it becomes a line of the password file)"
            )));
        }
        let password = Some(r.hub_password)
            .filter(|p| !p.is_empty())
            .or(url_password.filter(|_| r.hub_username.is_empty() || r.hub_username == url_user));
        let rules = TopicRules::new(&self.topic_prefix);
        let files = self
            .fleet
            .mosquitto_files(
                &rules,
                &HubLogin {
                    username: &username,
                    password: password.as_deref(),
                },
            )
            .map_err(status)?;
        Ok(Response::new(pb::MosquittoConfig {
            password_file: files.password_file,
            acl_file: files.acl_file,
            skipped: files.skipped,
            topic_prefix: self.topic_prefix.clone(),
            hub_username: username,
            hub_password_included: password.is_some(),
        }))
    }
}
