//! The webhook listener: `POST /webhooks/{source}/{account}`, answered as operations.md says.
//! Nothing of a request is logged or kept beyond its outcome until it is authenticated; an
//! authenticated event is kept only as the session id, event type and key it names.

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
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Endpoints, inbox};
use crate::engine::Verdict;
use crate::events::WebhookAnswered;
use crate::telemetry::Metrics;
use crate::warehouse::Warehouse;

/// The largest body read.
pub const MAX_BODY: usize = 1 << 20;

/// Requests read at once; more wait (bounded memory under a flood: at most this many bodies).
const IN_FLIGHT: usize = 64;

/// How long a request may wait for its turn, take to send its body, or wait for the warehouse.
const WAIT_TURN: Duration = Duration::from_secs(10);
const READ_BODY: Duration = Duration::from_secs(30);
const RECORD: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Listener {
    endpoints: Endpoints,
    warehouse: Warehouse,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
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
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ListenError { addr, source })?;
    let app = Router::new()
        .route("/webhooks/{source}/{account}", post(receive))
        .with_state(Listener {
            endpoints,
            warehouse,
            metrics,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        });
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
    Ok((bound, handle))
}

fn answer(status: StatusCode, outcome: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"outcome\":\"{outcome}\"}}\n"),
    )
        .into_response()
}

/// Reads at most `limit` bytes of `body`; `None` when it is longer.
async fn read_capped(body: Body, limit: usize) -> Result<Option<Vec<u8>>, axum::Error> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf))
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

    let Ok(Ok(_turn)) = tokio::time::timeout(WAIT_TURN, l.in_flight.acquire()).await else {
        return done(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            None,
            Some("too many requests in flight"),
        );
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
    let bytes = match tokio::time::timeout(READ_BODY, read_capped(body, MAX_BODY)).await {
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
                Some("the body took too long to arrive"),
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
