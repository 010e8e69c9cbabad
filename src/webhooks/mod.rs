//! Vendor webhooks (sources.md section 4, operations.md "Webhooks"): an event is a hint that a
//! session changed; it is committed to an inbox before the vendor gets its 200, then a worker
//! re-reads the session by id and writes it as polling does. Vendor-agnostic: what a vendor
//! signs, sends and registers is its source's [`crate::engine::Webhook`].
//!
//! - [`listener`]: `POST /webhooks/{source}/{account}`: body capped at 1 MiB, authenticated,
//!   parsed, recorded; the answers of operations.md.
//! - [`inbox`]: the `webhook_events` table.
//! - [`worker`]: one loop per account: claim the due events, re-read their sessions once each,
//!   write them in one transaction with the events' deletion.

pub mod inbox;
pub mod listener;
pub mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::engine::Stream;
use crate::settings::WarehouseSettings;
use crate::telemetry::Metrics;
use crate::warehouse::{Warehouse, WarehouseError};

/// One account whose webhooks are accepted.
pub struct Endpoint {
    /// The account's stream (the same object the scheduler polls with: one rate ceiling, one
    /// 429 pause, one token).
    pub source: Arc<Stream>,
    /// Woken when the listener recorded an event for this account.
    pub wake: Notify,
}

/// The accounts that accept webhooks, by `(source, account)`.
#[derive(Clone, Default)]
pub struct Endpoints(Arc<HashMap<(String, String), Arc<Endpoint>>>);

impl Endpoints {
    /// The sources configured for webhooks (a secret or credentials set).
    pub fn new(sources: &[Arc<Stream>]) -> Self {
        Endpoints(Arc::new(
            sources
                .iter()
                .filter(|s| s.webhook().is_some())
                .map(|s| {
                    let k = s.key();
                    (
                        (k.source.to_string(), k.account.clone()),
                        Arc::new(Endpoint {
                            source: s.clone(),
                            wake: Notify::new(),
                        }),
                    )
                })
                .collect(),
        ))
    }

    pub fn get(&self, source: &str, account: &str) -> Option<&Arc<Endpoint>> {
        self.0.get(&(source.to_string(), account.to_string()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.0.values()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Connections of the webhook side's own small pool: two for recording events, two for the
/// workers' claims and writes (a few milliseconds each: no worker holds one while it reads
/// from a vendor).
pub const POOL_SIZE: usize = 4;

/// The webhook side's own small pool, so that polling commits queueing on the main pool never
/// make the listener answer 503.
pub fn warehouse(settings: &WarehouseSettings) -> Result<Warehouse, WarehouseError> {
    Warehouse::new(&WarehouseSettings {
        pool_size: POOL_SIZE,
        ..settings.clone()
    })
}

/// `PUBLIC_URL/webhooks/SOURCE/ACCOUNT` (a URL already ending so is taken as it is).
pub fn target_url(public_url: &reqwest::Url, source: &str, account: &str) -> reqwest::Url {
    let suffix = format!("/webhooks/{source}/{account}");
    if public_url.path().trim_end_matches('/').ends_with(&suffix) {
        return public_url.clone();
    }
    let mut u = public_url.clone();
    let path = format!("{}{suffix}", u.path().trim_end_matches('/'));
    u.set_path(&path);
    u
}

/// The webhook listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Listen(#[from] listener::ListenError),
}

/// A running listener for the accounts of `endpoints`; its worker starts with [`Listening::work`]
/// (once the schema exists: until then the listener answers 503).
pub struct Listening {
    pub addr: SocketAddr,
    pub endpoints: Endpoints,
    warehouse: Warehouse,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    listener: tokio::task::JoinHandle<()>,
}

/// Listens on `addr` for the webhooks of `sources` (those configured for them), on the webhook
/// side's own pool, until `shutdown`.
pub async fn listen(
    addr: SocketAddr,
    sources: &[Arc<Stream>],
    settings: &WarehouseSettings,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Result<Listening, StartError> {
    let endpoints = Endpoints::new(sources);
    let warehouse = warehouse(settings)?;
    let (addr, listener) = listener::spawn(
        addr,
        endpoints.clone(),
        warehouse.clone(),
        metrics.clone(),
        shutdown.clone(),
    )
    .await?;
    Ok(Listening {
        addr,
        endpoints,
        warehouse,
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        listener,
    })
}

impl Listening {
    /// Starts the worker that acts on recorded events, until shutdown.
    pub fn work(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(worker::run(
            self.endpoints.clone(),
            self.warehouse.clone(),
            self.metrics.clone(),
            self.shutdown.clone(),
        ))
    }

    /// Registers every account's webhook with its vendor, delivering to `public` (the
    /// listener's address as the vendor reaches it); what each registration did, or the first
    /// failure, naming its account.
    pub async fn register_all(&self, public: &reqwest::Url) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        for ep in self.endpoints.iter() {
            let key = ep.source.key();
            if let Some(hook) = ep.source.webhook() {
                let target = target_url(public, key.source, &key.account);
                done.push(hook.register(&target).await.map_err(|e| e.of(key))?);
            }
        }
        Ok(done)
    }

    /// Waits for the listener to stop (after shutdown).
    pub async fn stopped(self) {
        let _ = self.listener.await;
    }
}
