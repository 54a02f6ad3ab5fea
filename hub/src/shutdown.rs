//! Process signals that start a graceful shutdown.

use std::future::Future;

/// Listens for SIGINT and SIGTERM from the moment it is called (so a signal that arrives
/// while the hub is still starting is not met by the default action, which kills the
/// process), and returns a future that completes on the first one, logging which.
///
/// Must be called inside a Tokio runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = interrupt.recv() => tracing::info!("received SIGINT, shutting down"),
                        _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
                    }
                }
                (term, interrupt) => {
                    let error = term.err().or(interrupt.err());
                    tracing::warn!(
                        ?error,
                        "cannot listen for SIGTERM or SIGINT; only Ctrl-C stops the hub"
                    );
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("received Ctrl-C, shutting down");
        }
    }
}
