//! sessionsync's source systems, over the core (`sessionsync-core`): this crate is where the
//! vendors are named, and nothing else is. Each is one folder with the same files: `mod.rs` names the parts and
//! declares the source (`KIND`, a [`SourceKind`]), `config.rs` reads its keys into its own
//! settings (which build its [`crate::engine::Source`]), `client.rs` speaks HTTP, `source.rs`
//! fetches a window, `normalize.rs` turns a record into a row, `store.rs` writes rows, and
//! `personal.rs` lists its personal data. Adding a system means a folder here, a migration in
//! `sql/`, and a line in [`SOURCES`].

#[cfg(test)]
mod config_tests;
pub mod lenient;
pub mod mluvii;
pub mod superoffice;
pub mod takecontrol;
pub mod xml;

use std::sync::Arc;

// The core's modules under the names the sources' code uses (`crate::engine::Source`, …).
#[cfg(test)]
use sessionsync_core::settings;
use sessionsync_core::{
    config, engine, events, http, model, privacy, secret, telemetry, warehouse,
};

use crate::config::{Settings, SourceKind, StreamSettings};
use crate::engine::{SourceContext, Stream};
use crate::model::StreamKey;
use crate::privacy::{Erasures, Privacy};
use crate::telemetry::Metrics;

/// Every source system. Adding one is its folder, its migration, and a line here.
pub const SOURCES: &[&SourceKind] = &[&takecontrol::KIND, &mluvii::KIND, &superoffice::KIND];

/// The list of sources as the config file reader takes it.
pub fn configs() -> Vec<&'static SourceKind> {
    SOURCES.to_vec()
}

/// The inventories of personal data of every source (what `privacy` operates on).
pub fn inventories() -> Vec<&'static crate::privacy::Inventory> {
    SOURCES.iter().filter_map(|k| k.inventory).collect()
}

/// The policy each configured account's rows should carry, over every source's inventory
/// (`privacy check`, `privacy apply`).
pub fn expected_privacy(settings: &Settings) -> crate::privacy::apply::Expected {
    crate::privacy::apply::Expected::new(
        &settings.privacy,
        settings.accounts.iter().map(|a| {
            (
                a.source().to_string(),
                a.stream.account.clone(),
                a.stream.privacy,
            )
        }),
        inventories(),
    )
}

/// The sources that send webhooks, each with the keys that turn them on ("`webhook_secret`
/// (superoffice)"), as a sentence lists them.
pub fn webhook_keys() -> String {
    SOURCES
        .iter()
        .filter_map(|k| k.webhook_keys.map(|keys| format!("{keys} ({})", k.name)))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The names `--source` accepts.
pub fn names() -> Vec<&'static str> {
    SOURCES.iter().map(|k| k.name).collect()
}

/// Reads and validates the config file at `path` with every source.
pub fn load_settings(path: &std::path::Path) -> Result<Settings, crate::config::ConfigError> {
    Settings::load(path, &configs())
}

/// [`load_settings`] of the file `--config` names (`None`: `$SESSIONSYNC_CONFIG`, else the
/// default path), an error saying which it was.
pub fn load_configured(
    cli: Option<&std::path::Path>,
) -> Result<Settings, crate::config::ConfigError> {
    let (path, origin) = crate::config::resolve(cli);
    Settings::load_from(&path, origin, &configs())
}

/// Every enabled stream of the configuration, optionally only one source and/or account: each
/// account's context (its key, HTTP client, privacy), and its source built over it.
pub fn build(
    settings: &Settings,
    metrics: &Arc<Metrics>,
    only_source: Option<&str>,
    only_account: Option<&str>,
) -> Vec<Arc<Stream>> {
    // One set of recorded erasures for every stream of the process.
    let erasures = Arc::new(Erasures::new(&settings.privacy));
    settings
        .enabled()
        .filter(|a| only_source.is_none_or(|x| a.source() == x))
        .filter(|a| only_account.is_none_or(|x| a.stream.account == x))
        .map(|a| {
            let privacy = Privacy::new(&settings.privacy, &a.stream.privacy, erasures.clone());
            let cx = Arc::new(SourceContext::new(
                a.key(),
                a.stream.clone(),
                &a.http,
                metrics.clone(),
                privacy,
                a.kind.inventory,
            ));
            Arc::new(Stream::new(cx.clone(), a.build(cx)))
        })
        .collect()
}

/// The key and settings of every enabled stream, without building its source (no HTTP client):
/// for what only reads the configuration (`status`).
pub fn stream_settings(settings: &Settings) -> Vec<(StreamKey, &StreamSettings)> {
    settings.enabled().map(|a| (a.key(), &a.stream)).collect()
}
