//! A remote worker as a process of its own (`env!("CARGO_BIN_EXE_test-worker")`), so that a
//! scenario can SIGKILL it mid-run. Arguments: HUB_URL TOKEN WORKER_ID WORK_DIR [LABELS].

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shoal_integration_tests::init_logging();
    let shutdown = shoal_hub::shutdown::signal();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [hub_url, token, worker_id, work_dir, rest @ ..] = args.as_slice() else {
        eprintln!("usage: test-worker HUB_URL TOKEN WORKER_ID WORK_DIR [LABELS]");
        return ExitCode::from(64);
    };
    let config = shoal_worker::WorkerConfig {
        hub_url: hub_url.clone(),
        token: Some(token.clone()),
        ca: None,
        worker_id: worker_id.clone(),
        labels: rest
            .first()
            .map(|l| l.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        work_dir: work_dir.into(),
    };
    match shoal_worker::run_worker(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("test-worker: {error}");
            ExitCode::FAILURE
        }
    }
}
