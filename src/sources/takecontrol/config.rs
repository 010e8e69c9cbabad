//! The `[[takecontrol]]` entries of the config file: their keys, defaults and checks (operations.md).

use std::sync::Arc;

use chrono_tz::Tz;
use serde::Deserialize;

use super::SOURCE;
use crate::config::{self, AccountSettings, KeyProblem, Secret, SourceConfig};
use crate::config::{HttpSettings, StreamSettings};
use crate::engine::Source;
use crate::sources::SourceKind;
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TakeControlApi {
    Rest,
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Xml,
    Json,
}

#[derive(Debug, Clone)]
pub struct TakeControlSettings {
    pub stream: StreamSettings,
    pub http: HttpSettings,
    pub api: TakeControlApi,
    pub base_url: reqwest::Url,
    pub api_key: Secret,
    pub timezone: Tz,
    /// Legacy API only: ask for XML (default) or JSON output.
    pub output_format: OutputFormat,
}

config::impl_account_settings!(TakeControlSettings, SOURCE);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTakeControl {
    account: String,
    #[serde(default)]
    enabled: Option<bool>,
    api: Option<TakeControlApi>,
    base_url: String,
    api_key: Secret,
    schedule: Option<String>,
    start: String,
    lookback: Option<String>,
    window: Option<String>,
    timezone: Option<String>,
    output_format: Option<OutputFormat>,
    requests_per_second: Option<f64>,
    timeout: Option<String>,
    max_retries: Option<usize>,
    max_retry_wait: Option<String>,
    max_response_mb: Option<usize>,
    privacy: Option<crate::privacy::Overrides>,
}

/// This source in the registry (`sources::KINDS`).
pub struct Kind;

impl SourceConfig for Kind {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn account(
        &self,
        entry: toml::Value,
        prefix: &str,
    ) -> Result<Box<dyn AccountSettings>, KeyProblem> {
        let t: RawTakeControl = config::entry(entry, prefix)?;
        let k = |name: &str| format!("{prefix}.{name}");
        let (stream, http) = config::common_settings!(&k, t, "24h")?;
        let base_url = config::parse_base_url(&k("base_url"), &t.base_url)?;
        if t.api_key.is_empty() {
            return Err((k("api_key"), "is empty".into()));
        }
        let tz_s = t.timezone.unwrap_or_else(|| "UTC".into());
        let timezone: Tz = tz_s.parse().map_err(|_| {
            (
                k("timezone"),
                format!("`{tz_s}` is not an IANA time zone such as \"UTC\" or \"Europe/Prague\""),
            )
        })?;
        Ok(Box::new(TakeControlSettings {
            stream,
            http,
            api: t.api.unwrap_or(TakeControlApi::Rest),
            base_url,
            api_key: t.api_key,
            timezone,
            output_format: t.output_format.unwrap_or(OutputFormat::Xml),
        }))
    }
}

impl SourceKind for Kind {
    fn build(
        &self,
        account: &dyn AccountSettings,
        metrics: &Arc<Metrics>,
        privacy: crate::privacy::Privacy,
    ) -> Option<Arc<dyn Source>> {
        crate::sources::build_as(account, |s: TakeControlSettings| {
            super::TakeControl::new(s, metrics.clone(), privacy)
        })
    }

    fn inventory(&self) -> Option<&'static crate::privacy::Inventory> {
        Some(&super::personal::INVENTORY)
    }
}
