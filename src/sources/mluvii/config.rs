//! The `[[mluvii]]` entries of the config file: their keys, defaults and checks (operations.md).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::SOURCE;
use crate::config::{self, AccountSettings, KeyProblem, Secret, SourceConfig};
use crate::config::{HttpSettings, StreamSettings};
use crate::engine::Source;
use crate::sources::SourceKind;
use crate::telemetry::Metrics;

#[derive(Debug, Clone)]
pub struct MluviiSettings {
    pub stream: StreamSettings,
    pub http: HttpSettings,
    pub base_url: reqwest::Url,
    /// The API user (OAuth client id).
    pub client_id: String,
    pub client_secret: Secret,
    /// Detail/routing requests in flight at once.
    pub concurrency: usize,
    /// `limit` of the list requests.
    pub page_size: usize,
    /// A session not CLOSED after this long (from `created`) is no longer re-polled.
    pub max_open_age: Duration,
    /// Accept `POST /webhooks/mluvii/{account}` with these Basic credentials.
    pub webhook: Option<BasicCredentials>,
}

/// HTTP Basic credentials a vendor sends with its webhook requests.
#[derive(Debug, Clone)]
pub struct BasicCredentials {
    pub user: String,
    pub password: Secret,
}

config::impl_account_settings!(MluviiSettings, SOURCE);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMluvii {
    account: String,
    #[serde(default)]
    enabled: Option<bool>,
    base_url: Option<String>,
    client_id: String,
    client_secret: Secret,
    schedule: Option<String>,
    start: String,
    lookback: Option<String>,
    window: Option<String>,
    concurrency: Option<usize>,
    page_size: Option<usize>,
    max_open_age: Option<String>,
    webhook_user: Option<String>,
    webhook_password: Option<Secret>,
    requests_per_second: Option<f64>,
    timeout: Option<String>,
    max_retries: Option<usize>,
    max_retry_wait: Option<String>,
    max_response_mb: Option<usize>,
    privacy: Option<crate::privacy::Overrides>,
}

/// The widest list window of a mluvii account unless `window` says otherwise.
pub const WIDEST_WINDOW: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

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
        let m: RawMluvii = config::entry(entry, prefix)?;
        let k = |name: &str| format!("{prefix}.{name}");
        let (mut stream, http) = config::common_settings!(&k, m, "1h")?;
        // Windows are sized by what they hold (paged lists, at most TARGET_RECORDS sessions a
        // window): `window` is only the widest, a year unless given.
        if m.window.is_none() {
            stream.window = WIDEST_WINDOW;
        }
        let base_url = config::parse_base_url(
            &k("base_url"),
            m.base_url.as_deref().unwrap_or("https://app.mluvii.com"),
        )?;
        if m.client_id.trim().is_empty() {
            return Err((k("client_id"), "is empty".into()));
        }
        if m.client_secret.is_empty() {
            return Err((k("client_secret"), "is empty".into()));
        }
        let concurrency = config::in_range(&k, "concurrency", m.concurrency, 4, 1..=64)?;
        let page_size = config::in_range(&k, "page_size", m.page_size, 1000, 1..=5000)?;
        let max_open_age =
            config::parse_duration(&k("max_open_age"), m.max_open_age.as_deref(), "7d")?;
        let user = m.webhook_user.filter(|u| !u.trim().is_empty());
        let password = m.webhook_password.filter(|p| !p.is_empty());
        let webhook = match (user, password) {
            (Some(user), Some(password)) if !user.contains(':') => {
                Some(BasicCredentials { user, password })
            }
            (Some(_), Some(_)) => {
                return Err((
                    k("webhook_user"),
                    "must not contain `:` (HTTP Basic separates user and password with it)".into(),
                ));
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err((
                    k("webhook_password"),
                    "missing: `webhook_user` and `webhook_password` go together (or give neither)"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err((
                    k("webhook_user"),
                    "missing: `webhook_user` and `webhook_password` go together (or give neither)"
                        .into(),
                ));
            }
        };
        Ok(Box::new(MluviiSettings {
            stream,
            http,
            base_url,
            client_id: m.client_id,
            client_secret: m.client_secret,
            concurrency,
            page_size,
            max_open_age,
            webhook,
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
        crate::sources::build_as(account, |s: MluviiSettings| {
            super::Mluvii::new(s, metrics.clone(), privacy)
        })
    }

    fn inventory(&self) -> Option<&'static crate::privacy::Inventory> {
        Some(&super::personal::INVENTORY)
    }
}
