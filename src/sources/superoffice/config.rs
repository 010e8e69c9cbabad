//! The `[[superoffice]]` entries of the config file: their keys, defaults and checks (operations.md).

use std::sync::Arc;

use serde::Deserialize;

use super::SOURCE;
use crate::config::{self, AccountSettings, KeyProblem, Secret, SourceConfig};
use crate::config::{HttpSettings, StreamSettings};
use crate::engine::Source;
use crate::sources::SourceKind;
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuperOfficeMode {
    /// List changed sessions in the ChatSession archive, then read each.
    Archive,
    /// `ChatSessionsForUser`: the whole list of the API user's sessions, every time.
    ForUser,
}

/// How a SuperOffice request authenticates.
#[derive(Debug, Clone)]
pub enum SuperOfficeAuth {
    /// `Authorization: SOTICKET <ticket>` plus `SO-AppToken`.
    Ticket { ticket: Secret, app_token: Secret },
    /// `Authorization: Bearer <token>` (plus `SO-AppToken` when given).
    Bearer {
        token: Secret,
        app_token: Option<Secret>,
    },
}

#[derive(Debug, Clone)]
pub struct SuperOfficeSettings {
    pub stream: StreamSettings,
    pub http: HttpSettings,
    pub base_url: reqwest::Url,
    pub auth: SuperOfficeAuth,
    pub mode: SuperOfficeMode,
    pub messages: bool,
    /// Entity and message requests in flight at once.
    pub concurrency: usize,
    /// `$top` of the archive list.
    pub page_size: usize,
    /// Accept `POST /webhooks/superoffice/{account}` signed with this secret.
    pub webhook_secret: Option<Secret>,
    /// The zone in which dates without an offset are read. Every request asks for UTC with
    /// offsets (`SO-TimeZone: UTC, includeTZOffset`); a tenant whose time-zone support is off
    /// ignores that and writes its base zone's wall clock without an offset (sources.md §2).
    pub timezone: chrono_tz::Tz,
}

config::impl_account_settings!(SuperOfficeSettings, SOURCE);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuperOffice {
    account: String,
    #[serde(default)]
    enabled: Option<bool>,
    base_url: String,
    ticket: Option<Secret>,
    bearer: Option<Secret>,
    app_token: Option<Secret>,
    mode: Option<SuperOfficeMode>,
    messages: Option<bool>,
    webhook_secret: Option<Secret>,
    timezone: Option<String>,
    schedule: Option<String>,
    start: String,
    lookback: Option<String>,
    window: Option<String>,
    concurrency: Option<usize>,
    page_size: Option<usize>,
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
        let m: RawSuperOffice = config::entry(entry, prefix)?;
        let k = |name: &str| format!("{prefix}.{name}");
        let (stream, http) = config::common_settings!(&k, m, "1h")?;
        let base_url = config::parse_base_url(&k("base_url"), &m.base_url)?;
        let nonempty = |s: Option<Secret>| s.filter(|s| !s.is_empty());
        let auth = match (
            nonempty(m.ticket),
            nonempty(m.bearer),
            nonempty(m.app_token),
        ) {
            (Some(_), Some(_), _) => {
                return Err((
                    k("ticket"),
                    "give either `ticket` (with `app_token`) or `bearer`, not both".into(),
                ));
            }
            (Some(ticket), None, Some(app_token)) => SuperOfficeAuth::Ticket { ticket, app_token },
            (Some(_), None, None) => {
                return Err((
                    k("app_token"),
                    "is required with `ticket` (the application secret sent as SO-AppToken)".into(),
                ));
            }
            (None, Some(token), app_token) => SuperOfficeAuth::Bearer { token, app_token },
            (None, None, _) => {
                return Err((
                    k("ticket"),
                    "missing: give `ticket` and `app_token`, or `bearer`".into(),
                ));
            }
        };
        let concurrency = config::in_range(&k, "concurrency", m.concurrency, 4, 1..=64)?;
        let page_size = config::in_range(&k, "page_size", m.page_size, 1000, 1..=5000)?;
        let tz_s = m.timezone.unwrap_or_else(|| "UTC".into());
        let timezone: chrono_tz::Tz = tz_s.parse().map_err(|_| {
            (
                k("timezone"),
                format!(
                    "`{tz_s}` is not an IANA time zone such as \"UTC\" or \"Europe/Oslo\" (the tenant's base time zone, used only where its dates come without an offset)"
                ),
            )
        })?;
        Ok(Box::new(SuperOfficeSettings {
            stream,
            http,
            base_url,
            auth,
            mode: m.mode.unwrap_or(SuperOfficeMode::Archive),
            messages: m.messages.unwrap_or(true),
            concurrency,
            page_size,
            webhook_secret: nonempty(m.webhook_secret),
            timezone,
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
        crate::sources::build_as(account, |s: SuperOfficeSettings| {
            super::SuperOffice::new(s, metrics.clone(), privacy)
        })
    }

    fn inventory(&self) -> Option<&'static crate::privacy::Inventory> {
        Some(&super::personal::INVENTORY)
    }
}
