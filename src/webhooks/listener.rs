//! The webhook listener: `POST /webhooks/{source}/{account}`, answered as operations.md says.
//! Nothing of a request is logged or kept beyond its outcome until it is authenticated; an
//! authenticated event is kept only as the session id, event type and key it names.
//!
//! It faces the internet, so what a client can hold is bounded (operations.md, "Webhooks"):
//! - at most [`connection_cap`] connections are open at once (well below the process's file
//!   descriptor limit, which [`raise_fd_limit`] raises to its hard limit at start); one more is
//!   closed as soon as it is accepted;
//! - headers must arrive within [`HEADER_DEADLINE`] (this also closes an idle keep-alive
//!   connection), a body within [`BODY_DEADLINE`], and a connection lives [`CONNECTION_LIFETIME`]
//!   at most;
//! - bodies being read share a memory budget ([`BODY_BUDGET`]) taken as their bytes arrive, so a
//!   client trickling a body holds a few bytes of it and no slot: only an authenticated event
//!   takes one of the [`IN_FLIGHT`] slots that record events in the warehouse.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{Endpoints, inbox};
use crate::engine::Verdict;
use crate::events::WebhookAnswered;
use crate::telemetry::Metrics;
use crate::warehouse::Warehouse;

/// The largest body read.
pub const MAX_BODY: usize = 1 << 20;

/// Authenticated events recorded at once; more wait for [`WAIT_TURN`].
pub const IN_FLIGHT: usize = 64;

/// How long an authenticated event may wait for its turn, and for the warehouse.
const WAIT_TURN: Duration = Duration::from_secs(10);
const RECORD: Duration = Duration::from_secs(5);

/// A request's headers must have arrived this long after the connection was opened or its
/// previous response sent (an idle keep-alive connection is closed then).
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);
/// A request's body must have arrived this long after its headers.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// A connection is closed (after its current request) this long after it was opened.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Open webhook connections at most, whatever the file-descriptor limit allows.
pub const MAX_CONNECTIONS: usize = 4096;
/// Bytes of bodies held while they are read (before authentication), all requests together.
pub const BODY_BUDGET: usize = 64 << 20;

/// The cap on open webhook connections for a process allowed `fd_limit` open files: a quarter of
/// them (the warehouse pool, the vendors' connections, the metrics listener and the logs keep
/// the rest), at most [`MAX_CONNECTIONS`], at least 16.
pub fn connection_cap(fd_limit: u64) -> usize {
    usize::try_from(fd_limit / 4)
        .unwrap_or(MAX_CONNECTIONS)
        .clamp(16, MAX_CONNECTIONS)
}

/// Raises the soft limit of open files to the hard limit (many systems start processes at 1,024);
/// the soft limit in force afterwards.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
            tracing::warn!(error = %e, soft, "could not raise the open-file limit; the webhook listener's connection cap follows the current one");
            soft
        }
    }
}

#[derive(Clone)]
struct Listener {
    endpoints: Endpoints,
    warehouse: Warehouse,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
    /// [`BODY_BUDGET`] in KiB permits.
    budget: Arc<Semaphore>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for webhooks: {source} (change webhooks.listen in the config)")]
pub struct ListenError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Binds `addr` and serves until `shutdown`; returns the bound address (port 0 picks one).
pub async fn spawn(
    addr: SocketAddr,
    endpoints: Endpoints,
    warehouse: Warehouse,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ListenError> {
    // A backlog as deep as the connection cap: a burst of vendors' retries is queued by the
    // kernel rather than dropped (the system's somaxconn may cap it lower).
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .and_then(|s| {
        s.set_reuseaddr(true)?;
        s.bind(addr)?;
        Ok(s)
    })
    .map_err(|source| ListenError { addr, source })?;
    let listener = socket
        .listen(u32::try_from(MAX_CONNECTIONS).unwrap_or(1024))
        .map_err(|source| ListenError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ListenError { addr, source })?;
    let cap = connection_cap(raise_fd_limit());
    let app = Router::new()
        .route("/webhooks/{source}/{account}", post(receive))
        .with_state(Listener {
            endpoints,
            warehouse,
            metrics: metrics.clone(),
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            budget: Arc::new(Semaphore::new(BODY_BUDGET >> 10)),
        });
    let handle = tokio::spawn(accept_loop(listener, app, cap, metrics, shutdown));
    Ok((bound, handle))
}

/// Accepts connections until `shutdown`, at most `cap` open at once, each served with the
/// deadlines above; then waits for the open ones to finish their requests.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    cap: usize,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let open = Arc::new(Semaphore::new(cap));
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors (or a connection reset while queued): do not spin.
                tracing::warn!(error = %e, "webhook listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            crate::events::WebhookConnectionRefused { cap }.emit(&metrics);
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        let open_now = cap - open.available_permits();
        crate::events::WebhookConnections { open: open_now }.emit(&metrics);
        let metrics = metrics.clone();
        let open_count = open.clone();
        tasks.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .max_buf_size(64 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(BODY_DEADLINE + RECORD, conn).await;
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(BODY_DEADLINE + RECORD, conn).await;
                }
            }
            drop(permit);
            crate::events::WebhookConnections {
                open: cap - open_count.available_permits(),
            }
            .emit(&metrics);
        });
    }
    tasks.close();
    tasks.wait().await;
}

fn answer(status: StatusCode, outcome: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"outcome\":\"{outcome}\"}}\n"),
    )
        .into_response()
}

/// Reads at most `limit` bytes of `body`, taking KiB permits of `budget` as the bytes arrive
/// (held until the request is answered); `None` when it is longer.
async fn read_capped(
    body: Body,
    limit: usize,
    budget: &Arc<Semaphore>,
) -> Result<Option<(Vec<u8>, Option<OwnedSemaphorePermit>)>, axum::Error> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    let mut held_kib = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
        let need = buf.len().div_ceil(1024) - held_kib;
        if need > 0 {
            let more = budget
                .clone()
                .acquire_many_owned(u32::try_from(need).unwrap_or(u32::MAX))
                .await
                .map_err(axum::Error::new)?;
            held_kib += need;
            match held.as_mut() {
                Some(h) => h.merge(more),
                None => held = Some(more),
            }
        }
    }
    Ok(Some((buf, held)))
}

async fn receive(
    State(l): State<Listener>,
    Path((source, account)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received_at = Utc::now();
    let Some(endpoint) = l.endpoints.get(&source, &account) else {
        // Not a configured account (or one without webhook settings): no metric, whose labels
        // would then be whatever a caller typed.
        return answer(StatusCode::NOT_FOUND, "unknown_account");
    };
    let Some(hook) = endpoint.source.webhook() else {
        return answer(StatusCode::NOT_FOUND, "unknown_account");
    };
    let key = endpoint.source.key();
    let done = |status: StatusCode,
                outcome: &'static str,
                event_type: Option<&str>,
                detail: Option<&str>| {
        WebhookAnswered {
            source: key.source,
            account: &key.account,
            outcome,
            status: status.as_u16(),
            event_type,
            detail,
        }
        .emit(&l.metrics);
        answer(status, outcome)
    };

    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        done(
            StatusCode::PAYLOAD_TOO_LARGE,
            "malformed",
            None,
            Some("body over 1 MiB"),
        )
    };
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let (bytes, _budget) =
        match tokio::time::timeout(BODY_DEADLINE, read_capped(body, MAX_BODY, &l.budget)).await {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => return too_large(),
            Ok(Err(_)) => {
                return done(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    None,
                    Some("the body could not be read"),
                );
            }
            Err(_) => {
                return done(
                    StatusCode::REQUEST_TIMEOUT,
                    "malformed",
                    None,
                    Some(&format!(
                        "the body took longer than {} s to arrive",
                        BODY_DEADLINE.as_secs()
                    )),
                );
            }
        };
    if !hook.authenticate(&headers, &bytes) {
        return done(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
            Some("missing or wrong signature or credentials"),
        );
    }
    match hook.parse(&bytes) {
        Verdict::Malformed(why) => done(StatusCode::BAD_REQUEST, "malformed", None, Some(&why)),
        Verdict::Ignored { event_type } => done(StatusCode::OK, "ignored", Some(&event_type), None),
        Verdict::Record {
            id,
            event_type,
            key: event_key,
        } => {
            // Only an authenticated event takes one of the slots that record events.
            let Ok(Ok(_turn)) = tokio::time::timeout(WAIT_TURN, l.in_flight.acquire()).await else {
                return done(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    Some(&event_type),
                    Some("too many events in flight"),
                );
            };
            let recorded = tokio::time::timeout(RECORD, async {
                let c = l.warehouse.conn().await.map_err(|e| e.to_string())?;
                inbox::record(
                    &**c,
                    key.source,
                    &key.account,
                    id,
                    &event_type,
                    &event_key,
                    received_at,
                )
                .await
                .map_err(|e| crate::warehouse::pg_detail(&e))
            })
            .await;
            match recorded {
                Ok(Ok(true)) => {
                    endpoint.wake.notify_one();
                    done(StatusCode::OK, "accepted", Some(&event_type), None)
                }
                Ok(Ok(false)) => done(StatusCode::OK, "duplicate", Some(&event_type), None),
                Ok(Err(e)) => done(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    Some(&event_type),
                    Some(&e),
                ),
                Err(_) => done(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    Some(&event_type),
                    Some("the warehouse did not answer within 5 s"),
                ),
            }
        }
    }
}
