//! The daemon's daily completeness audit (`[audit]`): one loop per audited account, each at its
//! own fixed offset after the schedule's instants (`AuditSettings::offset`, the same on every
//! replica), so that a hundred accounts do not all list at once against one vendor. An audit
//! takes one of the engine's slots like a stream's run, its account's requests go through the
//! account's rate ceiling, and replicas audit each account once (the audit's lock, and a run
//! already started for the instant).

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::audit::Days;
use super::audit_report::AuditOptions;
use super::run::Engine;
use super::scheduler::Slots;
use super::source::Stream;
use crate::settings::AuditSettings;

/// The streams the daemon audits: those whose source has an audit, unless `audit = false`.
pub fn audited(streams: &[Arc<Stream>]) -> Vec<Arc<Stream>> {
    streams
        .iter()
        .filter(|s| s.audit().is_some() && s.settings().audit)
        .cloned()
        .collect()
}

/// Audits every one of `streams` on `settings.schedule` until `shutdown`; each account's audit
/// series start from what the warehouse recorded.
pub async fn run_audits(
    engine: Arc<Engine>,
    streams: Vec<Arc<Stream>>,
    settings: AuditSettings,
    slots: Slots,
    shutdown: CancellationToken,
) {
    let settings = Arc::new(settings);
    let mut tasks = JoinSet::new();
    for stream in streams {
        let since = match engine.warehouse().conn().await {
            Ok(conn) => {
                let k = stream.key();
                crate::warehouse::audits::audited_since(&**conn, k.source, &k.account, k.stream)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(stream = %k, error = %e, "could not read when the account was last audited");
                        None
                    })
            }
            Err(_) => None,
        };
        crate::events::AuditScheduled {
            key: stream.key(),
            since,
        }
        .emit(engine.metrics());
        tasks.spawn(audit_loop(
            engine.clone(),
            stream,
            settings.clone(),
            slots.clone(),
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

async fn audit_loop(
    engine: Arc<Engine>,
    stream: Arc<Stream>,
    settings: Arc<AuditSettings>,
    slots: Slots,
    shutdown: CancellationToken,
) {
    let key = stream.key().clone();
    let offset =
        TimeDelta::from_std(settings.offset(key.source, &key.account)).unwrap_or(TimeDelta::zero());
    loop {
        let now = Utc::now();
        let Some(instant) = settings.schedule.next_after(now - offset) else {
            tracing::error!(stream = %key, schedule = settings.schedule.as_str(), "the audit schedule has no future instant; this account will not be audited");
            return;
        };
        let due = instant + offset;
        tracing::debug!(stream = %key, next = %due, "next audit scheduled");
        let wait = (due - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(slot) = slots.acquire(&key, &shutdown).await else {
            return;
        };
        let options = AuditOptions {
            days: Days::last(settings.days, due),
            dry_run: false,
        };
        // Replicas' clocks differ by seconds: a run that another one started for this instant
        // counts, never one of the previous instant.
        let tolerance = (settings.schedule.period(instant) / 2).min(TimeDelta::minutes(10));
        if let Err(e) = engine
            .audit_due(&stream, options, due, tolerance, &shutdown)
            .await
        {
            tracing::error!(stream = %key, error = %e, "the audit could not be recorded; the next scheduled audit tries again");
        }
        drop(slot);
        if shutdown.is_cancelled() {
            return;
        }
    }
}
