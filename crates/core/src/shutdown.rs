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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_stop_deadline_runs_from_the_signal_not_from_the_start() {
        let token = CancellationToken::new();
        let deadline = deadline_passed(&token);
        tokio::pin!(deadline);
        // No signal: however long the daemon runs, the deadline never passes.
        tokio::select! {
            _ = &mut deadline => panic!("the deadline passed without a signal"),
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
        token.cancel();
        let signalled = tokio::time::Instant::now();
        tokio::select! {
            _ = &mut deadline => panic!("the deadline passed early"),
            _ = tokio::time::sleep(STOP_DEADLINE - Duration::from_millis(1)) => {}
        }
        deadline.await;
        assert_eq!(signalled.elapsed(), STOP_DEADLINE);
    }
}
