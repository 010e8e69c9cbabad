//! The `[[mluvii]]` entries of the config file: their keys, defaults and checks (operations.md).

use std::time::Duration;

use serde::Deserialize;

use crate::config::{self, KeyProblem, Secret};

pub const SOURCE: &str = "mluvii";

#[derive(Debug, Clone)]
pub struct MluviiSettings {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMluvii {
    base_url: Option<String>,
    client_id: String,
    client_secret: Secret,
    concurrency: Option<usize>,
    page_size: Option<usize>,
    max_open_age: Option<String>,
    webhook_user: Option<String>,
    webhook_password: Option<Secret>,
}

/// Reads and checks this source's own keys of one entry.
pub(super) fn read(entry: toml::Value, prefix: &str) -> Result<MluviiSettings, KeyProblem> {
    let m: RawMluvii = config::entry(entry, prefix)?;
    let k = |name: &str| format!("{prefix}.{name}");
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
    let max_open_age = config::parse_duration(&k("max_open_age"), m.max_open_age.as_deref(), "7d")?;
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
    Ok(MluviiSettings {
        base_url,
        client_id: m.client_id,
        client_secret: m.client_secret,
        concurrency,
        page_size,
        max_open_age,
        webhook,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = "account = \"main\"\nclient_id = \"u\"\nclient_secret = \"s\"\nstart = \"2024-01-01T00:00:00Z\"\n";

    #[test]
    fn defaults_and_webhook_credentials() {
        let (entry, (stream, _)) = config::test_entry(
            &super::super::KIND,
            &format!("{ENTRY}webhook_user = \"hook\"\nwebhook_password = \"hook-pw-1\"\n"),
        );
        let m = read(entry, "mluvii[0]").unwrap();
        // Paged windows: `window` is only the widest, a year unless given.
        assert_eq!(stream.window, Duration::from_secs(365 * 24 * 3600));
        assert_eq!(stream.lookback, Duration::from_secs(3600));
        assert_eq!(m.base_url.as_str(), "https://app.mluvii.com/");
        assert_eq!((m.concurrency, m.page_size), (4, 1000));
        let creds = m.webhook.as_ref().unwrap();
        assert_eq!(creds.user, "hook");
        assert_eq!(creds.password.expose(), "hook-pw-1");
        assert!(!format!("{m:?}").contains("hook-pw-1"), "Debug redacts it");
        let (entry, (stream, _)) =
            config::test_entry(&super::super::KIND, &format!("{ENTRY}window = \"7d\"\n"));
        read(entry, "mluvii[0]").unwrap();
        assert_eq!(stream.window, Duration::from_secs(7 * 24 * 3600));
    }
}
