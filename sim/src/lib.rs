//! Simulators of the vendor APIs, served over real HTTP on 127.0.0.1. They power the tests,
//! the benchmark and `sessionsync demo`, and follow `sources.md`, including its traps.
//!
//! Each simulator has a [`Faults`] queue (the next requests get a 429, a 5xx, a delay, a cut-off
//! body, a vendor error ...) and a [`RequestLog`] with the time of every request.

pub mod mluvii;
pub mod superoffice;
pub mod superoffice_online;
pub mod takecontrol;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

/// How a 429 says when to come back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryAfter {
    Seconds(u64),
    /// An HTTP-date this far in the future.
    HttpDate(Duration),
}

/// One injected misbehaviour, applied to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    RateLimited(Option<RetryAfter>),
    /// A 5xx (or any status) with a short body.
    Status(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// A 200 whose body stops halfway.
    Truncated,
    /// The vendor's own error format (`<error_msg>`, `"result":"ERROR"`) with this message.
    VendorError(String),
    /// A proxy's HTML page with status 200.
    Html,
    /// A 200 with exactly these bytes (hostile bodies: bombs, huge, invalid UTF-8 ...).
    Raw(Vec<u8>),
}

/// Faults waiting for the next requests, in order; and, once they are spent, faults at random
/// ([`Faults::set_random`]: a vendor that answers a share of its requests with 500s and 429s).
#[derive(Default)]
pub struct Faults(Mutex<VecDeque<Fault>>, Mutex<Option<RandomFaults>>);

struct RandomFaults {
    percent: u32,
    faults: Vec<Fault>,
    rng: rand_chacha::ChaCha8Rng,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let random = self.1.lock().expect("faults").as_ref().map(|r| r.percent);
        f.debug_struct("Faults")
            .field("queued", &self.pending())
            .field("random_percent", &random)
            .finish()
    }
}

impl Faults {
    /// The next `times` requests get `fault` (after any queued before).
    pub fn push(&self, fault: Fault, times: usize) {
        let mut q = self.0.lock().expect("faults");
        q.extend(std::iter::repeat_n(fault, times));
    }

    /// From now on, each request that finds no queued fault gets one of `faults` (chosen at
    /// random) with probability `percent` in 100, from a seeded generator; `percent` 0 stops it.
    pub fn set_random(&self, percent: u32, faults: Vec<Fault>, seed: u64) {
        use rand::SeedableRng;
        *self.1.lock().expect("faults") =
            (percent > 0 && !faults.is_empty()).then(|| RandomFaults {
                percent: percent.min(100),
                faults,
                rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            });
    }

    pub fn clear(&self) {
        self.0.lock().expect("faults").clear();
        *self.1.lock().expect("faults") = None;
    }

    pub fn pending(&self) -> usize {
        self.0.lock().expect("faults").len()
    }

    fn next(&self) -> Option<Fault> {
        if let Some(f) = self.0.lock().expect("faults").pop_front() {
            return Some(f);
        }
        use rand::RngExt;
        let mut random = self.1.lock().expect("faults");
        let r = random.as_mut()?;
        if r.rng.random_range(0..100) >= r.percent {
            return None;
        }
        let i = r.rng.random_range(0..r.faults.len());
        Some(r.faults[i].clone())
    }
}

/// UTC days whose listing fails: a list request whose date range reaches one of them is
/// answered 500 (an index that cannot answer for those days), every other request as usual.
#[derive(Debug, Default)]
pub struct BrokenDays(std::sync::RwLock<std::collections::BTreeSet<chrono::NaiveDate>>);

impl BrokenDays {
    /// Listings that reach `day` fail from now on.
    pub fn add(&self, day: chrono::NaiveDate) {
        self.0.write().expect("days").insert(day);
    }

    pub fn clear(&self) {
        self.0.write().expect("days").clear();
    }

    /// Whether the range `[from, to]` (open where `None`) covers more than a minute of a broken
    /// day (a client's second of margin on each side reaches into no neighbour).
    pub fn reached(
        &self,
        from: Option<chrono::DateTime<chrono::Utc>>,
        to: Option<chrono::DateTime<chrono::Utc>>,
    ) -> bool {
        self.0.read().expect("days").iter().any(|d| {
            let start = d.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
            let end = start + chrono::TimeDelta::days(1);
            let (lo, hi) = (
                from.map_or(start, |f| f.max(start)),
                to.map_or(end, |t| t.min(end)),
            );
            hi - lo > chrono::TimeDelta::minutes(1)
        })
    }

    /// The 500 a broken day's listing is answered with.
    fn answer() -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "simulated: the index cannot list these days",
        )
            .into_response()
    }
}

#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub at: Instant,
    pub path: String,
    pub status: u16,
}

/// Every request a simulator answered, and how many were in flight at once.
#[derive(Debug, Default)]
pub struct RequestLog(
    Mutex<Vec<LoggedRequest>>,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicUsize,
);

/// Counts a request as in flight until dropped.
pub struct InFlight<'a>(&'a RequestLog);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.1.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl RequestLog {
    /// Marks a request in flight (until the guard drops).
    pub fn enter(&self) -> InFlight<'_> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.1.fetch_add(1, SeqCst) + 1;
        self.2.fetch_max(now, SeqCst);
        InFlight(self)
    }

    /// The most requests that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.2.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn push(&self, path: &str, status: u16) {
        self.0.lock().expect("log").push(LoggedRequest {
            at: Instant::now(),
            path: path.to_string(),
            status,
        });
    }

    pub fn entries(&self) -> Vec<LoggedRequest> {
        self.0.lock().expect("log").clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("log").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        self.0.lock().expect("log").clear();
    }
}

/// Applies the next fault, if any: `Err(response)` answers instead of the handler; a delay
/// sleeps and lets the handler answer. `vendor_error` renders the vendor's error format;
/// `truncate` marks that the handler's body must be cut.
async fn apply_fault(
    faults: &Faults,
    vendor_error: impl Fn(&str) -> Response,
) -> Result<bool, Response> {
    match faults.next() {
        None => Ok(false),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            Ok(false)
        }
        Some(Fault::Truncated) => Ok(true),
        Some(Fault::RateLimited(ra)) => {
            let mut resp = (StatusCode::TOO_MANY_REQUESTS, "Too many requests").into_response();
            let value = match ra {
                Some(RetryAfter::Seconds(s)) => Some(s.to_string()),
                Some(RetryAfter::HttpDate(d)) => Some(httpdate::fmt_http_date(SystemTime::now() + d)),
                None => None,
            };
            if let Some(v) = value {
                resp.headers_mut().insert("retry-after", v.parse().expect("ascii"));
            }
            Err(resp)
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err((status, format!("simulated HTTP {code}")).into_response())
        }
        Some(Fault::VendorError(msg)) => Err(vendor_error(&msg)),
        Some(Fault::Raw(bytes)) => Err((StatusCode::OK, bytes).into_response()),
        Some(Fault::Html) => Err((
            StatusCode::OK,
            [("content-type", "text/html")],
            "<!DOCTYPE html><html><head><title>Sign in</title></head><body>Proxy login required</body></html>",
        )
            .into_response()),
    }
}

/// Cuts a body in half (on a char boundary), as a dropped connection behind a proxy would.
fn truncate(body: String) -> String {
    let mut cut = body.len() / 2;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    body[..cut].to_string()
}

/// A running simulator; stops when dropped.
pub struct SimServer {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
}

impl SimServer {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn serve(router: Router) -> std::io::Result<SimServer> {
    serve_at(router, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Serves `router` on `addr` (port 0: any free one).
pub async fn serve_at(router: Router, addr: SocketAddr) -> std::io::Result<SimServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
    });
    Ok(SimServer { addr, shutdown })
}

/// One webhook delivery a simulator made (every try of it).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_type: String,
    pub id: i64,
    /// When the change was made (the event queued).
    pub queued: Instant,
    /// The status of each try (`None`: no answer).
    pub tries: Vec<Option<u16>>,
    /// Whether a try answered 200.
    pub delivered: bool,
}

/// An event waiting to be sent.
struct Outgoing {
    url: reqwest::Url,
    headers: Vec<(&'static str, String)>,
    body: String,
    event_type: String,
    id: i64,
    queued: Instant,
    /// Pauses before each retry (the vendor's schedule).
    retries: &'static [Duration],
}

/// A vendor's webhook sender: events go out one at a time, in the order the changes were made
/// (both vendors deliver one entity's events in order), each retried on the vendor's schedule
/// and then dropped. Every delivery is logged.
pub struct Outbox {
    queue: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    log: std::sync::Arc<Mutex<Vec<Delivery>>>,
    failures: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Outbox {
    fn new() -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outgoing>();
        let log = std::sync::Arc::new(Mutex::new(Vec::<Delivery>::new()));
        let sink = log.clone();
        let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let failed = failures.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default();
            while let Some(out) = rx.recv().await {
                let mut tries = Vec::new();
                let mut delivered = false;
                for pause in std::iter::once(&Duration::ZERO).chain(out.retries) {
                    tokio::time::sleep(*pause).await;
                    let mut rb = client
                        .post(out.url.clone())
                        .header("content-type", "application/json")
                        .body(out.body.clone());
                    for (k, v) in &out.headers {
                        rb = rb.header(*k, v);
                    }
                    let status = rb.send().await.ok().map(|r| r.status().as_u16());
                    tries.push(status);
                    if status == Some(200) {
                        delivered = true;
                        break;
                    }
                }
                if delivered {
                    failed.store(0, std::sync::atomic::Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                sink.lock().expect("deliveries").push(Delivery {
                    event_type: out.event_type,
                    id: out.id,
                    queued: out.queued,
                    tries,
                    delivered,
                });
            }
        });
        Outbox {
            queue: tx,
            log,
            failures,
        }
    }

    /// Deliveries that failed in a row (every try), since the last one that succeeded.
    fn failures_in_a_row(&self) -> usize {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn reset_failures(&self) {
        self.failures.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    fn send(&self, out: Outgoing) {
        let _ = self.queue.send(out);
    }

    /// Every delivery finished so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log.lock().expect("deliveries").clone()
    }
}

/// Sends one event now and returns the status (the registration test of a vendor).
async fn post_once(
    url: &reqwest::Url,
    headers: &[(&'static str, String)],
    body: &str,
) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    let mut rb = client
        .post(url.clone())
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        rb = rb.header(*k, v);
    }
    rb.send().await.ok().map(|r| r.status().as_u16())
}

/// The strings of a JSON array field (a registration's event types), empty when absent.
fn string_list(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
