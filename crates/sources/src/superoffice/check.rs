//! `sessionsync check` for SuperOffice: the system user flow step by step, one chat listed or
//! read, and whether the tenant's dates carry an offset.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::client::{ENTITY_PATH, LIST_PATH};
use super::config::{SuperOfficeMode, SuperOfficeSettings};
use super::source::SuperOffice;
use crate::engine::SourceError;
use crate::lenient::{self, Fields};

impl SuperOffice {
    /// For the system user flow, one line per step (signed token accepted, JWT verified, the
    /// tenant's state and host); then lists (or reads) one chat, and tells whether the tenant's
    /// dates carry an offset: if not, it ignores `SO-TimeZone` and they are read in the
    /// account's `timezone`. Lines that begin `FAIL: ` or `WARN: ` are shown as such.
    pub(super) async fn check_account(&self) -> Result<String, SourceError> {
        let mut lines = Vec::new();
        if let Some(su) = self.client.system_user() {
            let ticket = su
                .ticket(&self.cx.http)
                .await
                .map_err(|e| self.client.su_error(e))?;
            lines.push(format!(
                "signed system user token accepted for tenant {} (PartnerSystemUser/Authenticate)",
                su.config().context_identifier
            ));
            // What was verified, and no more: the token is SuperOffice's, current, and for this
            // tenant; whether the tenant's consent covers what the application asks is not
            // something a token tells.
            lines.push(format!(
                "JWT verified: signed (RS256) with SuperOffice's JWKS key `{}`, issuer `SuperOffice AS`, audience spn:<its serial>, within exp/nbf, and issued for tenant {} (its ctx claim)",
                ticket.kid,
                su.config().context_identifier
            ));
            let state = su
                .tenant(&self.cx.http)
                .await
                .map_err(|e| self.client.su_error(e))?;
            let host = state
                .endpoint
                .as_ref()
                .map_or("(no Endpoint named)".to_string(), |e| e.to_string());
            match state.outlook() {
                super::tenant::Outlook::Runs => {}
                super::tenant::Outlook::Wait => {
                    lines.push(format!(
                        "WARN: tenant state {} (expected to pass: runs end as `unavailable` until it runs again) at {host}",
                        state.state
                    ));
                    return Ok(lines.join("\n"));
                }
                super::tenant::Outlook::Fail(todo) => {
                    lines.push(format!("FAIL: tenant state {}: {todo}", state.state));
                    return Ok(lines.join("\n"));
                }
            }
            if let Some(e) = &state.endpoint
                && let Err(why) = super::tenant::allowed_root(&su.config().environment, e)
            {
                lines.push(format!(
                    "FAIL: the state API names the tenant's host as {why}; nothing is sent there"
                ));
                return Ok(lines.join("\n"));
            }
            lines.push(format!("tenant state {} at {host}", state.state));
        }
        let tz = self.settings.timezone;
        let since = Utc::now() - crate::engine::SILENCE_CHECK;
        // One call: what it answered, a chat to judge the dates by, and (for_user, whose list is
        // whole) whether a chat of the last 30 days is visible.
        let answered = match self.settings.mode {
            SuperOfficeMode::ForUser => self.client.entities_for_user().await.map(|list| {
                let recent = list.iter().any(|v| requested_since(v, since, tz));
                (
                    format!("{} chat sessions for the API user", list.len()),
                    list.into_iter().next(),
                    Some(recent),
                )
            }),
            SuperOfficeMode::Archive => {
                match self.client.list_rows("chatSessionId gt 0", Some(1)).await {
                    Ok(rows) => match rows.keys().next() {
                        Some(id) => self
                            .client
                            .get_json(ENTITY_PATH, &format!("{LIST_PATH}/{id}"))
                            .await
                            .map(|s| ("the ChatSession archive lists chats".to_string(), s, None)),
                        None => Ok((
                            "the ChatSession archive lists no chat yet".to_string(),
                            None,
                            None,
                        )),
                    },
                    Err(e) => Err(e),
                }
            }
        };
        let recent = match answered {
            Ok((what, sample, recent)) => {
                lines.push(format!(
                    "one authenticated call answered ({what}); {}",
                    dates_verdict(sample.as_ref(), tz)
                ));
                Some(recent)
            }
            Err(e) if lines.is_empty() => return Err(e),
            Err(e) => {
                lines.push(format!("FAIL: one authenticated call failed: {e}"));
                None
            }
        };
        if let Some(recent) = recent {
            let recent = match recent {
                Some(r) => Ok(r),
                // The archive is asked for one chat requested since then.
                None => {
                    let filter = format!(
                        "whenRequested afterTime '{}'",
                        super::client::filter_time(since, tz)
                    );
                    self.client
                        .list_rows(&filter, Some(1))
                        .await
                        .map(|r| !r.is_empty())
                }
            };
            match recent {
                Ok(true) => {}
                Ok(false) => lines.push(match self.settings.mode {
                    SuperOfficeMode::ForUser => "WARN: no chat requested in the last 30 days is visible: ChatSessionsForUser lists only the chats the user is a member of (Can Respond, Notifications, Listen or Manager of their chat topics); set mode = \"archive\", or make the user a member".to_string(),
                    SuperOfficeMode::Archive => "WARN: no chat requested in the last 30 days is visible in the ChatSession archive: the user needs the right to see chat sessions (a Chat licence, and a role with access to chat topics); a system user has the tenant's rights".to_string(),
                }),
                Err(e) => lines.push(format!("FAIL: looking for chats of the last 30 days failed: {e}")),
            }
        }
        if self.client.system_user().is_some() && self.settings.mode == SuperOfficeMode::ForUser {
            lines.push("WARN: mode `for_user` with a system user: it sees only the chats it is a member of (Can Respond, Notifications, Listen or Manager), often none; set mode = \"archive\" to read every chat of the tenant".into());
        }
        Ok(lines.join("\n"))
    }
}

/// Whether an entity was requested at or after `since` (its `WhenRequested`, read in `tz` when
/// it has no offset; "not set" is not).
fn requested_since(entity: &Value, since: DateTime<Utc>, tz: chrono_tz::Tz) -> bool {
    entity
        .as_object()
        .and_then(|o| Fields::new(o).text("whenrequested"))
        .and_then(|t| lenient::read_date(&t, tz))
        .is_some_and(|d| matches!(d, lenient::DateValue::Set(t) if t >= since))
}

/// Whether a date string carries its offset (`Z`, `+01:00`, `+0100`).
pub(super) fn has_offset(s: &str) -> bool {
    s.find('T')
        .is_some_and(|i| s[i..].contains(['+', '-', 'Z', 'z']))
}

/// What `check` says of the dates of one chat: with an offset or without, and then in which
/// zone they are read.
pub(super) fn dates_verdict(sample: Option<&Value>, tz: chrono_tz::Tz) -> String {
    let dates: Vec<String> = sample
        .and_then(Value::as_object)
        .map(|o| {
            let f = Fields::new(o);
            [
                "whenrequested",
                "whenstarted",
                "whenended",
                "whenidle",
                "whenfetched",
            ]
            .iter()
            .filter_map(|n| f.text(n))
            .filter(|s| {
                matches!(
                    lenient::read_date(s, chrono_tz::UTC),
                    Some(lenient::DateValue::Set(_))
                )
            })
            .collect()
        })
        .unwrap_or_default();
    match dates.first() {
        None => format!(
            "no chat with a date to read yet: whether its dates carry an offset is not known (offset-less dates would be read in {tz})"
        ),
        Some(d) if has_offset(d) => {
            "its dates carry an offset (SO-TimeZone honoured): `timezone` is not needed".into()
        }
        Some(_) => format!(
            "its dates come WITHOUT an offset (the tenant ignores SO-TimeZone: its time-zone support is off), and are read in {tz}; if that is not the tenant's base time zone, set `timezone` (e.g. \"Europe/Oslo\")"
        ),
    }
}

impl SuperOfficeSettings {
    pub(super) fn mode_name(&self) -> &'static str {
        match self.mode {
            SuperOfficeMode::Archive => "archive",
            SuperOfficeMode::ForUser => "for_user",
        }
    }
}
