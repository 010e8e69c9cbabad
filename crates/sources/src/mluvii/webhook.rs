//! mluvii webhooks (sources.md §4b): payloads are not signed, so the callback URL carries
//! `user:password@`, which arrives as HTTP Basic authentication and is compared (in constant
//! time) with the account's `webhook_user` / `webhook_password`. An event names a session
//! (`data.id`), which is re-read by id with its routing history and written with the same
//! open/closed bookkeeping as polling: a session an event finds CLOSED is no longer re-polled.

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde_json::{Value, json};
use sha2::Digest;
use subtle::ConstantTimeEq;

use super::config::SOURCE;
use super::source::{Mluvii, Remembered, STATE_VERSION};
use crate::engine::webhook::{body_key, json_object};
use crate::engine::{Batch, Pushed, SourceError, StreamState, Verdict, Webhook, WebhookState};
use crate::http::HttpError;
use crate::lenient::{self, Fields};

/// The events sessionsync registers for and acts on.
pub const EVENTS: [&str; 7] = [
    "SessionCreated",
    "SessionStarted",
    "SessionOperatorJoined",
    "SessionForwarded",
    "SessionEnded",
    "SessionOperatorLeft",
    "SessionOperatorConcluded",
];
pub const WEBHOOKS_PATH: &str = "/api/v1/Webhooks";

/// The `Authorization` header value mluvii sends for `user:password@` in the callback URL.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl Mluvii {
    /// Registers the webhook `body` describes, or updates the one that exists (409). A POST
    /// answered with a 5xx may still have created it: it is not sent again before the list shows
    /// whether it was (no duplicate webhooks).
    async fn create_or_update(&self, body: &str) -> Result<String, SourceError> {
        match self.post_webhook(body, |s| (500..600).contains(&s)).await {
            Err(SourceError::Http(HttpError::Status { status, .. }))
                if (500..600).contains(&status) =>
            {
                match self.listed_id().await? {
                    Some(id) => {
                        self.put_webhook(id, body).await?;
                        Ok(format!("updated webhook {id}"))
                    }
                    None => self.post_webhook(body, |_| false).await,
                }
            }
            answer => answer,
        }
    }

    /// One registration POST (the statuses `is_final` picks are not retried); a 409 (one
    /// exists) updates the existing webhook.
    async fn post_webhook(
        &self,
        body: &str,
        is_final: fn(u16) -> bool,
    ) -> Result<String, SourceError> {
        let sent = self
            .client
            .send_json(
                WEBHOOKS_PATH,
                reqwest::Method::POST,
                self.client.url(WEBHOOKS_PATH),
                Some(body.to_string()),
                is_final,
            )
            .await;
        match sent {
            Ok(r) => Ok(match first_id(&r.text()) {
                Some(id) => format!("registered webhook {id}"),
                None => "registered a webhook".into(),
            }),
            Err(SourceError::Http(HttpError::Status {
                status: 409,
                body: answer,
                ..
            })) => {
                let id = first_id(&answer).ok_or_else(|| {
                    self.client.vendor(format!(
                        "{WEBHOOKS_PATH} answered 409 (a webhook exists) without its id"
                    ))
                })?;
                self.put_webhook(id, body).await?;
                Ok(format!("updated webhook {id}"))
            }
            Err(e) => Err(e),
        }
    }

    async fn put_webhook(&self, id: i64, body: &str) -> Result<(), SourceError> {
        self.client
            .send_json(
                WEBHOOKS_PATH,
                reqwest::Method::PUT,
                self.client.url(&format!("{WEBHOOKS_PATH}/{id}")),
                Some(body.to_string()),
                |_| false,
            )
            .await
            .map(|_| ())
    }

    /// The registered webhooks, or `None` when the tenant does not list them (404/405).
    async fn listed_webhooks(&self) -> Result<Option<Vec<Value>>, SourceError> {
        let listed = match self
            .client
            .send_json(
                WEBHOOKS_PATH,
                reqwest::Method::GET,
                self.client.url(WEBHOOKS_PATH),
                None,
                |_| false,
            )
            .await
        {
            Ok(r) => r,
            Err(SourceError::Http(e)) if matches!(e.status(), Some(404 | 405)) => return Ok(None),
            Err(e) => return Err(e),
        };
        super::list::list_items(&listed.text())
            .map(Some)
            .map_err(|detail| SourceError::Body {
                endpoint: WEBHOOKS_PATH,
                detail,
            })
    }

    /// The listed webhook that calls back this account.
    fn ours<'a>(&self, items: &'a [Value]) -> Option<Fields<'a>> {
        let path = self.callback_path();
        items
            .iter()
            .filter_map(Value::as_object)
            .map(Fields::new)
            .find(|f| {
                f.text("callbackurl")
                    .and_then(|u| reqwest::Url::parse(&u).ok())
                    .is_some_and(|u| u.path().trim_end_matches('/').ends_with(&path))
            })
    }

    /// The id of the listed webhook that calls back this account (`None` also when the
    /// tenant does not list webhooks).
    async fn listed_id(&self) -> Result<Option<i64>, SourceError> {
        Ok(self
            .listed_webhooks()
            .await?
            .and_then(|items| self.ours(&items).and_then(|f| f.int("id").ok().flatten())))
    }

    /// The path our callback URL ends with.
    fn callback_path(&self) -> String {
        format!("/webhooks/mluvii/{}", self.cx.key.account)
    }
}

/// The first integer in a body: a JSON number, `{"id": …}` in any case, or digits in text.
fn first_id(body: &str) -> Option<i64> {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let found = match &v {
            Value::Object(o) => {
                let f = Fields::new(o);
                f.get("id")
                    .or_else(|| f.get("webhookid"))
                    .and_then(lenient::int)
            }
            other => lenient::int(other),
        };
        if found.is_some() {
            return found;
        }
    }
    let digits: String = body
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A callback URL with its password hidden, for printing.
fn shown(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("redacted"));
    }
    u.to_string()
}

#[async_trait]
impl Webhook for Mluvii {
    fn authenticate(&self, headers: &HeaderMap, _body: &[u8]) -> bool {
        let Some(creds) = &self.settings.webhook else {
            return false;
        };
        let Some(given) = headers.get(AUTHORIZATION).map(|v| v.as_bytes()) else {
            return false;
        };
        // Digests of equal length: neither the content nor the length of the expected value
        // shows in the comparison time.
        let expected = sha2::Sha256::digest(basic(&creds.user, creds.password.expose()));
        let given = sha2::Sha256::digest(given);
        expected.ct_eq(&given).into()
    }

    fn parse(&self, body: &[u8]) -> Verdict {
        let o = match json_object(body) {
            Ok(o) => o,
            Err(malformed) => return malformed,
        };
        let f = Fields::new(&o);
        let event_type = f.text("eventtype").unwrap_or_default();
        let Some(known) = EVENTS.iter().find(|e| e.eq_ignore_ascii_case(&event_type)) else {
            return Verdict::Ignored {
                event_type: lenient::short(&json!(event_type)),
            };
        };
        let id = f
            .get("data")
            .and_then(Value::as_object)
            .and_then(|d| Fields::new(d).get("id").and_then(lenient::int))
            .filter(|id| *id > 0);
        match id {
            Some(id) => Verdict::Record {
                id: id.into(),
                event_type: (*known).to_string(),
                // mluvii sends no event id: the same delivery twice has the same body.
                key: body_key(body),
            },
            None => Verdict::Malformed(format!("{known} without a usable data.id")),
        }
    }

    async fn fetch_ids(
        &self,
        ids: &[crate::model::SessionId],
        _state: &StreamState,
    ) -> Result<Pushed, SourceError> {
        let fetched = self
            .read_sessions(
                ids.iter()
                    .map(|id| super::source::Target {
                        id: id.0,
                        named: true,
                        row: None,
                    })
                    .collect(),
            )
            .await?;
        let read = self.absorb(
            fetched,
            "named by a webhook event, but its detail answered 404",
        );
        let key = self.cx.key.clone();
        let marks = read.marks;
        let sessions = read.sessions;
        Ok(Pushed {
            batch: Batch::new(super::store::SessionRows(sessions))
                .with_rejected(read.rejected)
                .with_nulled(read.nulled)
                .with_gone(read.gone),
            // The same bookkeeping as a poll, on the state as committed: a session now CLOSED
            // leaves the open set; one still open joins it.
            update_state: Box::new(move |committed| {
                let mut mem: Remembered =
                    crate::engine::read_state(&key, committed, STATE_VERSION)?;
                for (id, mark) in marks {
                    mem.mark(id, mark);
                }
                Ok(crate::engine::write_state(&mem, STATE_VERSION))
            }),
        })
    }

    async fn register(&self, target: &reqwest::Url) -> Result<String, SourceError> {
        let Some(creds) = &self.settings.webhook else {
            return Err(self
                .client
                .vendor("no webhook_user / webhook_password configured for this account".into()));
        };
        let mut callback = target.clone();
        if callback.set_username(&creds.user).is_err()
            || callback
                .set_password(Some(creds.password.expose()))
                .is_err()
        {
            return Err(self.client.vendor(format!(
                "`{}` cannot carry credentials (it needs a host)",
                shown(target)
            )));
        }
        let mut events: Vec<&str> = EVENTS.to_vec();
        let mut refused: Vec<&str> = Vec::new();
        let what = loop {
            // mluvii's published swagger (`WebhookModel`) names them in camelCase.
            let body =
                json!({ "eventTypes": events, "callbackUrl": callback.as_str() }).to_string();
            let answer = self.create_or_update(&body).await;
            match answer {
                Ok(what) => break what,
                // A tenant that does not know some event types (older and on-site ones know
                // only SessionStarted, SessionEnded, SessionForwarded, UserStatusChanged) names
                // them in its 400: register the others.
                Err(SourceError::Http(HttpError::Status {
                    status: 400, body, ..
                })) if events.iter().any(|e| body.contains(e))
                    && events.iter().any(|e| !body.contains(e)) =>
                {
                    refused.extend(events.iter().filter(|e| body.contains(**e)));
                    events.retain(|e| !body.contains(e));
                }
                Err(e) => return Err(e),
            }
        };
        let missing = if refused.is_empty() {
            String::new()
        } else {
            format!(
                "; the tenant does not offer {} (polling covers them)",
                refused.join(", ")
            )
        };
        Ok(format!(
            "{what} with {SOURCE}: events {} → {} (HTTP Basic as webhook_user){missing}",
            events.join(", "),
            shown(&callback)
        ))
    }

    async fn state(&self) -> Result<WebhookState, SourceError> {
        let Some(items) = self.listed_webhooks().await? else {
            return Ok(WebhookState::Unknown(
                "the API does not list webhooks here; check it in mluvii's settings".into(),
            ));
        };
        let path = self.callback_path();
        let account = &self.cx.key.account;
        let ours = self.ours(&items);
        Ok(match ours {
            Some(f) => {
                let url = f
                    .text("callbackurl")
                    .and_then(|u| reqwest::Url::parse(&u).ok())
                    .map(|u| shown(&u))
                    .unwrap_or_default();
                let listed: Vec<String> = f
                    .get("eventtypes")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(lenient::text).collect())
                    .unwrap_or_default();
                let missing: Vec<&str> = EVENTS
                    .iter()
                    .copied()
                    .filter(|e| !listed.iter().any(|l| l.eq_ignore_ascii_case(e)))
                    .collect();
                let note = if missing.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; events missing: {} (the tenant does not offer them, or they were not registered: polling covers them)",
                        missing.join(", ")
                    )
                };
                WebhookState::Active(format!(
                    "webhook {} → {url} ({} event types){note}",
                    f.int("id").ok().flatten().unwrap_or_default(),
                    listed.len()
                ))
            }
            None => WebhookState::Problem(format!(
                "no webhook calls back {path}: run `sessionsync webhooks register --source mluvii --account {account} --public-url https://…` (mluvii deletes a webhook that fails for 3 days)"
            )),
        })
    }
}
