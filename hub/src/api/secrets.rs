//! `SecretService`: workspace secrets in, names and dates out; values never leave the hub
//! through the API.

use shoal_proto::secret::{self as pb, secret_service_server::SecretService};
use shoal_store::{SecretInfo, Vault, Workspaces};
use tonic::{Request, Response, Status};

use super::{authorize_in, status, workspace_or_default};

pub struct SecretApi {
    pub vault: Vault,
    pub workspaces: Workspaces,
}

fn to_wire(info: SecretInfo) -> pb::SecretInfo {
    pb::SecretInfo {
        workspace: info.workspace,
        name: info.name,
        created_ms: info.created_ms,
        updated_ms: info.updated_ms,
    }
}

#[tonic::async_trait]
impl SecretService for SecretApi {
    async fn set_secret(
        &self,
        request: Request<pb::SetSecretRequest>,
    ) -> Result<Response<pb::SecretInfo>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let workspace = workspace_or_default(&r.workspace);
        self.workspaces.require(workspace).map_err(status)?;
        let info = self
            .vault
            .set(workspace, &r.name, &r.value)
            .map_err(status)?;
        Ok(Response::new(to_wire(info)))
    }

    async fn list_secrets(
        &self,
        request: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let workspace = workspace_or_default(&r.workspace);
        self.workspaces.require(workspace).map_err(status)?;
        let secrets = self
            .vault
            .list(workspace)
            .map_err(status)?
            .into_iter()
            .map(to_wire)
            .collect();
        Ok(Response::new(pb::ListSecretsResponse { secrets }))
    }

    async fn delete_secret(
        &self,
        request: Request<pb::DeleteSecretRequest>,
    ) -> Result<Response<pb::DeleteSecretResponse>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let workspace = workspace_or_default(&r.workspace);
        self.vault.delete(workspace, &r.name).map_err(status)?;
        Ok(Response::new(pb::DeleteSecretResponse {}))
    }
}
