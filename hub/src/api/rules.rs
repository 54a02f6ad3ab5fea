//! The access table: every gRPC method by its full path, with the least role it needs,
//! whether it writes (and is audited), and whether a run's own token may call it. A method
//! missing here is refused for every token (`PERMISSION_DENIED`), so a new method cannot be
//! served without a decision. `docs/ARCHITECTURE.md` shows the same table.

use shoal_access::{Least, Rule};

const R: Least = Least::READER;
const C: Least = Least::CONTRIBUTOR;
const O: Least = Least::OWNER;

/// Methods that need no token at all: load balancers and orchestrators probe health
/// without credentials.
pub const OPEN_PREFIXES: &[&str] = &["/grpc.health.v1.Health/"];

/// Every method the hub serves and what it needs.
pub const RULES: &[(&str, Rule)] = &[
    // Workspaces: creating one is the admin's; deleting one its owner's.
    (
        "/shoal.workspace.v1.WorkspaceService/CreateWorkspace",
        Rule::write(Least::Admin),
    ),
    (
        "/shoal.workspace.v1.WorkspaceService/GetWorkspace",
        Rule::read(R),
    ),
    // Lists only the workspaces the caller may read.
    (
        "/shoal.workspace.v1.WorkspaceService/ListWorkspaces",
        Rule::read(Least::Authenticated),
    ),
    (
        "/shoal.workspace.v1.WorkspaceService/DeleteWorkspace",
        Rule::write(O),
    ),
    // Registry.
    (
        "/shoal.registry.v1.RegistryService/UploadModel",
        Rule::write(C),
    ),
    ("/shoal.registry.v1.RegistryService/GetModel", Rule::read(R)),
    (
        "/shoal.registry.v1.RegistryService/ListModels",
        Rule::read(R),
    ),
    (
        "/shoal.registry.v1.RegistryService/GetModelVersion",
        Rule::read(R),
    ),
    (
        "/shoal.registry.v1.RegistryService/ListModelVersions",
        Rule::read(R),
    ),
    (
        "/shoal.registry.v1.RegistryService/SetAlias",
        Rule::write(C),
    ),
    (
        "/shoal.registry.v1.RegistryService/DeleteAlias",
        Rule::write(C),
    ),
    (
        "/shoal.registry.v1.RegistryService/DownloadModelVersion",
        Rule::read(R),
    ),
    (
        "/shoal.registry.v1.RegistryService/SetBaseline",
        Rule::write(C),
    ),
    // Fleet.
    ("/shoal.fleet.v1.FleetService/AddDevice", Rule::write(C)),
    ("/shoal.fleet.v1.FleetService/GetDevice", Rule::read(R)),
    ("/shoal.fleet.v1.FleetService/ListDevices", Rule::read(R)),
    ("/shoal.fleet.v1.FleetService/RemoveDevice", Rule::write(C)),
    // Deployments.
    (
        "/shoal.deployment.v1.DeploymentService/CreateDeployment",
        Rule::write(C),
    ),
    (
        "/shoal.deployment.v1.DeploymentService/GetDeployment",
        Rule::read(R),
    ),
    (
        "/shoal.deployment.v1.DeploymentService/ListDeployments",
        Rule::read(R),
    ),
    // Telemetry and monitors.
    (
        "/shoal.telemetry.v1.TelemetryService/CreateMonitor",
        Rule::write(C),
    ),
    (
        "/shoal.telemetry.v1.TelemetryService/GetMonitor",
        Rule::read(R),
    ),
    (
        "/shoal.telemetry.v1.TelemetryService/ListMonitors",
        Rule::read(R),
    ),
    (
        "/shoal.telemetry.v1.TelemetryService/DeleteMonitor",
        Rule::write(C),
    ),
    (
        "/shoal.telemetry.v1.TelemetryService/ListAlerts",
        Rule::read(R),
    ),
    (
        "/shoal.telemetry.v1.TelemetryService/GetDriftReport",
        Rule::read(R),
    ),
    (
        "/shoal.telemetry.v1.TelemetryService/TailTelemetry",
        Rule::read(R),
    ),
    (
        "/shoal.telemetry.v1.TelemetryService/GetDeviceTelemetry",
        Rule::read(R),
    ),
    // Training. A run's token reads its own run and its input datasets.
    (
        "/shoal.training.v1.TrainingService/UploadDataset",
        Rule::write(C),
    ),
    (
        "/shoal.training.v1.TrainingService/ListDatasets",
        Rule::read(R),
    ),
    (
        "/shoal.training.v1.TrainingService/GetDataset",
        Rule::read(R).for_runs(),
    ),
    (
        "/shoal.training.v1.TrainingService/RegisterDatasetFromRun",
        Rule::write(C),
    ),
    (
        "/shoal.training.v1.TrainingService/CreateExperiment",
        Rule::write(C),
    ),
    (
        "/shoal.training.v1.TrainingService/ListExperiments",
        Rule::read(R),
    ),
    (
        "/shoal.training.v1.TrainingService/SubmitRun",
        Rule::write(C),
    ),
    (
        "/shoal.training.v1.TrainingService/GetRun",
        Rule::read(R).for_runs(),
    ),
    ("/shoal.training.v1.TrainingService/ListRuns", Rule::read(R)),
    (
        "/shoal.training.v1.TrainingService/CancelRun",
        Rule::write(C),
    ),
    (
        "/shoal.training.v1.TrainingService/GetMetricHistory",
        Rule::read(R).for_runs(),
    ),
    (
        "/shoal.training.v1.TrainingService/StreamRunLogs",
        Rule::read(R).for_runs(),
    ),
    (
        "/shoal.training.v1.TrainingService/ListRunArtifacts",
        Rule::read(R).for_runs(),
    ),
    (
        "/shoal.training.v1.TrainingService/DownloadRunArtifact",
        Rule::read(R).for_runs(),
    ),
    (
        "/shoal.training.v1.TrainingService/RegisterFromRun",
        Rule::write(C),
    ),
    (
        "/shoal.training.v1.TrainingService/UploadSource",
        Rule::write(C),
    ),
    (
        "/shoal.training.v1.TrainingService/SubmitSweep",
        Rule::write(C),
    ),
    ("/shoal.training.v1.TrainingService/GetSweep", Rule::read(R)),
    (
        "/shoal.training.v1.TrainingService/ListSweeps",
        Rule::read(R),
    ),
    // The worker protocol: worker tokens (and the admin) only.
    (
        "/shoal.training.v1.WorkerService/LeaseRun",
        Rule::write(Least::Worker),
    ),
    (
        "/shoal.training.v1.WorkerService/DownloadSource",
        Rule::read(Least::Worker),
    ),
    (
        "/shoal.training.v1.WorkerService/Report",
        Rule::write(Least::Worker),
    ),
    (
        "/shoal.training.v1.WorkerService/UploadOutput",
        Rule::write(Least::Worker),
    ),
    (
        "/shoal.training.v1.WorkerService/Complete",
        Rule::write(Least::Worker),
    ),
    // The Mosquitto password file and ACL of the whole fleet: the hub admin's.
    (
        "/shoal.fleet.v1.FleetService/ExportMosquittoConfig",
        Rule::read(Least::Admin),
    ),
    // Secrets: contributors set and delete them (their runs use them); readers see names.
    ("/shoal.secret.v1.SecretService/SetSecret", Rule::write(C)),
    ("/shoal.secret.v1.SecretService/ListSecrets", Rule::read(R)),
    (
        "/shoal.secret.v1.SecretService/DeleteSecret",
        Rule::write(C),
    ),
    // Tokens and the audit log: owners manage their workspaces' tokens; admin and worker
    // tokens, and the whole audit log, are the admin's (checked by the handlers).
    ("/shoal.access.v1.AccessService/CreateToken", Rule::write(O)),
    ("/shoal.access.v1.AccessService/ListTokens", Rule::read(O)),
    ("/shoal.access.v1.AccessService/RevokeToken", Rule::write(O)),
    ("/shoal.access.v1.AccessService/ListAudit", Rule::read(O)),
    (
        "/shoal.access.v1.AccessService/WhoAmI",
        Rule::read(Least::Authenticated),
    ),
    // Reflection describes the API to any valid token, in both versions clients ask for.
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Rule::read(Least::Authenticated),
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Rule::read(Least::Authenticated),
    ),
];

/// The rule of a method, by its full path; `None` for a method the table does not know.
pub fn rule_for(path: &str) -> Option<Rule> {
    RULES
        .iter()
        .find(|(method, _)| *method == path)
        .map(|(_, rule)| *rule)
}

/// Whether a path needs no token.
pub fn is_open(path: &str) -> bool {
    OPEN_PREFIXES.iter().any(|prefix| path.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_appears_once() {
        let mut paths: Vec<&str> = RULES.iter().map(|(p, _)| *p).collect();
        paths.sort_unstable();
        let before = paths.len();
        paths.dedup();
        assert_eq!(before, paths.len(), "a method is listed twice");
    }

    #[test]
    fn reads_never_write_and_workers_only_reach_the_worker_service() {
        for (path, rule) in RULES {
            assert_eq!(
                rule.least == Least::Worker,
                path.starts_with("/shoal.training.v1.WorkerService/"),
                "{path}"
            );
            assert!(
                !(rule.run_token && rule.least != R),
                "{path}: runs only read"
            );
        }
    }
}
