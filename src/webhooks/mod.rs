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
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::WarehouseSettings;
use crate::engine::Source;
use crate::warehouse::{Warehouse, WarehouseError};

/// One account whose webhooks are accepted.
pub struct Endpoint {
    /// The account's stream (the same object the scheduler polls with: one rate ceiling, one
    /// 429 pause, one token).
    pub source: Arc<dyn Source>,
    /// Woken when the listener recorded an event for this account.
    pub wake: Notify,
}

/// The accounts that accept webhooks, by `(source, account)`.
#[derive(Clone, Default)]
pub struct Endpoints(Arc<HashMap<(String, String), Arc<Endpoint>>>);

impl Endpoints {
    /// The sources configured for webhooks (a secret or credentials set).
    pub fn new(sources: &[Arc<dyn Source>]) -> Self {
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

/// Accounts whose events are acted on at once (each holds a warehouse connection while its
/// sessions are read).
pub const CONCURRENT_DRAINS: usize = 2;

/// The webhook side's own small pool, so that polling runs holding every connection of the
/// main pool never make the listener answer 503: two for recording events, one per drain.
pub fn warehouse(settings: &WarehouseSettings) -> Result<Warehouse, WarehouseError> {
    Warehouse::new(&WarehouseSettings {
        pool_size: 2 + CONCURRENT_DRAINS,
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
