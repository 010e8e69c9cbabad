//! OAuth client-credentials tokens for one mluvii account: fetched from `/login/connect/token`,
//! reused until shortly before they expire, renewed once when the API answers 401. Only one
//! renewal happens however many requests see the 401 at once. Neither the client secret nor a
//! token ever reaches a log line, a metric or an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::Secret;
use crate::http::{HttpClient, HttpError};

pub const TOKEN_PATH: &str = "/login/connect/token";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "the token endpoint refused client_id `{client_id}` (HTTP {status}{code}); check client_id and client_secret"
    )]
    Refused {
        account: String,
        client_id: String,
        status: u16,
        code: String,
    },
    #[error("the token endpoint answered without a usable access_token ({detail})")]
    BadAnswer { account: String, detail: String },
    #[error(transparent)]
    Http(HttpError),
}

#[derive(Clone)]
pub struct Token {
    pub value: Secret,
    pub generation: u64,
    renew_at: Instant,
}

pub struct TokenCache {
    url: reqwest::Url,
    account: String,
    client_id: String,
    client_secret: Secret,
    current: Mutex<Option<Token>>,
    fetched: AtomicU64,
}

impl TokenCache {
    pub fn new(url: reqwest::Url, account: &str, client_id: &str, client_secret: Secret) -> Self {
        TokenCache {
            url,
            account: account.to_string(),
            client_id: client_id.to_string(),
            client_secret,
            current: Mutex::new(None),
            fetched: AtomicU64::new(0),
        }
    }

    /// Tokens fetched so far.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// A token that is not about to expire.
    pub async fn get(&self, http: &HttpClient) -> Result<Token, AuthError> {
        let mut cur = self.current.lock().await;
        match &*cur {
            Some(t) if Instant::now() < t.renew_at => Ok(t.clone()),
            _ => {
                let t = self
                    .fetch(http, cur.as_ref().map_or(0, |t| t.generation + 1))
                    .await?;
                *cur = Some(t.clone());
                Ok(t)
            }
        }
    }

    /// A token other than `rejected` (which the API answered 401 to): renewed unless another
    /// request already did so.
    pub async fn renew(&self, http: &HttpClient, rejected: &Token) -> Result<Token, AuthError> {
        let mut cur = self.current.lock().await;
        if let Some(t) = &*cur
            && t.generation != rejected.generation
        {
            return Ok(t.clone());
        }
        let t = self.fetch(http, rejected.generation + 1).await?;
        *cur = Some(t.clone());
        Ok(t)
    }

    async fn fetch(&self, http: &HttpClient, generation: u64) -> Result<Token, AuthError> {
        let form = [
            ("response_type", "token"),
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
        ];
        let resp = http
            .send(TOKEN_PATH, |c| c.post(self.url.clone()).form(&form))
            .await
            .map_err(|e| match e {
                HttpError::Status { status, body, .. } if (400..500).contains(&status) => {
                    let code = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                        .filter(|c| c.len() < 64 && !c.contains(self.client_secret.expose()))
                        .map(|c| format!(": {c}"))
                        .unwrap_or_default();
                    AuthError::Refused {
                        account: self.account.clone(),
                        client_id: self.client_id.clone(),
                        status,
                        code,
                    }
                }
                other => AuthError::Http(other),
            })?;
        let bad = |detail: &str| AuthError::BadAnswer {
            account: self.account.clone(),
            detail: detail.to_string(),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&resp.body).map_err(|_| bad("the body is not JSON"))?;
        let value = v
            .get("access_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("no access_token field"))?;
        let expires_in = v
            .get("expires_in")
            .and_then(crate::sources::lenient::int)
            .unwrap_or(3600)
            .max(1) as u64;
        // Renew a little early: 10% of the lifetime, at most a minute.
        let margin = (expires_in / 10).min(60);
        self.fetched.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(account = %self.account, expires_in, "mluvii token obtained");
        Ok(Token {
            value: Secret::new(value.to_string()),
            generation,
            renew_at: Instant::now() + Duration::from_secs(expires_in - margin),
        })
    }
}
