//! SuperOffice webhooks (sources.md §4a): `X-SuperOffice-Signature` is the base64
//! HMAC-SHA256 of the raw body keyed with the account's `webhook_secret`; an event names a
//! ChatSession (`PrimaryKey`), which is re-read by id with its messages after the last stored
//! one, exactly as the archive mode reads a changed session.

use async_trait::async_trait;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::source::SuperOffice;
use crate::engine::webhook::{body_key, json_object};
use crate::engine::{Pushed, SourceError, StreamState, Verdict, Webhook, WebhookState};
use crate::lenient::{self, Fields};

/// The events sessionsync registers for and acts on.
pub const EVENTS: [&str; 3] = [
    "chatsession.created",
    "chatsession.changed",
    "chatsession.message",
];
pub const SIGNATURE_HEADER: &str = "x-superoffice-signature";
pub const WEBHOOK_PATH: &str = "/api/v1/Webhook";

/// A webhook's `State` as SuperOffice's REST reference (`WebhookState`) has it: a name, or its
/// number (1 Active, 2 Stopped, 3 TooManyErrors; 0 Unknown); another value is kept as given.
fn webhook_state(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "unknown".into(),
        Some(v) => match lenient::int(v) {
            Some(0) => "Unknown".into(),
            Some(1) => "Active".into(),
            Some(2) => "Stopped".into(),
            Some(3) => "TooManyErrors".into(),
            Some(n) => format!("state {n}"),
            None => lenient::text(v).unwrap_or_else(|| "unknown".into()),
        },
    }
}

/// The name sessionsync registers the account's webhook under (to find it again).
fn webhook_name(account: &str) -> String {
    format!("sessionsync-{account}")
}

impl SuperOffice {
    fn secret(&self) -> &str {
        self.settings
            .webhook_secret
            .as_ref()
            .map_or("", |s| s.expose())
    }

    /// The registered webhooks, or `None` when the API does not list them (404/405).
    async fn webhooks(&self) -> Result<Option<Vec<Value>>, SourceError> {
        match self
            .client
            .send(WEBHOOK_PATH, WEBHOOK_PATH, |c, url| c.get(url))
            .await
        {
            Ok(r) => {
                let v = super::client::parse_json(&r.body)
                    .map_err(|d| self.client.body_error(WEBHOOK_PATH, d))?;
                super::client::list_page(&v)
                    .map(|(items, _)| Some(items))
                    .map_err(|d| self.client.body_error(WEBHOOK_PATH, d))
            }
            Err(SourceError::Http(e)) if matches!(e.status(), Some(404 | 405)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The listed webhook that is this account's: registered under our name, or delivering
    /// to our path.
    fn ours<'a>(&self, hooks: &'a [Value]) -> Option<Fields<'a>> {
        let name = webhook_name(&self.cx.key.account);
        let path = format!("/webhooks/superoffice/{}", self.cx.key.account);
        hooks
            .iter()
            .filter_map(Value::as_object)
            .map(Fields::new)
            .find(|f| {
                f.text("name").as_deref() == Some(name.as_str())
                    || f.text("targeturl")
                        .is_some_and(|u| u.trim_end_matches('/').ends_with(&path))
            })
    }
}

#[async_trait]
impl Webhook for SuperOffice {
    fn authenticate(&self, headers: &HeaderMap, body: &[u8]) -> bool {
        let Some(given) = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .ok()
            })
        else {
            return false;
        };
        let secret = self.secret();
        if secret.is_empty() {
            return false;
        }
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(body);
        // Constant-time comparison.
        mac.verify_slice(&given).is_ok()
    }

    fn parse(&self, body: &[u8]) -> Verdict {
        let o = match json_object(body) {
            Ok(o) => o,
            Err(malformed) => return malformed,
        };
        let f = Fields::new(&o);
        let event_type = f.text("event").unwrap_or_default();
        let known = EVENTS.iter().any(|e| e.eq_ignore_ascii_case(&event_type));
        if !known {
            return Verdict::Ignored {
                event_type: lenient::short(&json!(event_type)),
            };
        }
        // ChatSessionId is an int on SuperOffice's side.
        match f
            .get("primarykey")
            .and_then(lenient::int)
            .filter(|id| *id > 0 && *id <= i64::from(i32::MAX))
        {
            Some(id) => Verdict::Record {
                id: id.into(),
                event_type: event_type.to_ascii_lowercase(),
                key: f.text("eventid").unwrap_or_else(|| body_key(body)),
            },
            None => Verdict::Malformed(format!("{event_type} without a usable PrimaryKey")),
        }
    }

    async fn fetch_ids(
        &self,
        ids: &[crate::model::SessionId],
        state: &StreamState,
    ) -> Result<Pushed, SourceError> {
        let (entities, rejected, gone) = self
            .entities(
                ids.iter().map(|id| id.0).collect(),
                "not_found: named by a webhook event, but reading it answered 404",
            )
            .await?;
        self.pushed(entities, rejected, gone, state).await
    }

    async fn register(&self, target: &reqwest::Url) -> Result<String, SourceError> {
        let name = webhook_name(&self.cx.key.account);
        let body = json!({
            "Name": name,
            "Events": EVENTS,
            "TargetUrl": target.as_str(),
            "Secret": self.secret(),
            "State": "Active",
            "Type": "webhook",
        })
        .to_string();
        let existing = match self.webhooks().await? {
            Some(hooks) => self
                .ours(&hooks)
                .and_then(|f| f.int("webhookid").ok().flatten()),
            None => None,
        };
        let (what, rel, put) = match existing {
            Some(id) => (
                format!("updated webhook {id}"),
                format!("{WEBHOOK_PATH}/{id}"),
                true,
            ),
            None => (
                "registered a new webhook".to_string(),
                WEBHOOK_PATH.to_string(),
                false,
            ),
        };
        let method = if put {
            reqwest::Method::PUT
        } else {
            reqwest::Method::POST
        };
        let r = self
            .client
            .send_json(WEBHOOK_PATH, method, &rel, body)
            .await?;
        let id = super::client::parse_json(&r.body).ok().and_then(|v| {
            v.as_object()
                .and_then(|o| Fields::new(o).int("webhookid").ok().flatten())
        });
        Ok(format!(
            "{what}{} `{name}` with SuperOffice: events {} → {target} (signed with webhook_secret)",
            id.filter(|_| !put)
                .map(|i| format!(" (id {i})"))
                .unwrap_or_default(),
            EVENTS.join(", ")
        ))
    }

    async fn state(&self) -> Result<WebhookState, SourceError> {
        let Some(hooks) = self.webhooks().await? else {
            return Ok(WebhookState::Unknown(
                "the API does not list webhooks here; check it in SuperOffice's settings".into(),
            ));
        };
        let account = &self.cx.key.account;
        let Some(f) = self.ours(&hooks) else {
            return Ok(WebhookState::Problem(format!(
                "no webhook delivers to /webhooks/superoffice/{account}: run `sessionsync webhooks register --source superoffice --account {account} --public-url https://…`"
            )));
        };
        let state = webhook_state(f.get("state"));
        let target = f.text("targeturl").unwrap_or_default();
        let text = format!(
            "webhook `{}` is {state} → {target}",
            f.text("name").unwrap_or_default()
        );
        Ok(if state.eq_ignore_ascii_case("active") {
            WebhookState::Active(text)
        } else if state.eq_ignore_ascii_case("toomanyerrors") {
            WebhookState::Problem(format!(
                "{text}: SuperOffice stopped it because its deliveries kept failing (it gives up after 9 failures in a row): fix the listener (and the TLS proxy in front of it), then run `sessionsync webhooks register` again"
            ))
        } else {
            WebhookState::Problem(format!(
                "{text}; it delivers nothing while not Active: run `sessionsync webhooks register` again (SuperOffice stops a webhook after 9 failures in a row)"
            ))
        })
    }
}
