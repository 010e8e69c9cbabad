//! The daemon, assembled in one place: `sessionsync run`, `sessionsync demo` (after its first
//! sync) and the tests start it with [`Daemon::build`] and [`Daemon::run_until_stopped`].
//!
//! `build` binds what must answer at once: `/metrics`, `/healthz`, `/readyz`, and the webhook
//! listener when `[webhooks]` is configured (until the schema exists it answers 503, and the
//! vendor retries). `run_until_stopped` then migrates the warehouse (retrying every 10 s until
//! it answers), starts the storage limits' daily pass, the webhook worker, the scheduler and the
//! daily completeness audit,
//! and runs until the shutdown signal. The shutdown order is one: the scheduler's streams stop
//! at their next fetch or window boundary, then the webhook worker and listener, the storage
//! limits, and the server last (health answers until the end).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::engine::{Engine, Slots, Stream};
use crate::telemetry::Metrics;
use crate::warehouse::{Warehouse, WarehouseError};

/// The daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Server(#[from] crate::server::ServeError),
    #[error(transparent)]
    Webhooks(#[from] crate::webhooks::StartError),
}

/// A daemon whose server and webhook listener are listening.
pub struct Daemon {
    settings: Settings,
    metrics: Arc<Metrics>,
    warehouse: Warehouse,
    sources: Vec<Arc<Stream>>,
    shutdown: CancellationToken,
    server_addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    hooks: Option<crate::webhooks::Listening>,
}

impl Daemon {
    /// Binds the server and, when configured, the webhook listener, for `sources` (built with
    /// `metrics`), until `shutdown`.
    pub async fn build(
        settings: &Settings,
        metrics: Arc<Metrics>,
        sources: Vec<Arc<Stream>>,
        shutdown: CancellationToken,
    ) -> Result<Daemon, DaemonError> {
        if sources.is_empty() {
            tracing::warn!(file = %settings.file.display(), "no enabled stream in the config; serving metrics only");
        }
        let warehouse = Warehouse::new(&settings.warehouse)?;
        let (server_addr, server) = crate::server::spawn(
            settings.server.listen,
            metrics.clone(),
            warehouse.clone(),
            shutdown.clone(),
        )
        .await?;
        tracing::info!(addr = %server_addr, "serving /metrics, /healthz, /readyz");
        let hooks = listen_for_webhooks(settings, &sources, &metrics, &shutdown).await?;
        Ok(Daemon {
            settings: settings.clone(),
            metrics,
            warehouse,
            sources,
            shutdown,
            server_addr,
            server,
            hooks,
        })
    }

    /// Where `/metrics` and health are served.
    pub fn server_addr(&self) -> SocketAddr {
        self.server_addr
    }

    /// Where webhooks are received, when configured.
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.hooks.as_ref().map(|h| h.addr)
    }

    /// Migrates, then runs every stream on its schedule, the webhook worker and the storage
    /// limits until the shutdown signal; returns once everything has stopped.
    /// A configuration the warehouse refuses (a hash key it still depends on was removed) stops
    /// it with that error.
    pub async fn run_until_stopped(self) -> Result<(), crate::warehouse::WarehouseError> {
        let Daemon {
            settings,
            metrics,
            warehouse,
            sources,
            shutdown,
            server,
            hooks,
            ..
        } = self;
        // The warehouse may come up after us: keep trying until it answers.
        let mut refused = None;
        let migrated = loop {
            match crate::startup::prepare(&warehouse, &settings).await {
                Ok(applied) => {
                    tracing::info!(schema = warehouse.schema(), applied = ?applied, "warehouse schema ready");
                    break true;
                }
                Err(e) if e.is_config() => {
                    tracing::error!(error = %e, "the configuration's keys do not match the warehouse; stopping");
                    refused = Some(e);
                    break false;
                }
                Err(e) => {
                    tracing::error!(error = %e, "preparing the warehouse (migration, hash keys) failed; retrying in 10 s");
                    tokio::select! {
                        _ = shutdown.cancelled() => break false,
                        _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    }
                }
            }
        };
        if migrated {
            let retention = crate::privacy::retention::spawn_daily(
                warehouse.clone(),
                settings.privacy.clone(),
                crate::sources::inventories(),
                metrics.clone(),
                shutdown.clone(),
            );
            let slots = Slots::new(settings.engine.max_concurrent_streams, metrics.clone());
            let engine = Arc::new(Engine::new(warehouse, metrics));
            tracing::info!(
                streams = sources.len(),
                max_concurrent_streams = slots.limit(),
                "scheduler started"
            );
            let worker = hooks.as_ref().map(|h| h.work());
            let audited = crate::engine::audited(&sources);
            tracing::info!(
                accounts = audited.len(),
                schedule = settings.audit.schedule.as_str(),
                days = settings.audit.days,
                "daily completeness audit scheduled"
            );
            let audits = tokio::spawn(crate::engine::run_audits(
                engine.clone(),
                audited,
                settings.audit.clone(),
                slots.clone(),
                shutdown.clone(),
            ));
            crate::engine::run_scheduler(engine, sources, slots, shutdown.clone()).await;
            shutdown.cancel();
            let _ = audits.await;
            if let Some(w) = worker {
                let _ = w.await;
            }
            if let Some(r) = retention {
                let _ = r.await;
            }
        }
        shutdown.cancel();
        if let Some(h) = hooks {
            h.stopped().await;
        }
        let _ = server.await;
        if let Some(e) = refused {
            return Err(e);
        }
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

/// Starts the webhook listener when `[webhooks]` is configured (before the schema is ready:
/// until it is, events are answered 503 and the vendor retries).
async fn listen_for_webhooks(
    settings: &Settings,
    sources: &[Arc<Stream>],
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Result<Option<crate::webhooks::Listening>, DaemonError> {
    let with_settings = sources.iter().filter(|s| s.webhook().is_some()).count();
    let Some(w) = &settings.webhooks else {
        if with_settings > 0 {
            tracing::warn!(
                accounts = with_settings,
                "accounts have webhook settings, but the config has no [webhooks] listen: their events are not received"
            );
        }
        return Ok(None);
    };
    if with_settings == 0 {
        tracing::warn!(
            "[webhooks] is configured, but no account has {}: every request will be answered 404",
            crate::sources::webhook_keys()
        );
    }
    let hooks =
        crate::webhooks::listen(w.listen, sources, &settings.warehouse, metrics, shutdown).await?;
    tracing::info!(addr = %hooks.addr, accounts = hooks.endpoints.len(), "listening for webhooks on /webhooks/{{source}}/{{account}}");
    Ok(Some(hooks))
}
