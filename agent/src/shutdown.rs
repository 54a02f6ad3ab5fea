//! Waiting for the operating system to ask the agent to stop.

use tracing::info;

/// Returns when the process receives SIGTERM (systemd's stop) or SIGINT (Ctrl-C), and logs which.
///
/// If a handler cannot be installed, that signal is not waited for (and a warning is logged);
/// the other still is.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(stream) => Some(stream),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                None
            }
        };
        let sigterm = async {
            match terminate.as_mut() {
                Some(stream) => {
                    stream.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = sigterm => info!(signal = "SIGTERM", "shutting down"),
            _ = ctrl_c() => info!(signal = "SIGINT", "shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        ctrl_c().await;
        info!(signal = "ctrl-c", "shutting down");
    }
}

async fn ctrl_c() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::warn!(%error, "cannot listen for SIGINT");
        std::future::pending::<()>().await;
    }
}
