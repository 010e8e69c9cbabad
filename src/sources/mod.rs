//! The source systems. Each is one folder implementing [`crate::engine::Source`]; adding a
//! system means a folder here, a migration in `sql/`, and its section in the config.

pub mod lenient;
pub mod mluvii;
pub mod superoffice;
pub mod takecontrol;
pub mod xml;

use std::sync::Arc;

use crate::config::Settings;
use crate::engine::Source;
use crate::telemetry::Metrics;

/// `path` under an account's `base_url` (which may carry a path of its own, such as a tenant).
pub fn endpoint_url(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let base = base.as_str().trim_end_matches('/');
    reqwest::Url::parse(&format!("{base}{path}")).expect("base_url was validated")
}

/// Every enabled stream of the configuration, optionally only one source and/or account.
pub fn build(
    settings: &Settings,
    metrics: &Arc<Metrics>,
    only_source: Option<&str>,
    only_account: Option<&str>,
) -> Vec<Arc<dyn Source>> {
    let mut out: Vec<Arc<dyn Source>> = Vec::new();
    for t in settings.enabled_takecontrol() {
        out.push(Arc::new(takecontrol::TakeControl::new(
            t.clone(),
            metrics.clone(),
        )));
    }
    for m in settings.enabled_mluvii() {
        out.push(Arc::new(mluvii::Mluvii::new(m.clone(), metrics.clone())));
    }
    for m in settings.enabled_superoffice() {
        out.push(Arc::new(superoffice::SuperOffice::new(
            m.clone(),
            metrics.clone(),
        )));
    }
    out.retain(|s| {
        only_source.is_none_or(|x| s.key().source == x)
            && only_account.is_none_or(|a| s.key().account == a)
    });
    out
}

/// The names `--source` accepts.
pub const SOURCES: &[&str] = &[takecontrol::SOURCE, superoffice::SOURCE, mluvii::SOURCE];
