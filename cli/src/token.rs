//! `shoal token`: API tokens for people and machines, each with a role (`reader`,
//! `contributor`, `owner` in one workspace, or `admin`, `worker`). The secret is printed once.

use clap::Subcommand;
use serde_json::{json, Value};
use shoal_client::HubClient;
use shoal_proto::access as apb;

use crate::drift::parse_duration_ms;
use crate::error::CliResult;
use crate::output::{print_list, print_one, Format};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Creates a token and prints its secret once (`-o json`: `{"name":…,"token":…}`).
    Create {
        name: String,
        /// reader, contributor or owner (in --workspace), admin, or worker.
        #[arg(long)]
        role: String,
        /// Lifetime (`30d`, `12h`); without it the token lives until revoked.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Tokens you manage (all of them for the hub admin).
    List,
    /// Revokes a token; its next call is refused.
    Revoke { name: String },
    /// The token this CLI calls with, and its role.
    Whoami,
}

/// `shoal token …`.
///
/// # Errors
/// One line for the user.
pub async fn run(
    hub: &mut HubClient,
    workspace: &str,
    out: Format,
    command: TokenCommand,
) -> CliResult<()> {
    match command {
        TokenCommand::Create {
            name,
            role,
            expires,
        } => {
            let expires_in_ms = match expires {
                Some(text) => parse_duration_ms(&text)?,
                None => 0,
            };
            let created = hub
                .access
                .create_token(apb::CreateTokenRequest {
                    name,
                    role,
                    workspace: workspace.to_string(),
                    expires_in_ms,
                })
                .await?
                .into_inner();
            let token = created.token.unwrap_or_default();
            let mut shown = token_json(&token);
            shown["token"] = json!(created.secret);
            match out {
                Format::Json => print_one(out, &shown),
                Format::Table => {
                    println!("{}", created.secret);
                    eprintln!(
                        "created token {} ({} in {}); the hub keeps only its hash, so store it now",
                        token.name,
                        token.role,
                        token.workspaces.join(",")
                    );
                }
            }
        }
        TokenCommand::List => {
            let tokens = hub
                .access
                .list_tokens(apb::ListTokensRequest {})
                .await?
                .into_inner()
                .tokens;
            let rows: Vec<Value> = tokens.iter().map(token_json).collect();
            print_list(
                out,
                &[
                    ("NAME", "name"),
                    ("ROLE", "role"),
                    ("WORKSPACES", "workspaces"),
                    ("STATE", "state"),
                    ("CREATED BY", "created_by"),
                ],
                &rows,
            );
        }
        TokenCommand::Revoke { name } => {
            let token = hub
                .access
                .revoke_token(apb::RevokeTokenRequest { name })
                .await?
                .into_inner();
            match out {
                Format::Json => print_one(out, &token_json(&token)),
                Format::Table => eprintln!("revoked token {}", token.name),
            }
        }
        TokenCommand::Whoami => {
            let token = hub
                .access
                .who_am_i(apb::WhoAmIRequest {})
                .await?
                .into_inner()
                .token
                .unwrap_or_default();
            print_one(out, &token_json(&token));
        }
    }
    Ok(())
}

fn token_json(t: &apb::Token) -> Value {
    json!({
        "name": t.name,
        "role": t.role,
        "workspaces": t.workspaces.join(","),
        "state": t.state,
        "created_by": t.created_by,
        "created_at_ms": t.created_at_ms,
        "expires_at_ms": (t.expires_at_ms > 0).then_some(t.expires_at_ms),
        "revoked_at_ms": (t.revoked_at_ms > 0).then_some(t.revoked_at_ms),
    })
}
