//! Roles, scopes and the checks: whether an identity may call a method, and on what.
//!
//! Workspace roles are ordered: a `reader` reads, a `contributor` also changes what a
//! workspace holds (models, runs, devices, deployments), an `owner` also manages the
//! workspace itself and its tokens. Beside them, the hub `admin` may do everything everywhere,
//! a `worker` may only lease and report runs, and a run's token may only log to its own run
//! and read its own inputs, while the run runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Refusal;

/// A role in one workspace, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything in the workspace.
    Reader,
    /// Also changes what the workspace holds.
    Contributor,
    /// Also deletes the workspace and manages its tokens.
    Owner,
}

impl Role {
    /// Parses `reader`, `contributor` or `owner`.
    ///
    /// # Errors
    /// A message listing the roles.
    pub fn parse(text: &str) -> Result<Role, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "reader" => Ok(Role::Reader),
            "contributor" => Ok(Role::Contributor),
            "owner" => Ok(Role::Owner),
            other => Err(format!(
                "unknown role '{other}': reader, contributor, owner (in a workspace), or admin, worker"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Contributor => "contributor",
            Role::Owner => "owner",
        }
    }
}

/// What a token may be used for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Scope {
    /// The hub admin: every method, every workspace.
    Admin,
    /// A role in each of these workspaces.
    Workspaces { grants: BTreeMap<String, Role> },
    /// A remote worker: the worker service only (lease, download, report, upload, complete).
    Worker,
    /// One run, while it runs: logging to it, reading it, its experiment and its inputs.
    Run {
        workspace: String,
        run_id: String,
        experiment_id: String,
        /// Dataset references (`name@version`) the run reads.
        inputs: Vec<String>,
    },
}

impl Scope {
    /// One role in one workspace.
    pub fn workspace(workspace: &str, role: Role) -> Scope {
        Scope::Workspaces {
            grants: BTreeMap::from([(workspace.to_string(), role)]),
        }
    }

    /// How listings show the role: `admin`, `worker`, `run`, `reader`.
    pub fn role_label(&self) -> String {
        match self {
            Scope::Admin => "admin".into(),
            Scope::Worker => "worker".into(),
            Scope::Run { .. } => "run".into(),
            Scope::Workspaces { grants } => {
                let mut roles: Vec<&str> = grants.values().map(|r| r.as_str()).collect();
                roles.dedup();
                roles.join(",")
            }
        }
    }

    /// The workspaces the scope reaches (`*` for every one).
    pub fn workspaces(&self) -> Vec<String> {
        match self {
            Scope::Admin | Scope::Worker => vec!["*".into()],
            Scope::Run { workspace, .. } => vec![workspace.clone()],
            Scope::Workspaces { grants } => grants.keys().cloned().collect(),
        }
    }
}

/// The least a caller needs for a method: one entry of the hub's access table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Least {
    /// Any valid token (who am I, reflection).
    Authenticated,
    /// A workspace role at least this strong, in the call's workspace.
    Role(Role),
    /// The worker protocol: a worker token (or the admin).
    Worker,
    /// Hub-wide administration: the admin only.
    Admin,
}

impl Least {
    pub const READER: Least = Least::Role(Role::Reader);
    pub const CONTRIBUTOR: Least = Least::Role(Role::Contributor);
    pub const OWNER: Least = Least::Role(Role::Owner);

    /// How the table in the docs writes it.
    pub fn label(self) -> &'static str {
        match self {
            Least::Authenticated => "any token",
            Least::Role(role) => role.as_str(),
            Least::Worker => "worker",
            Least::Admin => "admin",
        }
    }
}

/// What a method needs: one row of the access table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub least: Least,
    /// The method changes something: it is audited.
    pub writes: bool,
    /// A run's own token may call it, on its own run (or inputs) only.
    pub run_token: bool,
}

impl Rule {
    /// A method that only reads.
    pub const fn read(least: Least) -> Rule {
        Rule {
            least,
            writes: false,
            run_token: false,
        }
    }

    /// A method that changes something.
    pub const fn write(least: Least) -> Rule {
        Rule {
            least,
            writes: true,
            run_token: false,
        }
    }

    /// The same rule, callable by a run's token on its own run.
    pub const fn for_runs(self) -> Rule {
        Rule {
            run_token: true,
            ..self
        }
    }
}

/// What a call acts on, as the handler knows it once it has read the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The hub as a whole: creating workspaces, hub-wide tokens.
    Hub,
    /// Anything in a workspace.
    Workspace(&'a str),
    /// An experiment.
    Experiment {
        workspace: &'a str,
        experiment_id: &'a str,
    },
    /// A run.
    Run { workspace: &'a str, run_id: &'a str },
    /// A dataset version (`name@version`).
    Dataset {
        workspace: &'a str,
        reference: &'a str,
    },
}

impl Target<'_> {
    /// The workspace the target lives in; `None` for the hub.
    pub fn workspace(&self) -> Option<&str> {
        match *self {
            Target::Hub => None,
            Target::Workspace(ws)
            | Target::Experiment { workspace: ws, .. }
            | Target::Run { workspace: ws, .. }
            | Target::Dataset { workspace: ws, .. } => Some(ws),
        }
    }

    /// How the audit log names it: `ws`, `ws/run/abc`, `hub`.
    pub fn describe(&self) -> String {
        match self {
            Target::Hub => "hub".into(),
            Target::Workspace(ws) => (*ws).to_string(),
            Target::Experiment {
                workspace,
                experiment_id,
            } => format!("{workspace}/experiment/{experiment_id}"),
            Target::Run { workspace, run_id } => format!("{workspace}/run/{run_id}"),
            Target::Dataset {
                workspace,
                reference,
            } => format!("{workspace}/dataset/{reference}"),
        }
    }
}

/// Who is calling: the name of the token presented and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub scope: Scope,
}

impl Identity {
    /// Whether the identity may call a method with `rule` at all, before the call's target
    /// is known. The layer that authenticates asks this, so a reader never reaches a
    /// writing handler and a worker token never reaches anything but the worker service.
    ///
    /// # Errors
    /// [`Refusal::PermissionDenied`] saying what the method needs and what the token holds.
    pub fn may_call(&self, rule: Rule) -> Result<(), Refusal> {
        let allowed = match (&self.scope, rule.least) {
            (_, Least::Authenticated) | (Scope::Admin, _) => true,
            (Scope::Worker, least) => least == Least::Worker,
            (Scope::Run { .. }, _) => rule.run_token,
            (Scope::Workspaces { grants }, Least::Role(needed)) => {
                grants.values().any(|role| *role >= needed)
            }
            (Scope::Workspaces { .. }, Least::Worker | Least::Admin) => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(self.denied(rule.least, None))
        }
    }

    /// Whether the identity may call a method with `rule` on `target`: the check every
    /// handler makes once it knows the call's workspace (and run).
    ///
    /// # Errors
    /// [`Refusal::PermissionDenied`] saying what the method needs and what the token holds.
    pub fn check(&self, rule: Rule, target: &Target<'_>) -> Result<(), Refusal> {
        self.may_call(rule)?;
        let allowed = match (&self.scope, rule.least) {
            (_, Least::Authenticated) | (Scope::Admin, _) => true,
            (Scope::Worker, least) => least == Least::Worker,
            (Scope::Run { .. }, _) => self.run_owns(target),
            (Scope::Workspaces { grants }, Least::Role(needed)) => target
                .workspace()
                .and_then(|ws| grants.get(ws))
                .is_some_and(|role| *role >= needed),
            (Scope::Workspaces { .. }, Least::Worker | Least::Admin) => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(self.denied(rule.least, Some(target)))
        }
    }

    /// Whether listings may show this workspace to the identity.
    pub fn can_read(&self, workspace: &str) -> bool {
        self.check(Rule::read(Least::READER), &Target::Workspace(workspace))
            .is_ok()
    }

    /// Whether the identity holds `role` in `workspace` (or is the admin).
    pub fn holds(&self, role: Role, workspace: &str) -> bool {
        self.check(Rule::read(Least::Role(role)), &Target::Workspace(workspace))
            .is_ok()
    }

    fn run_owns(&self, target: &Target<'_>) -> bool {
        let Scope::Run {
            workspace,
            run_id,
            experiment_id,
            inputs,
        } = &self.scope
        else {
            return false;
        };
        match *target {
            Target::Run {
                workspace: ws,
                run_id: id,
            } => ws == workspace && id == run_id,
            Target::Experiment {
                workspace: ws,
                experiment_id: id,
            } => ws == workspace && id == experiment_id,
            Target::Dataset {
                workspace: ws,
                reference,
            } => ws == workspace && inputs.iter().any(|input| input == reference),
            Target::Hub | Target::Workspace(_) => false,
        }
    }

    fn denied(&self, least: Least, target: Option<&Target<'_>>) -> Refusal {
        let held = match &self.scope {
            Scope::Admin => "is the hub admin".to_string(),
            Scope::Worker => "is a worker token, which may only lease and report runs".to_string(),
            Scope::Run { run_id, .. } => format!(
                "is the token of run {run_id}, which may only log to that run and read its inputs"
            ),
            Scope::Workspaces { grants } => {
                let grants: Vec<String> = grants
                    .iter()
                    .map(|(ws, role)| format!("{} in '{ws}'", role.as_str()))
                    .collect();
                format!("holds {}", grants.join(", "))
            }
        };
        let needs = match (least, target.and_then(Target::workspace)) {
            (Least::Role(role), Some(ws)) => format!("{} in '{ws}'", role.as_str()),
            (least, _) => least.label().to_string(),
        };
        let on = match target {
            Some(target @ (Target::Run { .. } | Target::Dataset { .. })) => {
                format!(" ({})", target.describe())
            }
            _ => String::new(),
        };
        Refusal::PermissionDenied(format!(
            "token '{}' {held}; this call{on} needs {needs}",
            self.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(scope: Scope) -> Identity {
        Identity {
            name: "t".into(),
            scope,
        }
    }

    #[test]
    fn workspace_roles_are_ordered_and_bound_to_their_workspace() {
        let reader = who(Scope::workspace("occ", Role::Reader));
        let read = Rule::read(Least::READER);
        let write = Rule::write(Least::CONTRIBUTOR);
        assert!(reader.check(read, &Target::Workspace("occ")).is_ok());
        assert!(reader.check(read, &Target::Workspace("other")).is_err());
        let refused = reader.may_call(write).unwrap_err();
        assert!(
            matches!(&refused, Refusal::PermissionDenied(m) if m.contains("contributor") && m.contains("reader in 'occ'")),
            "{refused:?}"
        );
        let owner = who(Scope::workspace("occ", Role::Owner));
        assert!(owner.check(write, &Target::Workspace("occ")).is_ok());
        assert!(owner.check(write, &Target::Workspace("lab")).is_err());
        assert!(owner
            .check(Rule::write(Least::Admin), &Target::Hub)
            .is_err());
        assert!(owner.check(read, &Target::Hub).is_err());
    }

    #[test]
    fn workers_reach_the_worker_service_only() {
        let worker = who(Scope::Worker);
        assert!(worker.may_call(Rule::write(Least::Worker)).is_ok());
        assert!(worker.may_call(Rule::read(Least::READER)).is_err());
        assert!(worker.may_call(Rule::read(Least::Authenticated)).is_ok());
        let admin = who(Scope::Admin);
        assert!(admin
            .check(Rule::write(Least::Worker), &Target::Hub)
            .is_ok());
    }

    #[test]
    fn run_tokens_reach_their_own_run_and_inputs_only() {
        let run = who(Scope::Run {
            workspace: "occ".into(),
            run_id: "r1".into(),
            experiment_id: "7".into(),
            inputs: vec!["sensors@2".into()],
        });
        let log = Rule::write(Least::CONTRIBUTOR).for_runs();
        let own = Target::Run {
            workspace: "occ",
            run_id: "r1",
        };
        assert!(run.check(log, &own).is_ok());
        let other = Target::Run {
            workspace: "occ",
            run_id: "r2",
        };
        assert!(run.check(log, &other).is_err());
        assert!(run.check(log, &Target::Workspace("occ")).is_err());
        let input = Target::Dataset {
            workspace: "occ",
            reference: "sensors@2",
        };
        assert!(run
            .check(Rule::read(Least::READER).for_runs(), &input)
            .is_ok());
        let not_input = Target::Dataset {
            workspace: "occ",
            reference: "sensors@1",
        };
        assert!(run
            .check(Rule::read(Least::READER).for_runs(), &not_input)
            .is_err());
        // A method not marked for runs is refused before any target.
        assert!(run.may_call(Rule::read(Least::READER)).is_err());
    }
}
