//! The audit log: one record per call that changes something, append-only.
//!
//! Records are keyed by time (and a random suffix, so two calls in one millisecond both
//! stay), so listing since a time reads only the tail. Nothing in Shoal updates or deletes
//! them.

use serde::{Deserialize, Serialize};
use shoal_store::Records;

use crate::error::AccessResult;

const AUDIT: &str = "access_audit";

/// One audited call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time_ms: i64,
    /// The token's name (`admin` for the bootstrap token).
    pub actor: String,
    /// The token's role as listings show it.
    pub role: String,
    /// The workspace the call acted in; empty for hub-wide calls or calls refused before
    /// their workspace was known.
    pub workspace: String,
    /// The full gRPC path (`/shoal.registry.v1.RegistryService/SetAlias`) or the HTTP
    /// method and path of an MLflow call.
    pub method: String,
    /// What it acted on, as far as the handler knew (`occ/run/ab12`).
    pub target: String,
    /// `ok`, or the refusal's code (`PERMISSION_DENIED`, `NOT_FOUND`, ...).
    pub result: String,
}

/// Which records to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since_ms: i64,
    pub actor: Option<String>,
    /// Only these workspaces (`None`: every one).
    pub workspaces: Option<Vec<String>>,
    /// At most this many, the newest (0: no limit).
    pub limit: usize,
}

/// The append-only audit log.
#[derive(Clone)]
pub struct AuditLog {
    records: Records,
}

impl AuditLog {
    pub fn new(records: Records) -> AuditLog {
        AuditLog { records }
    }

    /// Appends a record.
    ///
    /// # Errors
    /// Storage errors, the random source.
    pub fn append(&self, record: &AuditRecord) -> AccessResult<()> {
        let key = format!(
            "{:016}-{}",
            record.time_ms.max(0),
            shoal_store::random_hex(6)?
        );
        self.records.insert_new(AUDIT, &key, record)?;
        Ok(())
    }

    /// Records matching `query`, oldest first.
    ///
    /// # Errors
    /// Storage errors.
    pub fn list(&self, query: &AuditQuery) -> AccessResult<Vec<AuditRecord>> {
        let from = format!("{:016}", query.since_ms.max(0));
        let mut out = Vec::new();
        for (_, bytes) in self.records.scan_range_bytes(AUDIT, &from, "~")? {
            let record: AuditRecord = match serde_json::from_slice(&bytes) {
                Ok(record) => record,
                Err(error) => {
                    tracing::warn!(%error, "skipping an unreadable audit record");
                    continue;
                }
            };
            if query.actor.as_ref().is_some_and(|a| *a != record.actor) {
                continue;
            }
            if let Some(workspaces) = &query.workspaces {
                if !workspaces.contains(&record.workspace) {
                    continue;
                }
            }
            out.push(record);
        }
        if query.limit > 0 && out.len() > query.limit {
            out.drain(..out.len() - query.limit);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(time_ms: i64, actor: &str, workspace: &str) -> AuditRecord {
        AuditRecord {
            time_ms,
            actor: actor.into(),
            role: "owner".into(),
            workspace: workspace.into(),
            method: "/shoal.workspace.v1.WorkspaceService/DeleteWorkspace".into(),
            target: workspace.into(),
            result: "ok".into(),
        }
    }

    #[test]
    fn lists_by_time_actor_and_workspace() {
        let log = AuditLog::new(Records::in_memory());
        log.append(&record(1_000, "ci", "occ")).unwrap();
        log.append(&record(1_000, "ci", "occ")).unwrap();
        log.append(&record(2_000, "ana", "lab")).unwrap();
        log.append(&record(3_000, "ci", "lab")).unwrap();
        let all = log.list(&AuditQuery::default()).unwrap();
        assert_eq!(all.len(), 4, "two calls in one millisecond both stay");
        let since = log
            .list(&AuditQuery {
                since_ms: 2_000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(since.len(), 2);
        let ci = log
            .list(&AuditQuery {
                actor: Some("ci".into()),
                workspaces: Some(vec!["lab".into()]),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ci, vec![record(3_000, "ci", "lab")]);
        let last = log
            .list(&AuditQuery {
                limit: 1,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(last[0].time_ms, 3_000);
    }
}
