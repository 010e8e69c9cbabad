//! The one shutdown signal every loop is given: cancelled by SIGINT or SIGTERM.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long `sessionsync run` may take to stop once the signal came: past it, the process exits
/// with status 1 and the open transactions roll back as their connections close (the next run
/// redoes them from the committed watermarks). An orchestrator's grace period must be longer
/// (the Kubernetes manifests give 30 s).
pub const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// Resolves `STOP_DEADLINE` after `token` is cancelled; never before.
pub async fn deadline_passed(token: &CancellationToken) {
    token.cancelled().await;
    tokio::time::sleep(STOP_DEADLINE).await;
}

/// A token cancelled by SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C (SIGINT) stops this process cleanly");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested; finishing or rolling back open work");
        t.cancel();
    });
    token
}
