//! The HTTP client every source uses: one per account.
//!
//! - a client-side ceiling of `requests_per_second` (governor), shared by all of the account's
//!   requests, concurrent or not;
//! - retries with exponential backoff and full jitter (backon) on 429, 5xx, timeouts and
//!   connection errors; other 4xx are final;
//! - a 429's `Retry-After` (seconds or HTTP-date) is obeyed, capped by `max_retry_wait`, and
//!   pauses the whole account, not only the request that got it;
//! - errors never carry the URL (the legacy Take Control API puts its key in the query string).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::RngExt;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

use crate::events::{HttpResponded, HttpRetrying};
use crate::settings::HttpSettings;
use crate::telemetry::Metrics;

/// A final HTTP failure, after any retries.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{endpoint} at {host} answered HTTP {status}{hint}: {body}")]
    Status {
        endpoint: &'static str,
        /// Where it went: scheme, host and port only (never a path's secrets, a query or a
        /// user name), so that an error says which server, and which account's `base_url`.
        host: String,
        status: u16,
        hint: &'static str,
        body: String,
    },
    #[error(
        "{endpoint} at {host} answered with a body larger than {limit_mib} MiB; lower `window` so that one request covers less"
    )]
    TooLarge {
        endpoint: &'static str,
        host: String,
        limit_mib: usize,
    },
    #[error("{endpoint} at {host} still failing after {attempts} attempts ({last})")]
    RetriesExhausted {
        endpoint: &'static str,
        host: String,
        attempts: usize,
        #[source]
        last: LastAttempt,
    },
    #[error(
        "the HTTP client could not be built ({detail}); check the system's TLS root certificates (SSL_CERT_FILE / ca-certificates)"
    )]
    Client { detail: String },
}

/// How the last attempt of a request failed (the cause of [`HttpError::RetriesExhausted`]): a
/// status with its reason, a timeout, a connection error. Never carries a URL (the legacy Take
/// Control key is a query parameter) or a secret.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct LastAttempt {
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    pub detail: String,
}

/// The response would not fit: see `max_response_mb`.
pub fn is_too_large(e: &HttpError) -> bool {
    matches!(e, HttpError::TooLarge { .. })
}

impl HttpError {
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            HttpError::RetriesExhausted { .. }
            | HttpError::TooLarge { .. }
            | HttpError::Client { .. } => None,
        }
    }
}

/// A successful (2xx) response, body read whole.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The body as text; invalid UTF-8 is replaced, never fatal.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

/// What one attempt ended with, when it did not succeed.
#[derive(Debug)]
struct AttemptError {
    /// The request's origin (scheme, host, port).
    host: String,
    too_large: bool,
    retry_reason: Option<&'static str>,
    retry_after: Option<Duration>,
    status: Option<u16>,
    body: String,
    detail: String,
}

pub struct HttpClient {
    client: Result<reqwest::Client, String>,
    source: &'static str,
    account: String,
    settings: HttpSettings,
    limiter: DefaultDirectRateLimiter,
    pause_until: Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("source", &self.source)
            .field("account", &self.account)
            .finish()
    }
}

/// The default largest response body read (`max_response_mb`); a larger one fails the
/// request without a retry, and the engine splits the window.
pub const MAX_BODY_BYTES: usize = 256 << 20;

/// First retry waits up to this long; each further one doubles it, up to `max_retry_wait`.
const BASE_DELAY: Duration = Duration::from_millis(200);

/// One `reqwest` client for the whole process: its TLS configuration (the system's root
/// certificates) and connection pools are shared by every account, so memory does not grow
/// with the number of accounts. Each account's timeout is set on its own requests.
/// Building it can fail (no usable TLS configuration): every request then fails with
/// [`HttpError::Client`], saying so, instead of the process panicking.
fn shared_client() -> Result<reqwest::Client, String> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("sessionsync/", env!("CARGO_PKG_VERSION")))
                // A redirect from an API is a login page or a misdirection: never followed (the
                // credentials would go with it); it is a final status a source can explain.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| e.to_string())
        })
        .clone()
}

impl HttpClient {
    pub fn new(
        source: &'static str,
        account: &str,
        settings: &HttpSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let client = shared_client();
        let period = Duration::from_secs_f64(1.0 / settings.requests_per_second);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        HttpClient {
            client,
            source,
            account: account.to_string(),
            settings: settings.clone(),
            limiter: RateLimiter::direct(quota),
            pause_until: Mutex::new(None),
            metrics,
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// Requests sent so far (every attempt counts) and retries.
    pub fn counts(&self) -> crate::model::RequestCounts {
        crate::model::RequestCounts {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            fallbacks: 0,
        }
    }

    /// Sends the request `build` makes (again for each attempt) and returns a 2xx response.
    /// `endpoint` is a fixed label (a path without ids) for metrics, logs and errors.
    pub async fn send(
        &self,
        endpoint: &'static str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response, HttpError> {
        self.send_with(endpoint, |_| false, build).await
    }

    /// [`HttpClient::send`], with the statuses `is_final` picks answered at once instead of
    /// retried (a source that asks the vendor what a 503 means first, or that must not repeat a
    /// POST the server may have carried out).
    pub async fn send_with(
        &self,
        endpoint: &'static str,
        is_final: fn(u16) -> bool,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response, HttpError> {
        let client = match &self.client {
            Ok(c) => c,
            Err(detail) => {
                return Err(HttpError::Client {
                    detail: detail.clone(),
                });
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(BASE_DELAY)
            .with_max_delay(self.settings.max_retry_wait.max(BASE_DELAY))
            .with_max_times(self.settings.max_retries);
        let attempts = AtomicU64::new(0);
        let result = (|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.attempt(endpoint, client, &build).await
        })
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e: &AttemptError| e.retry_reason.is_some() && !e.status.is_some_and(is_final))
        .adjust(|e: &AttemptError, backoff_delay| {
            // None means the backoff is used up: stop.
            let delay = backoff_delay?;
            let wait = match e.retry_after {
                Some(ra) => ra.min(self.settings.max_retry_wait),
                // Full jitter: uniform in [0, exponential delay].
                None => delay.mul_f64(rand::rng().random_range(0.0..=1.0)),
            };
            if e.status == Some(429) {
                self.pause_account(wait);
            }
            Some(wait)
        })
        .notify(|e: &AttemptError, wait| {
            self.retries.fetch_add(1, Ordering::Relaxed);
            HttpRetrying {
                source: self.source,
                account: &self.account,
                endpoint,
                reason: e.retry_reason.unwrap_or("unknown"),
                wait,
                detail: &e.detail,
            }
            .emit(&self.metrics);
        })
        .await;
        result.map_err(|e| match (e.retry_reason, e.status) {
            (_, Some(s)) if is_final(s) => HttpError::Status {
                endpoint,
                host: e.host,
                status: s,
                hint: status_hint(s),
                body: e.body,
            },
            _ if e.too_large => HttpError::TooLarge {
                endpoint,
                host: e.host,
                limit_mib: self.settings.max_response_mb,
            },
            (None, Some(status)) => HttpError::Status {
                endpoint,
                host: e.host,
                status,
                hint: status_hint(status),
                body: e.body,
            },
            _ => HttpError::RetriesExhausted {
                endpoint,
                host: e.host,
                attempts: attempts.load(Ordering::Relaxed) as usize,
                last: LastAttempt {
                    status: e.status,
                    detail: e.detail,
                },
            },
        })
    }

    fn pause_account(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut p = self.pause_until.lock().expect("pause lock");
        if p.is_none_or(|cur| cur < until) {
            *p = Some(until);
        }
    }

    async fn attempt(
        &self,
        endpoint: &'static str,
        client: &reqwest::Client,
        build: &impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response, AttemptError> {
        loop {
            let until = *self.pause_until.lock().expect("pause lock");
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => break,
            }
        }
        self.limiter.until_ready().await;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let request = build(client).timeout(self.settings.timeout).build();
        let host = match &request {
            Ok(r) => origin(r.url()),
            Err(e) => e.url().map(origin).unwrap_or_else(|| "?".into()),
        };
        let outcome = async {
            let mut resp = client.execute(request?).await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            // Read as it arrives, and stop at the cap: a runaway body must not take the memory.
            let mut body = bytes::BytesMut::new();
            while let Some(chunk) = resp.chunk().await? {
                if body.len() + chunk.len() > self.settings.max_response_mb << 20 {
                    return Ok((status, headers, None));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, headers, Some(body.freeze())))
        }
        .await;
        let elapsed = started.elapsed();
        let report = |status| {
            HttpResponded {
                source: self.source,
                account: &self.account,
                endpoint,
                status,
                elapsed,
            }
            .emit(&self.metrics)
        };
        match outcome {
            Err(e) => {
                report(None);
                let reason = if e.is_timeout() { "timeout" } else { "connect" };
                Err(AttemptError {
                    host,
                    too_large: false,
                    retry_reason: Some(reason),
                    retry_after: None,
                    status: None,
                    body: String::new(),
                    detail: transport_detail(&e),
                })
            }
            Ok((status, _, None)) => {
                report(Some(status));
                Err(AttemptError {
                    host,
                    too_large: true,
                    retry_reason: None,
                    retry_after: None,
                    status: None,
                    body: String::new(),
                    detail: "response body over max_response_mb".into(),
                })
            }
            Ok((status, headers, Some(body))) => {
                report(Some(status));
                if (200..300).contains(&status) {
                    return Ok(Response {
                        status,
                        headers,
                        body,
                    });
                }
                let snippet = snippet(&body);
                let retry_reason = match status {
                    429 => Some("rate_limited"),
                    500..=599 => Some("server_error"),
                    _ => None,
                };
                let retry_after = if status == 429 || status == 503 {
                    parse_retry_after(&headers)
                } else {
                    None
                };
                Err(AttemptError {
                    host,
                    too_large: false,
                    retry_reason,
                    retry_after,
                    status: Some(status),
                    detail: format!("HTTP {status}"),
                    body: snippet,
                })
            }
        }
    }
}

/// A URL's scheme, host and port: what an error may say of where a request went (the path may
/// name a tenant, the query may carry a key, the user name and password are credentials).
pub fn origin(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

fn status_hint(status: u16) -> &'static str {
    match status {
        400 => " (bad request: check the account's settings)",
        401 => " (credentials rejected: renew or fix them in the config)",
        403 => " (invalid key or no access: check the account's key in the config)",
        404 => " (not found: check base_url)",
        300..=399 => {
            " (a redirect, not followed: a login page? check the credentials and base_url)"
        }
        _ => "",
    }
}

/// What went wrong on the wire, in a few words (no URL).
pub fn transport_words(e: &reqwest::Error) -> String {
    transport_detail(e)
}

/// What went wrong on the wire, without the URL (which may carry a key).
fn transport_detail(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the response body was cut off"
    } else {
        "request failed"
    };
    let mut detail = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !text.contains("://") {
            detail.push_str(": ");
            detail.push_str(&text);
        }
        source = s.source();
    }
    detail
}

/// The start of an error body, single-line, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut s: String = flat.chars().take(300).collect();
    if flat.chars().count() > 300 {
        s.push('…');
    }
    if s.is_empty() {
        "(empty body)".into()
    } else {
        s
    }
}

/// `Retry-After` as delta-seconds or an HTTP-date.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// `path` under an account's `base_url` (which may carry a path of its own, such as a tenant).
pub fn endpoint_url(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let base = base.as_str().trim_end_matches('/');
    reqwest::Url::parse(&format!("{base}{path}")).expect("base_url was validated")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(30);
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let d = parse_retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(27) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h), None);
    }
}
