use shoal_proto::deployment::{self as pb, deployment_service_server::DeploymentService};
use tonic::{Request, Response, Status};

use super::{authorize_in, status, workspace_or_default};
use crate::error::HubError;
use shoal_fleet::deployment::{Deployment, Deployments, Strategy};

pub struct DeploymentApi {
    pub deployments: Deployments,
}

impl DeploymentApi {
    fn to_wire(&self, d: Deployment) -> Result<pb::Deployment, HubError> {
        let rollout = self.deployments.rollout_status(&d)?;
        Ok(pb::Deployment {
            workspace: d.workspace,
            name: d.name,
            model: d.model,
            model_reference: d.model_reference,
            version: d.version,
            digest: d.digest,
            devices: d.devices,
            strategy: match d.strategy {
                Strategy::AllAtOnce => pb::Strategy::AllAtOnce as i32,
            },
            created_at_ms: d.created_at_ms,
            status: rollout
                .into_iter()
                .map(|r| pb::DeviceRolloutStatus {
                    device_id: r.device,
                    state: r.state.into(),
                    error: r.error,
                })
                .collect(),
        })
    }
}

#[tonic::async_trait]
impl DeploymentService for DeploymentApi {
    async fn create_deployment(
        &self,
        request: Request<pb::CreateDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        match pb::Strategy::try_from(r.strategy) {
            Ok(pb::Strategy::Unspecified) | Ok(pb::Strategy::AllAtOnce) => {}
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown strategy {}",
                    r.strategy
                )))
            }
        }
        let created = self
            .deployments
            .create(
                workspace_or_default(&r.workspace),
                &r.name,
                &r.model,
                &r.model_reference,
                r.devices,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(self.to_wire(created).map_err(status)?))
    }

    async fn get_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let d = self
            .deployments
            .get(workspace_or_default(&r.workspace), &r.name)
            .map_err(status)?;
        Ok(Response::new(self.to_wire(d).map_err(status)?))
    }

    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let list = self
            .deployments
            .list(workspace_or_default(&r.workspace))
            .map_err(status)?;
        let mut deployments = Vec::with_capacity(list.len());
        for d in list {
            deployments.push(self.to_wire(d).map_err(status)?);
        }
        Ok(Response::new(pb::ListDeploymentsResponse { deployments }))
    }
}
