//! The source systems. Each is one folder: its config entry (`config.rs`, a
//! [`SourceConfig`] whose parsed accounts build their streams) and its
//! [`crate::engine::Source`]. Adding a system means a folder here, a migration in `sql/`, and a
//! line in [`SOURCES`].

pub mod lenient;
pub mod mluvii;
pub mod superoffice;
pub mod takecontrol;
pub mod xml;

use std::sync::Arc;

use crate::config::{AccountSettings, Settings, SourceConfig, StreamSettings};
use crate::engine::{SourceContext, Stream};
use crate::model::StreamKey;
use crate::privacy::{Erasures, Privacy};
use crate::telemetry::Metrics;

/// Every source system. Adding one is its folder, its migration, and a line here.
pub const SOURCES: &[&dyn SourceConfig] = &[
    &takecontrol::config::Kind,
    &mluvii::config::Kind,
    &superoffice::config::Kind,
];

/// The list of sources as the config file reader takes it.
pub fn configs() -> Vec<&'static dyn SourceConfig> {
    SOURCES.to_vec()
}

/// The inventories of personal data of every source (what `privacy` operates on).
pub fn inventories() -> Vec<&'static crate::privacy::Inventory> {
    SOURCES.iter().filter_map(|k| k.inventory()).collect()
}

/// The policy each configured account's rows should carry, over every source's inventory
/// (`privacy check`, `privacy apply`).
pub fn expected_privacy(settings: &Settings) -> crate::privacy::apply::Expected {
    crate::privacy::apply::Expected::new(
        &settings.privacy,
        settings.accounts.iter().map(|a| {
            (
                a.source().to_string(),
                a.stream().account.clone(),
                a.stream().privacy,
            )
        }),
        inventories(),
    )
}

/// The names `--source` accepts.
pub fn names() -> Vec<&'static str> {
    SOURCES.iter().map(|k| k.name()).collect()
}

/// Reads and validates the config file at `path` with every source.
pub fn load_settings(path: &std::path::Path) -> Result<Settings, crate::config::ConfigError> {
    Settings::load(path, &configs())
}

/// Every enabled stream of the configuration, optionally only one source and/or account.
pub fn build(
    settings: &Settings,
    metrics: &Arc<Metrics>,
    only_source: Option<&str>,
    only_account: Option<&str>,
) -> Vec<Arc<Stream>> {
    build_with(SOURCES, settings, metrics, only_source, only_account)
}

/// As [`build`], with the sources of `sources` (a test's own list).
pub fn build_with(
    sources: &[&dyn SourceConfig],
    settings: &Settings,
    metrics: &Arc<Metrics>,
    only_source: Option<&str>,
    only_account: Option<&str>,
) -> Vec<Arc<Stream>> {
    // One set of recorded erasures for every stream of the process.
    let erasures = Arc::new(Erasures::new(&settings.privacy));
    with_source(sources, settings)
        .filter(|(_, a)| only_source.is_none_or(|x| a.source() == x))
        .filter(|(_, a)| only_account.is_none_or(|x| a.stream().account == x))
        .map(|(source, a)| {
            let privacy = Privacy::new(&settings.privacy, &a.stream().privacy, erasures.clone());
            let cx = Arc::new(SourceContext::new(
                source.name(),
                source.stream(),
                a.stream().clone(),
                a.http(),
                metrics.clone(),
                privacy,
            ));
            Arc::new(Stream::new(cx.clone(), a.build(cx), source.inventory()))
        })
        .collect()
}

/// Each enabled account of `settings` with its source (from `sources`; an account of a source
/// not in it is left out).
fn with_source<'a>(
    sources: &'a [&'a dyn SourceConfig],
    settings: &'a Settings,
) -> impl Iterator<Item = (&'a dyn SourceConfig, &'a dyn AccountSettings)> + 'a {
    settings.enabled().filter_map(move |a| {
        let source = *sources.iter().find(|k| k.name() == a.source())?;
        Some((source, a))
    })
}

/// The key and settings of every enabled stream, without building its source (no HTTP client):
/// for what only reads the configuration (`status`).
pub fn stream_settings(settings: &Settings) -> Vec<(StreamKey, &StreamSettings)> {
    with_source(SOURCES, settings)
        .map(|(source, a)| {
            let key = StreamKey {
                source: source.name(),
                account: a.stream().account.clone(),
                stream: source.stream(),
            };
            (key, a.stream())
        })
        .collect()
}
