//! `shoal audit`: the hub's record of calls that changed something (who, role, workspace,
//! method, target, result, time).

use clap::Subcommand;
use serde_json::{json, Value};
use shoal_client::HubClient;
use shoal_proto::access as apb;

use crate::drift::parse_duration_ms;
use crate::error::CliResult;
use crate::output::{print_list, Format};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Audited calls, oldest first.
    List {
        /// Only calls this recent (`1h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// Only calls made with this token.
        #[arg(long)]
        actor: Option<String>,
        /// At most this many, the newest.
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
}

/// `shoal audit …`.
///
/// # Errors
/// One line for the user.
pub async fn run(hub: &mut HubClient, out: Format, command: AuditCommand) -> CliResult<()> {
    let AuditCommand::List {
        since,
        actor,
        limit,
    } = command;
    let since_ms = match since {
        Some(text) => now_ms() - parse_duration_ms(&text)?,
        None => 0,
    };
    let records = hub
        .access
        .list_audit(apb::ListAuditRequest {
            since_ms,
            actor: actor.unwrap_or_default(),
            limit,
        })
        .await?
        .into_inner()
        .records;
    let rows: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "time_ms": r.time_ms,
                "actor": r.actor,
                "role": r.role,
                "workspace": r.workspace,
                "method": r.method,
                "target": r.target,
                "result": r.result,
            })
        })
        .collect();
    print_list(
        out,
        &[
            ("TIME", "time_ms"),
            ("ACTOR", "actor"),
            ("ROLE", "role"),
            ("WORKSPACE", "workspace"),
            ("METHOD", "method"),
            ("TARGET", "target"),
            ("RESULT", "result"),
        ],
        &rows,
    );
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
