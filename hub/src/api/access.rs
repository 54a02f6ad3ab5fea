//! The access service: tokens (create, list, revoke), the audit log, and who am I. Owners
//! manage the tokens of the workspaces they own and read those workspaces' audit records;
//! admin and worker tokens, and the whole log, are the hub admin's.

use shoal_access::{
    AuditQuery, Identity, Least, NewToken, Role, Rule, Scope, Target, TokenRecord, TokenState,
    ADMIN_IDENTITY,
};
use shoal_proto::access::{self as pb, access_service_server::AccessService};
use tonic::{Request, Response, Status};

use super::guard::{authorize, authorize_as, caller};
use super::{status, workspace_or_default};
use shoal_access::Access;

pub struct AccessApi {
    pub access: Access,
}

/// A token as listings show it.
fn token_to_wire(record: &TokenRecord) -> pb::Token {
    pb::Token {
        name: record.name.clone(),
        role: record.scope.role_label(),
        workspaces: record.scope.workspaces(),
        created_at_ms: record.created_ms,
        created_by: record.created_by.clone(),
        expires_at_ms: record.expires_ms.unwrap_or(0),
        revoked_at_ms: record.revoked_ms.unwrap_or(0),
        state: record.state(shoal_store::now_ms()).as_str().into(),
    }
}

/// Whether `identity` manages `scope`: the admin manages every token, an owner those whose
/// every workspace it owns.
fn manages(identity: &Identity, scope: &Scope) -> bool {
    match scope {
        Scope::Workspaces { grants } => grants.keys().all(|ws| identity.holds(Role::Owner, ws)),
        Scope::Run { workspace, .. } => identity.holds(Role::Owner, workspace),
        Scope::Admin | Scope::Worker => identity.scope == Scope::Admin,
    }
}

const ADMIN_ONLY: Rule = Rule::write(Least::Admin);

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let (_, extensions, r) = request.into_parts();
        let role = r.role.trim().to_ascii_lowercase();
        let (scope, identity) = match role.as_str() {
            "admin" | "worker" => {
                let identity = authorize_as(&extensions, ADMIN_ONLY, Target::Hub)?;
                let scope = if role == "admin" {
                    Scope::Admin
                } else {
                    Scope::Worker
                };
                (scope, identity)
            }
            _ => {
                let role = Role::parse(&role).map_err(Status::invalid_argument)?;
                let workspace = workspace_or_default(&r.workspace);
                let identity = authorize(&extensions, Target::Workspace(workspace))?;
                (Scope::workspace(workspace, role), identity)
            }
        };
        if r.expires_in_ms < 0 {
            return Err(Status::invalid_argument(
                "expires_in_ms must be positive (0: never expires)",
            ));
        }
        let expires_ms = (r.expires_in_ms > 0).then(|| shoal_store::now_ms() + r.expires_in_ms);
        let (record, secret) = self
            .access
            .create_token(NewToken {
                name: r.name,
                scope,
                expires_ms,
                created_by: identity.name,
            })
            .map_err(status)?;
        Ok(Response::new(pb::CreateTokenResponse {
            token: Some(token_to_wire(&record)),
            secret,
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let identity = caller(request.extensions())?;
        let tokens = self
            .access
            .list()
            .map_err(status)?
            .iter()
            .filter(|record| manages(&identity, &record.scope))
            .map(token_to_wire)
            .collect();
        Ok(Response::new(pb::ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::Token>, Status> {
        let (_, extensions, r) = request.into_parts();
        let record = self.access.get(&r.name).map_err(status)?;
        let workspaces = record.scope.workspaces();
        let target = match &record.scope {
            Scope::Workspaces { .. } | Scope::Run { .. } => {
                Target::Workspace(workspaces.first().map_or("", String::as_str))
            }
            Scope::Admin | Scope::Worker => Target::Hub,
        };
        let identity = authorize(&extensions, target)?;
        if !manages(&identity, &record.scope) {
            return Err(Status::permission_denied(format!(
                "token '{}' reaches {workspaces:?}; revoking it needs owner in each (or the hub admin)",
                record.name
            )));
        }
        let revoked = self.access.revoke(&r.name).map_err(status)?;
        Ok(Response::new(token_to_wire(&revoked)))
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let (_, extensions, r) = request.into_parts();
        let identity = caller(&extensions)?;
        // Owners read the records of the workspaces they own; the admin reads everything.
        let workspaces = match &identity.scope {
            Scope::Admin => None,
            Scope::Workspaces { grants } => Some(
                grants
                    .iter()
                    .filter(|(_, role)| **role == Role::Owner)
                    .map(|(ws, _)| ws.clone())
                    .collect(),
            ),
            Scope::Worker | Scope::Run { .. } => Some(Vec::new()),
        };
        let records = self
            .access
            .audit()
            .list(&AuditQuery {
                since_ms: r.since_ms,
                actor: (!r.actor.is_empty()).then_some(r.actor),
                workspaces,
                limit: r.limit as usize,
            })
            .map_err(status)?;
        Ok(Response::new(pb::ListAuditResponse {
            records: records
                .into_iter()
                .map(|a| pb::AuditRecord {
                    time_ms: a.time_ms,
                    actor: a.actor,
                    role: a.role,
                    workspace: a.workspace,
                    method: a.method,
                    target: a.target,
                    result: a.result,
                })
                .collect(),
        }))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let identity = caller(request.extensions())?;
        let token = match self.access.get(&identity.name) {
            Ok(record) if identity.name != ADMIN_IDENTITY => token_to_wire(&record),
            _ => pb::Token {
                name: identity.name.clone(),
                role: identity.scope.role_label(),
                workspaces: identity.scope.workspaces(),
                state: TokenState::Active.as_str().into(),
                created_by: "hub".into(),
                ..Default::default()
            },
        };
        Ok(Response::new(pb::WhoAmIResponse { token: Some(token) }))
    }
}
