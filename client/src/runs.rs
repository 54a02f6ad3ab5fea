//! Training runs from a client's side: submitting a built-in trainer run and waiting for a
//! run to end.

use std::time::{Duration, Instant};

use shoal_proto::training as tpb;

use crate::connect::HubClient;
use crate::error::{ClientError, ClientResult};

/// How often [`wait_for_run`] asks.
const RUN_POLL: Duration = Duration::from_millis(100);

/// Queues a built-in trainer run.
///
/// # Errors
/// The hub's refusal.
pub async fn submit_builtin(
    hub: &mut HubClient,
    workspace: &str,
    experiment: &str,
    job: tpb::BuiltinJob,
    params: &[(&str, &str)],
) -> ClientResult<tpb::Run> {
    let header = tpb::SubmitRunHeader {
        workspace: workspace.into(),
        experiment: experiment.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        job: Some(tpb::submit_run_header::Job::Builtin(job)),
        ..Default::default()
    };
    let messages = vec![tpb::SubmitRunRequest {
        part: Some(tpb::submit_run_request::Part::Header(header)),
    }];
    Ok(hub
        .training
        .submit_run(futures::stream::iter(messages))
        .await?
        .into_inner())
}

/// Whether a run status (as the hub names it) is final.
pub fn is_final_status(status: &str) -> bool {
    ["completed", "failed", "canceled"].contains(&status)
}

/// Waits until a run ends, for at most `deadline`.
///
/// # Errors
/// When the hub refuses or the deadline passes.
pub async fn wait_for_run(
    hub: &mut HubClient,
    run_id: &str,
    deadline: Duration,
) -> ClientResult<tpb::Run> {
    let until = Instant::now() + deadline;
    loop {
        let run = hub
            .training
            .get_run(tpb::GetRunRequest {
                run_id: run_id.into(),
            })
            .await?
            .into_inner();
        if is_final_status(&run.status) {
            return Ok(run);
        }
        if Instant::now() > until {
            return Err(ClientError::Timeout {
                what: format!("run {run_id} ending"),
                waited: deadline,
            });
        }
        tokio::time::sleep(RUN_POLL).await;
    }
}
