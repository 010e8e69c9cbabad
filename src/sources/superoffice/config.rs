//! The `[[superoffice]]` entries of the config file: their keys, defaults and checks (operations.md).

use serde::Deserialize;

use crate::config::{self, AccountSettings, Common, KeyProblem, Secret, SourceConfig};
use crate::config::{HttpSettings, StreamSettings};

pub const SOURCE: &str = "superoffice";

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuperOffice {
    base_url: String,
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

/// This source in the list of sources (`sources::SOURCES`).
pub struct Kind;

impl SourceConfig for Kind {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn stream(&self) -> &'static str {
        "chat_sessions"
    }

    fn inventory(&self) -> Option<&'static crate::privacy::Inventory> {
        Some(&super::personal::INVENTORY)
    }

    fn account(
        &self,
        entry: toml::Value,
        prefix: &str,
        common: Common,
    ) -> Result<Box<dyn AccountSettings>, KeyProblem> {
        read(entry, prefix, common).map(config::boxed)
    }
}

/// Reads and checks this source's own keys of one entry.
fn read(
    entry: toml::Value,
    prefix: &str,
    Common { stream, http }: Common,
) -> Result<SuperOfficeSettings, KeyProblem> {
    let m: RawSuperOffice = config::entry(entry, prefix)?;
    let k = |name: &str| format!("{prefix}.{name}");
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
    Ok(SuperOfficeSettings {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = "account = \"cust12345\"\nbase_url = \"https://sod.superoffice.com/Cust12345\"\nstart = \"2024-01-01T00:00:00Z\"\n";

    fn read_entry(extra: &str) -> Result<SuperOfficeSettings, KeyProblem> {
        let (entry, common) = config::test_entry(&Kind, &format!("{ENTRY}{extra}"));
        read(entry, "superoffice[0]", common)
    }

    #[test]
    fn defaults_and_authentication() {
        let s = read_entry("ticket = \"t-1\"\napp_token = \"a-1\"\n").unwrap();
        assert!(matches!(s.auth, SuperOfficeAuth::Ticket { .. }));
        assert_eq!(s.mode, SuperOfficeMode::Archive);
        assert!(s.messages);
        assert_eq!(s.timezone, chrono_tz::UTC);
        assert_eq!(Kind.stream(), "chat_sessions");
        let s = read_entry("bearer = \"b-1\"\n").unwrap();
        assert!(matches!(s.auth, SuperOfficeAuth::Bearer { .. }));
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
