//! SuperOffice Online, server to server (sources.md §2): the system user flow and the tenant's
//! state.
//!
//! - **Sign.** `data = "<system user token>.<UTC now as yyyyMMddHHmm>"`, signed with the
//!   application's RSA key (PKCS#1 v1.5 over SHA-256, RustCrypto `rsa`), base64:
//!   `SignedSystemToken = data + "." + signature`.
//! - **Trade** it at `PartnerSystemUser/Authenticate` (on the environment's host) for a JWT.
//! - **Validate** the JWT before reading anything of it (`jsonwebtoken`): RS256 with the key of
//!   SuperOffice's JWKS that its `kid` names (the JWKS is cached for [`JWKS_MAX_AGE`]; a `kid`
//!   it lacks fetches it again at most once per [`JWKS_UNKNOWN_KID_PAUSE`]), `iss` = `SuperOffice
//!   AS`, `aud` = `spn:<serial>`, `exp`/`nbf` with a minute of leeway, and `ctx` = the configured
//!   `context_identifier` (SuperOffice's "Validate security tokens": a token of another tenant of
//!   the same application passes every other check). Only then is its `ticket` claim used.
//! - **A refusal is remembered** for [`REFUSAL_MEMORY`]: the requests waiting for a ticket do
//!   not each ask Authenticate again to be refused again.
//! - **One ticket per account**, reused until the tenant answers 401: then exactly one renewal,
//!   whoever else was waiting for it takes the new ticket ([`SystemUser::renew`]).
//! - **The tenant's host** comes from the state API (`/api/state/{ctx}` on the environment's
//!   host), cached until its `ValidUntil`, read again on a 421 or a 503; the environment's host
//!   itself is never sent an API call.
//!
//! The credential source sits behind this one type: SuperOffice says this flow will give way to
//! OAuth 2.0 client credentials.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

pub use super::signing::{PrivateKey, signed_system_token};
pub use super::tenant::{TenantState, environment_url, parse_state};

use super::config::SystemUserConfig;
use crate::http::{HttpClient, HttpError};
use crate::lenient::Fields;
use crate::secret::Secret;

pub const AUTHENTICATE_PATH: &str = "/Login/api/PartnerSystemUser/Authenticate";
pub const JWKS_PATH: &str = "/login/.well-known/jwks";
/// `{ctx}` is the context identifier.
pub const STATE_PATH: &str = "/api/state/{ctx}";
/// The JWT's issuer.
pub const ISSUER: &str = "SuperOffice AS";
/// The prefix of SuperOffice's claims.
pub const CLAIM_PREFIX: &str = "http://schemes.superoffice.net/identity/";
/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(60);
/// How long the JWKS is used before it is read again (SuperOffice rotates its signing keys
/// seldom, announcing them in the JWKS first).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(6 * 3600);
/// The least time between two reads of the JWKS for a key id it does not list (a forged token
/// repeated must not make every request fetch it).
pub const JWKS_UNKNOWN_KID_PAUSE: Duration = Duration::from_secs(300);
/// How long a refusal of Authenticate is answered from memory.
pub const REFUSAL_MEMORY: Duration = Duration::from_secs(60);
/// The most characters of a value the vendor sends (an error message, a key id) an error quotes.
const QUOTE_MAX: usize = 200;
/// Why the system user flow or the state API failed. Never carries the key, the system user
/// token, the signed token, the JWT or the ticket.
#[derive(Debug, thiserror::Error)]
pub enum SystemUserError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(
        "the state API at {environment} does not know tenant `{context}` (HTTP 404): check `context_identifier` (e.g. \"Cust12345\") and that `environment` is the tenant's (sod, stage or online)"
    )]
    UnknownTenant {
        context: String,
        environment: String,
    },
    #[error(
        "SuperOffice refused the signed system user token: {message}. Check `system_user_token` (the tenant's, from its consent), `private_key` (the application's), `app_token` (its client secret) and `context_identifier`; a clock more than a few minutes off also fails"
    )]
    Refused { message: String },
    #[error(
        "the JWT SuperOffice returned failed the {check} check ({detail}); it was not used and no request went to the tenant"
    )]
    Jwt { check: &'static str, detail: String },
    #[error("{endpoint} returned a body that could not be read ({detail})")]
    Body {
        endpoint: &'static str,
        detail: String,
    },
}

/// The ticket in use, and which renewal gave it.
#[derive(Clone)]
pub struct Ticket {
    pub value: Secret,
    pub generation: u64,
    /// The JWT's key id (for `check`).
    pub kid: String,
    /// The tenant's REST root the JWT named (`webapi_url`), used when the state API names none.
    pub webapi_url: Option<String>,
    /// Whether the tenant has answered a request made with it: a ticket refused after that has
    /// expired (or was used up), one refused before that was refused outright.
    pub served: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// One account's system user: its credentials, its ticket, the JWKS and the tenant's state.
pub struct SystemUser {
    config: SystemUserConfig,
    ticket: tokio::sync::Mutex<Option<Ticket>>,
    /// Tickets fetched so far: the generation of the next one.
    renewals: AtomicU64,
    jwks: tokio::sync::Mutex<Jwks>,
    tenant: tokio::sync::Mutex<Option<TenantState>>,
    /// The last refusal of Authenticate, and when.
    refused: std::sync::Mutex<Option<(std::time::Instant, String)>>,
}

/// The JWKS as last read, when, and when a key id it lacked last made it be read again.
#[derive(Default)]
struct Jwks {
    set: Option<JwkSet>,
    read_at: Option<std::time::Instant>,
    unknown_refetch_at: Option<std::time::Instant>,
}

impl std::fmt::Debug for SystemUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemUser")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SystemUser {
    pub fn new(config: SystemUserConfig) -> Self {
        SystemUser {
            config,
            ticket: Default::default(),
            renewals: AtomicU64::new(0),
            jwks: Default::default(),
            tenant: Default::default(),
            refused: Default::default(),
        }
    }

    /// Its keys, as configured.
    pub fn config(&self) -> &SystemUserConfig {
        &self.config
    }

    /// The vendor's words with anything of ours they may quote back (the system user token,
    /// the client secret: as sent, JSON-escaped or URL-encoded) taken out, and cut to
    /// [`QUOTE_MAX`] characters.
    fn scrub(&self, message: String) -> String {
        let c = &self.config;
        scrub_secrets(
            message,
            &[c.system_user_token.expose(), c.app_token.expose()],
        )
    }

    fn env_url(&self, path: &str) -> reqwest::Url {
        crate::http::endpoint_url(&self.config.environment, path)
    }

    /// The ticket in use; the first call fetches one.
    pub async fn ticket(&self, http: &HttpClient) -> Result<Ticket, SystemUserError> {
        let mut slot = self.ticket.lock().await;
        if let Some(t) = slot.as_ref() {
            return Ok(t.clone());
        }
        let t = self.authenticate(http).await?;
        *slot = Some(t.clone());
        Ok(t)
    }

    /// A new ticket, because the tenant refused ticket `generation`. Requests that saw the same
    /// ticket refused wait for one renewal and share its result.
    pub async fn renew(
        &self,
        http: &HttpClient,
        generation: u64,
    ) -> Result<Ticket, SystemUserError> {
        let mut slot = self.ticket.lock().await;
        if let Some(t) = slot.as_ref().filter(|t| t.generation != generation) {
            return Ok(t.clone());
        }
        *slot = None;
        let t = self.authenticate(http).await?;
        tracing::debug!(context = %self.config.context_identifier, generation = t.generation, "SuperOffice ticket renewed: the tenant refused the one before");
        *slot = Some(t.clone());
        Ok(t)
    }

    /// Signs the system user token, trades it for a JWT, validates that, and takes its ticket.
    async fn authenticate(&self, http: &HttpClient) -> Result<Ticket, SystemUserError> {
        if let Some((at, message)) = self.refused.lock().expect("refused").as_ref()
            && at.elapsed() < REFUSAL_MEMORY
        {
            return Err(SystemUserError::Refused {
                message: format!(
                    "{message} (refused {} s ago; not asked again for a minute)",
                    at.elapsed().as_secs()
                ),
            });
        }
        let result = self.authenticate_now(http).await;
        if let Err(SystemUserError::Refused { message }) = &result {
            *self.refused.lock().expect("refused") =
                Some((std::time::Instant::now(), message.clone()));
        }
        result
    }

    async fn authenticate_now(&self, http: &HttpClient) -> Result<Ticket, SystemUserError> {
        let c = &self.config;
        let signed = signed_system_token(&c.private_key, c.system_user_token.expose(), Utc::now());
        let body = json!({
            "SignedSystemToken": signed,
            "ApplicationToken": c.app_token.expose(),
            "ContextIdentifier": c.context_identifier,
            "ReturnTokenType": "JWT",
        })
        .to_string();
        let url = self.env_url(AUTHENTICATE_PATH);
        let r = http
            .send(AUTHENTICATE_PATH, |c| {
                c.post(url.clone())
                    .header("Content-Type", "application/json")
                    .header("Accept", "application/json")
                    .body(body.clone())
            })
            .await
            .map_err(|e| match e {
                // A refusal's reason is in its body (`ErrorMessage`), as with a 200.
                HttpError::Status { status, body, .. } if (400..500).contains(&status) => {
                    SystemUserError::Refused {
                        message: self.scrub(
                            error_message(body.as_bytes())
                                .unwrap_or_else(|| format!("HTTP {status}")),
                        ),
                    }
                }
                // Any other answer's body (a redirect's, a 5xx's) may quote what was sent too.
                HttpError::Status {
                    endpoint,
                    host,
                    status,
                    hint,
                    body,
                } => SystemUserError::Http(HttpError::Status {
                    endpoint,
                    host,
                    status,
                    hint,
                    body: self.scrub(body),
                }),
                e => SystemUserError::Http(e),
            })?;
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| SystemUserError::Body {
            endpoint: AUTHENTICATE_PATH,
            detail: format!("not JSON: {e}"),
        })?;
        let o = v.as_object().ok_or_else(|| SystemUserError::Body {
            endpoint: AUTHENTICATE_PATH,
            detail: "not a JSON object".into(),
        })?;
        let f = Fields::new(o);
        let ok = f
            .get("issuccessful")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let token = f
            .text("token")
            .filter(|_| ok)
            .ok_or_else(|| SystemUserError::Refused {
                message: self.scrub(f.text("errormessage").unwrap_or_else(|| {
                    "IsSuccessful is false and no ErrorMessage was given".into()
                })),
            })?;
        let (kid, claims) = self.validate(http, &token).await?;
        let claim = |name: &str| {
            claims
                .get(&format!("{CLAIM_PREFIX}{name}"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        // The token must be this tenant's: any tenant of the application gets one that passes
        // every check above (SuperOffice's "Validate security tokens": compare `ctx`).
        let ctx = claim("ctx").unwrap_or_default();
        if !ctx.eq_ignore_ascii_case(&c.context_identifier) {
            return Err(SystemUserError::Jwt {
                check: "ctx",
                detail: if ctx.is_empty() {
                    "it names no tenant (no ctx claim)".into()
                } else {
                    format!(
                        "it is for tenant `{}`, not the configured context_identifier `{}`",
                        quote(&ctx),
                        c.context_identifier
                    )
                },
            });
        }
        let ticket = claim("ticket")
            .filter(|t| !t.is_empty())
            .ok_or(SystemUserError::Jwt {
                check: "ticket claim",
                detail: "it carries no ticket".into(),
            })?;
        let generation = self.renewals.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Ticket {
            value: Secret::new(ticket),
            generation,
            kid,
            webapi_url: claim("webapi_url"),
            served: Default::default(),
        })
    }

    /// Validates the JWT: RS256 with the JWKS key its `kid` names, issuer, audience
    /// `spn:<serial>`, `exp` and `nbf`; its key id and claims.
    async fn validate(
        &self,
        http: &HttpClient,
        token: &str,
    ) -> Result<(String, serde_json::Map<String, Value>), SystemUserError> {
        let jwt = |check, detail: String| SystemUserError::Jwt { check, detail };
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| jwt("format", format!("not a JWT: {e}")))?;
        if header.alg != Algorithm::RS256 {
            return Err(jwt("algorithm", format!("{:?}, not RS256", header.alg)));
        }
        let kid = header
            .kid
            .map(|k| quote(&k))
            .ok_or_else(|| jwt("key id", "the header names no `kid`".into()))?;
        let key = self.jwk(http, &kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        // The audience names the serial, a claim of the token itself: checked below, once the
        // signature has shown the claims are SuperOffice's.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss"]);
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                let check = match e.kind() {
                    K::InvalidSignature => "signature",
                    K::ExpiredSignature => "exp (expired)",
                    K::ImmatureSignature => "nbf (not yet valid)",
                    K::InvalidIssuer => "iss",
                    K::InvalidAlgorithm | K::InvalidAlgorithmName => "algorithm",
                    K::MissingRequiredClaim(_) => "required claims",
                    _ => "format",
                };
                jwt(check, format!("{e}; key id `{kid}`"))
            })?;
        let claims = data.claims;
        let serial = claims
            .get(&format!("{CLAIM_PREFIX}serial"))
            .and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_i64().map(|n| n.to_string()))
            })
            .ok_or_else(|| jwt("aud", "the token carries no serial claim".into()))?;
        let want = format!("spn:{serial}");
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == want,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(want.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(jwt("aud", format!("the audience is not `{want}`")));
        }
        Ok((kid, claims))
    }

    /// The JWKS key named `kid`: from the cached set while it is younger than
    /// [`JWKS_MAX_AGE`]; a set that lacks `kid` is read again, at most once per
    /// [`JWKS_UNKNOWN_KID_PAUSE`] (the log and the error say which happened).
    async fn jwk(&self, http: &HttpClient, kid: &str) -> Result<DecodingKey, SystemUserError> {
        let mut slot = self.jwks.lock().await;
        let now = std::time::Instant::now();
        let young = slot.read_at.is_some_and(|t| now - t < JWKS_MAX_AGE);
        let cached = slot
            .set
            .as_ref()
            .filter(|_| young)
            .and_then(|s| s.find(kid).cloned());
        let jwk = match cached {
            Some(k) => k,
            None => {
                let why = match (&slot.set, young) {
                    (None, _) => "first use",
                    (Some(_), false) => "the cached set is older than 6 hours",
                    (Some(_), true) => "the cached set lacks the token's key id",
                };
                if why.starts_with("the cached set lacks")
                    && let Some(at) = slot.unknown_refetch_at
                    && now - at < JWKS_UNKNOWN_KID_PAUSE
                {
                    return Err(SystemUserError::Jwt {
                        check: "signature",
                        detail: format!(
                            "it is signed with key id `{kid}`, which SuperOffice's JWKS did not list when read {} s ago; it is read again for an unknown key at most every 5 minutes: forged, or not from this environment",
                            (now - at).as_secs()
                        ),
                    });
                }
                let url = self.env_url(JWKS_PATH);
                let r = http
                    .send(JWKS_PATH, |c| {
                        c.get(url.clone()).header("Accept", "application/json")
                    })
                    .await?;
                let set: JwkSet =
                    serde_json::from_slice(&r.body).map_err(|e| SystemUserError::Body {
                        endpoint: JWKS_PATH,
                        detail: format!("not a JWKS: {e}"),
                    })?;
                // The first read is routine; a read for an old set or an unknown key id is worth
                // a line.
                if slot.set.is_none() {
                    tracing::debug!(context = %self.config.context_identifier, keys = set.keys.len(), why, "SuperOffice JWKS read");
                } else {
                    tracing::info!(context = %self.config.context_identifier, keys = set.keys.len(), why, "SuperOffice JWKS read again");
                }
                let found = set.find(kid).cloned();
                slot.set = Some(set);
                slot.read_at = Some(now);
                if why.starts_with("the cached set lacks") {
                    slot.unknown_refetch_at = Some(now);
                }
                found.ok_or_else(|| SystemUserError::Jwt {
                    check: "signature",
                    detail: format!(
                        "it is signed with key id `{kid}`, which SuperOffice's JWKS does not list (read just now: {why}): forged, or not from this environment"
                    ),
                })?
            }
        };
        DecodingKey::from_jwk(&jwk).map_err(|e| SystemUserError::Jwt {
            check: "signature",
            detail: format!("the JWKS key `{kid}` cannot be used ({e})"),
        })
    }

    /// The tenant's state: the cached one while fresh, else read again.
    pub async fn tenant(&self, http: &HttpClient) -> Result<TenantState, SystemUserError> {
        let mut slot = self.tenant.lock().await;
        if let Some(s) = slot.as_ref().filter(|s| s.fresh(Utc::now())) {
            return Ok(s.clone());
        }
        let s = self.read_state(http).await?;
        *slot = Some(s.clone());
        Ok(s)
    }

    /// The state read again because a request on `seen` (read at that time) was refused
    /// (421, 503); requests that saw the same refusal share one read.
    pub async fn tenant_again(
        &self,
        http: &HttpClient,
        seen: DateTime<Utc>,
    ) -> Result<TenantState, SystemUserError> {
        let mut slot = self.tenant.lock().await;
        if let Some(s) = slot.as_ref().filter(|s| s.read_at > seen) {
            return Ok(s.clone());
        }
        let s = self.read_state(http).await?;
        *slot = Some(s.clone());
        Ok(s)
    }

    async fn read_state(&self, http: &HttpClient) -> Result<TenantState, SystemUserError> {
        let ctx = &self.config.context_identifier;
        let url = self.env_url(&STATE_PATH.replace("{ctx}", ctx));
        let r = http
            .send(STATE_PATH, |c| {
                c.get(url.clone()).header("Accept", "application/json")
            })
            .await
            .map_err(|e| match e.status() {
                // A tenant the environment does not know is a failure to fix, not a tenant down.
                Some(404) => SystemUserError::UnknownTenant {
                    context: ctx.clone(),
                    environment: crate::http::origin(&self.config.environment),
                },
                _ => SystemUserError::Http(e),
            })?;
        parse_state(&r.body, Utc::now()).map_err(|detail| SystemUserError::Body {
            endpoint: STATE_PATH,
            detail,
        })
    }
}

/// A value the vendor sent, as an error may quote it: printable characters only, at most
/// [`QUOTE_MAX`] of them.
pub fn quote(value: &str) -> String {
    let mut out: String = value
        .chars()
        .filter(|c| !c.is_control())
        .take(QUOTE_MAX)
        .collect();
    if value.chars().count() > QUOTE_MAX {
        out.push('…');
    }
    out
}

/// `message` with every `secrets` value taken out, as written, JSON-escaped or URL-encoded (a
/// service may quote what it was sent in any of these), then quoted ([`quote`]).
pub fn scrub_secrets(message: String, secrets: &[&str]) -> String {
    let mut m = message;
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        let json = serde_json::to_string(secret).unwrap_or_default();
        let json = json.trim_matches('"').to_string();
        // RFC 3986's unreserved characters stay as they are; everything else is %XX (and a
        // form encoding writes a space as `+`).
        const ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~');
        let percent = percent_encoding::utf8_percent_encode(secret, ENCODED).to_string();
        let form_encoded = percent.replace("%20", "+");
        for form in [secret.to_string(), json, percent, form_encoded] {
            if form.len() >= 4 {
                m = m.replace(&form, "[redacted]");
            }
        }
    }
    quote(&m)
}

/// `ErrorMessage` of an Authenticate answer.
fn error_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let o = v.as_object()?;
    Fields::new(o).text("errormessage")
}

#[cfg(test)]
#[path = "system_user_tests.rs"]
mod tests;
