//! The `[[superoffice]]` entries of the config file: their keys, defaults and checks (operations.md).

use serde::Deserialize;

use super::signing::PrivateKey;
use super::tenant::environment_url;
use crate::config::{self, KeyProblem, Secret};

pub const SOURCE: &str = "superoffice";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuperOfficeMode {
    /// List changed sessions in the ChatSession archive, then read each.
    Archive,
    /// `ChatSessionsForUser`: the whole list of the API user's sessions, every time.
    ForUser,
}

/// Where a SuperOffice tenant is and how a request authenticates there.
#[derive(Debug, Clone)]
pub enum SuperOfficeAuth {
    /// An on-site installation (or a ticket or token of one): its root, given.
    OnSite {
        /// The tenant's root (`base_url`).
        base_url: reqwest::Url,
        credentials: OnSiteCredentials,
    },
    /// SuperOffice Online, unattended: the system user flow (`system_user.rs`); the tenant's
    /// host comes from the state API.
    SystemUser(SystemUserConfig),
}

/// What an on-site request carries.
#[derive(Debug, Clone)]
pub enum OnSiteCredentials {
    /// `Authorization: SOTICKET <ticket>` plus `SO-AppToken`.
    Ticket { ticket: Secret, app_token: Secret },
    /// `Authorization: Bearer <token>` (plus `SO-AppToken` when given).
    Bearer {
        token: Secret,
        app_token: Option<Secret>,
    },
}

/// The keys of the system user flow (sources.md §2).
#[derive(Debug, Clone)]
pub struct SystemUserConfig {
    /// `https://{sod,stage,online}.superoffice.com`, or the URL given.
    pub environment: reqwest::Url,
    pub context_identifier: String,
    /// The application's client secret (`ApplicationToken`, `SO-AppToken`).
    pub app_token: Secret,
    pub system_user_token: Secret,
    pub private_key: PrivateKey,
}

/// The hosts of SuperOffice Online's environments: for authentication and the state API only;
/// an API call there answers 421 (sources.md §2).
pub const ENVIRONMENT_HOSTS: [&str; 3] = [
    "sod.superoffice.com",
    "stage.superoffice.com",
    "online.superoffice.com",
];

#[derive(Debug, Clone)]
pub struct SuperOfficeSettings {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuperOffice {
    base_url: Option<String>,
    environment: Option<String>,
    context_identifier: Option<String>,
    system_user_token: Option<Secret>,
    private_key: Option<Secret>,
    private_key_file: Option<String>,
    ticket: Option<Secret>,
    bearer: Option<Secret>,
    app_token: Option<Secret>,
    mode: Option<SuperOfficeMode>,
    messages: Option<bool>,
    webhook_secret: Option<Secret>,
    timezone: Option<String>,
    concurrency: Option<usize>,
    page_size: Option<usize>,
}

/// The text of `private_key_file` (as a [`Secret`], overwritten when dropped); a file that users
/// other than its owner can read is warned about (it holds the application's private key).
fn read_key_file(key: &str, path: &str) -> Result<Secret, KeyProblem> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| (key.to_string(), format!("`{path}` cannot be read ({e})")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(key, file = path, mode = %format!("{mode:o}"), "the private key file can be read by users other than its owner: `chmod 600` it (or mount it as a secret readable by sessionsync only)");
            }
        }
    }
    Ok(Secret::new(text))
}

/// Reads and checks this source's own keys of one entry.
pub(super) fn read(entry: toml::Value, prefix: &str) -> Result<SuperOfficeSettings, KeyProblem> {
    let m: RawSuperOffice = config::entry(entry, prefix)?;
    let k = |name: &str| format!("{prefix}.{name}");
    let nonempty = |s: Option<Secret>| s.filter(|s| !s.is_empty());
    let auth = match (m.environment.filter(|e| !e.trim().is_empty()), m.base_url) {
        (Some(_), Some(_)) => {
            return Err((
                k("base_url"),
                "give `environment` (SuperOffice Online: the tenant's host comes from the state API) or `base_url` (on-site), not both".into(),
            ));
        }
        (Some(env), None) => {
            for (key, given) in [
                ("ticket", m.ticket.is_some()),
                ("bearer", m.bearer.is_some()),
            ] {
                if given {
                    return Err((
                        k(key),
                        "is for on-site installations (`base_url`); with `environment` the system user flow gets its own tickets: remove it".into(),
                    ));
                }
            }
            let environment = environment_url(&env).map_err(|e| (k("environment"), e))?;
            let context_identifier = m
                .context_identifier
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    (
                        k("context_identifier"),
                        "is required with `environment`: the tenant's id, e.g. \"Cust12345\""
                            .to_string(),
                    )
                })?;
            if !context_identifier
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err((
                    k("context_identifier"),
                    "is not a context identifier such as \"Cust12345\" (letters and digits)".into(),
                ));
            }
            let app_token = nonempty(m.app_token).ok_or_else(|| {
                (
                    k("app_token"),
                    "is required with `environment`: the application's client secret".to_string(),
                )
            })?;
            let system_user_token = nonempty(m.system_user_token).ok_or_else(|| {
                (k("system_user_token"), "is required with `environment`: the tenant's system user token (from its administrator's consent)".to_string())
            })?;
            let (key_text, key_name) = match (nonempty(m.private_key), m.private_key_file) {
                (Some(_), Some(_)) => {
                    return Err((
                        k("private_key"),
                        "give `private_key` or `private_key_file`, not both".into(),
                    ));
                }
                (Some(text), None) => (text, "private_key"),
                (None, Some(path)) => (
                    read_key_file(&k("private_key_file"), &path)?,
                    "private_key_file",
                ),
                (None, None) => {
                    return Err((k("private_key"), "is required with `environment`: the application's RSA private key (PEM or RSA-XML text, usually \"${SO_PRIVATE_KEY}\"), or give `private_key_file`".into()));
                }
            };
            let private_key = PrivateKey::parse(key_text.expose())
                .map_err(|e| (k(key_name), format!("is {e}")))?;
            SuperOfficeAuth::SystemUser(SystemUserConfig {
                environment,
                context_identifier,
                app_token,
                system_user_token,
                private_key,
            })
        }
        (None, None) => {
            return Err((
                k("environment"),
                "missing: give `environment` and `context_identifier` with the system user (SuperOffice Online), or `base_url` with `ticket`/`bearer` (on-site)".into(),
            ));
        }
        (None, Some(base)) => {
            let base_url = config::parse_base_url(&k("base_url"), &base)?;
            if base_url.scheme() == "http" && !super::tenant::loopback(&base_url) {
                return Err((
                    k("base_url"),
                    format!(
                        "`{}` is plain http to a host that is not this machine: the ticket and the application token would cross the network unencrypted; use https (http is accepted for a loopback address only)",
                        crate::http::origin(&base_url)
                    ),
                ));
            }
            if base_url
                .host_str()
                .is_some_and(|h| ENVIRONMENT_HOSTS.contains(&h))
            {
                return Err((
                    k("base_url"),
                    format!(
                        "`{}` is an environment's host, which answers API calls with 421 Misdirected Request: for SuperOffice Online give `environment` = \"{}\" and `context_identifier` with the system user flow instead",
                        base_url.host_str().unwrap_or(""),
                        base_url
                            .host_str()
                            .unwrap_or("")
                            .split('.')
                            .next()
                            .unwrap_or("online")
                    ),
                ));
            }
            for (key, given) in [
                ("system_user_token", m.system_user_token.is_some()),
                ("private_key", m.private_key.is_some()),
                ("private_key_file", m.private_key_file.is_some()),
                ("context_identifier", m.context_identifier.is_some()),
            ] {
                if given {
                    return Err((k(key), "belongs to the system user flow, which takes `environment` instead of `base_url`".into()));
                }
            }
            let credentials = match (
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
                (Some(ticket), None, Some(app_token)) => {
                    OnSiteCredentials::Ticket { ticket, app_token }
                }
                (Some(_), None, None) => {
                    return Err((
                        k("app_token"),
                        "is required with `ticket` (the application secret sent as SO-AppToken)"
                            .into(),
                    ));
                }
                (None, Some(token), app_token) => OnSiteCredentials::Bearer { token, app_token },
                (None, None, _) => {
                    return Err((
                        k("ticket"),
                        "missing: give `ticket` and `app_token`, or `bearer` (on-site); SuperOffice Online takes `environment` and the system user flow".into(),
                    ));
                }
            };
            SuperOfficeAuth::OnSite {
                base_url,
                credentials,
            }
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
    Ok(SuperOfficeSettings {
        auth,
        mode: m.mode.unwrap_or(SuperOfficeMode::Archive),
        messages: m.messages.unwrap_or(true),
        concurrency,
        page_size,
        webhook_secret: nonempty(m.webhook_secret),
        timezone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = "account = \"cust12345\"\nbase_url = \"https://crm.example.com/SuperOffice\"\nstart = \"2024-01-01T00:00:00Z\"\n";

    fn read_entry(extra: &str) -> Result<SuperOfficeSettings, KeyProblem> {
        let (entry, _) = config::test_entry(&super::super::KIND, &format!("{ENTRY}{extra}"));
        read(entry, "superoffice[0]")
    }

    #[test]
    fn defaults_and_authentication() {
        let s = read_entry("ticket = \"t-1\"\napp_token = \"a-1\"\n").unwrap();
        assert!(matches!(
            s.auth,
            SuperOfficeAuth::OnSite {
                credentials: OnSiteCredentials::Ticket { .. },
                ..
            }
        ));
        assert_eq!(s.mode, SuperOfficeMode::Archive);
        assert!(s.messages);
        assert_eq!(s.timezone, chrono_tz::UTC);
        assert_eq!(super::super::KIND.stream, "chat_sessions");
        let s = read_entry("bearer = \"b-1\"\n").unwrap();
        assert!(matches!(
            s.auth,
            SuperOfficeAuth::OnSite {
                credentials: OnSiteCredentials::Bearer { .. },
                ..
            }
        ));
        for (extra, key, word) in [
            ("ticket = \"t\"\n", "superoffice[0].app_token", "required"),
            (
                "ticket = \"t\"\napp_token = \"a\"\nbearer = \"b\"\n",
                "superoffice[0].ticket",
                "not both",
            ),
            ("", "superoffice[0].ticket", "missing"),
            (
                "bearer = \"b\"\ntimezone = \"Oslo\"\n",
                "superoffice[0].timezone",
                "IANA",
            ),
        ] {
            let (k, problem) = read_entry(extra).unwrap_err();
            assert!(k == key && problem.contains(word), "{k}: {problem}");
        }
    }
}
