//! The validated settings every part of sessionsync takes (the config file's reader,
//! `config`, produces them; the engine, the HTTP client and the warehouse only read them).

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::secret::Secret;
pub use crate::warehouse::settings::{SSL_MODES, WarehouseSettings, validate_identifier};

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
}

/// `[webhooks]`: where vendor events are received (plain HTTP, behind a TLS proxy).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub listen: SocketAddr,
}

/// How the daemon, `sync` and `backfill` share the machine between streams.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Streams that run at once; the others wait their turn, served in the order they became
    /// due. A running stream spends nearly all its time waiting on its vendor and holds a
    /// warehouse connection only to read its state and to commit a window, so this is sized
    /// for waiting, independent of `warehouse.pool_size`.
    pub max_concurrent_streams: usize,
}

/// Streams that run at once unless configured: every stream of a few hundred rate-limited
/// accounts (a waiting stream costs a task and its window's memory, no connection).
pub const DEFAULT_CONCURRENT_STREAMS: usize = 256;

/// The most streams that may be configured to run at once.
pub const MAX_CONCURRENT_STREAMS: usize = 4096;

/// Warehouse connections unless configured: one holds the running streams' locks, the
/// others serve commits (a few milliseconds each), state reads and `/readyz`.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// What every stream of every source takes.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub account: String,
    pub enabled: bool,
    pub schedule: Schedule,
    pub start: DateTime<Utc>,
    pub lookback: Duration,
    pub window: Duration,
    /// The entry's `privacy = { … }`: classes whose policy differs from `[privacy]` for it.
    pub privacy: crate::privacy::Overrides,
    /// `expect_data_within`: a new record is expected at least this often (the alert
    /// `SessionsyncNoNewData` fires when the newest stored one is older); `None`: no expectation.
    pub expect_data_within: Option<Duration>,
}

/// What every account's HTTP client takes.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub timeout: Duration,
    pub max_retries: usize,
    pub max_retry_wait: Duration,
    pub requests_per_second: f64,
    /// The largest response body read, in MiB (a window answering more is split).
    pub max_response_mb: usize,
}

/// A standard 5-field crontab expression (an optional leading seconds field is accepted), in UTC.
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    cron: croner::Cron,
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "`{expr}` has {fields} fields; use standard 5-field crontab syntax such as \"*/5 * * * *\" (minute hour day-of-month month day-of-week)"
            ));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| format!("`{expr}` is not a valid cron expression: {e}"))?;
        Ok(Schedule {
            expr: expr.to_string(),
            cron,
        })
    }

    /// The first scheduled instant strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.expr
    }
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schedule({:?})", self.expr)
    }
}
