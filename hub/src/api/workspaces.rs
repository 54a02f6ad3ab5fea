use shoal_proto::workspace::{self as pb, workspace_service_server::WorkspaceService};
use tonic::{Request, Response, Status};

use super::{authorize, caller, status};
use shoal_access::Target;
use shoal_store::workspace::{Workspace, Workspaces};

pub struct WorkspaceApi {
    pub workspaces: Workspaces,
    /// Domains whose records a deleted workspace takes with it (datasets, tracking, sweeps).
    pub contents: Vec<std::sync::Arc<dyn shoal_store::workspace::WorkspaceContents>>,
}

fn to_wire(w: Workspace) -> pb::Workspace {
    pb::Workspace {
        name: w.name,
        description: w.description,
        created_at_ms: w.created_at_ms,
    }
}

#[tonic::async_trait]
impl WorkspaceService for WorkspaceApi {
    async fn create_workspace(
        &self,
        request: Request<pb::CreateWorkspaceRequest>,
    ) -> Result<Response<pb::Workspace>, Status> {
        authorize(request.extensions(), Target::Hub)?;
        let r = request.into_inner();
        let created = self
            .workspaces
            .create(&r.name, &r.description)
            .map_err(status)?;
        Ok(Response::new(to_wire(created)))
    }

    async fn get_workspace(
        &self,
        request: Request<pb::GetWorkspaceRequest>,
    ) -> Result<Response<pb::Workspace>, Status> {
        authorize(
            request.extensions(),
            Target::Workspace(&request.get_ref().name),
        )?;
        let w = self
            .workspaces
            .get(&request.into_inner().name)
            .map_err(status)?;
        Ok(Response::new(to_wire(w)))
    }

    async fn list_workspaces(
        &self,
        request: Request<pb::ListWorkspacesRequest>,
    ) -> Result<Response<pb::ListWorkspacesResponse>, Status> {
        // Only the workspaces the caller may read.
        let identity = caller(request.extensions())?;
        let workspaces = self
            .workspaces
            .list()
            .map_err(status)?
            .into_iter()
            .filter(|w| identity.can_read(&w.name))
            .map(to_wire)
            .collect();
        Ok(Response::new(pb::ListWorkspacesResponse { workspaces }))
    }

    async fn delete_workspace(
        &self,
        request: Request<pb::DeleteWorkspaceRequest>,
    ) -> Result<Response<pb::DeleteWorkspaceResponse>, Status> {
        authorize(
            request.extensions(),
            Target::Workspace(&request.get_ref().name),
        )?;
        let r = request.into_inner();
        let contents: Vec<&dyn shoal_store::workspace::WorkspaceContents> =
            self.contents.iter().map(|c| c.as_ref()).collect();
        self.workspaces
            .delete(&r.name, r.force, &contents)
            .map_err(status)?;
        Ok(Response::new(pb::DeleteWorkspaceResponse {}))
    }
}
