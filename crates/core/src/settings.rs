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

/// `[audit]`: the daemon's daily completeness audit (sources.md section 5).
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// When the daemon audits (UTC), each account shifted by its own part of `spread`.
    pub schedule: Schedule,
    /// Closed UTC days compared each time.
    pub days: u32,
    /// The daemon's audits of the accounts are spread over this long after each instant, each
    /// account at its own fixed offset, so that a hundred accounts do not all list at once.
    pub spread: Duration,
}

/// The daily audit unless configured.
pub const DEFAULT_AUDIT_SCHEDULE: &str = "17 3 * * *";
pub const DEFAULT_AUDIT_DAYS: u32 = 7;
pub const DEFAULT_AUDIT_SPREAD: &str = "1h";

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            schedule: Schedule::parse(DEFAULT_AUDIT_SCHEDULE).expect("a constant schedule"),
            days: DEFAULT_AUDIT_DAYS,
            spread: Duration::from_secs(3600),
        }
    }
}

impl AuditSettings {
    /// The offset of `account`'s audit after each instant: the same on every replica (a hash of
    /// its name), within `spread`.
    pub fn offset(&self, source: &str, account: &str) -> Duration {
        let spread = self.spread.as_secs();
        if spread == 0 {
            return Duration::ZERO;
        }
        // FNV-1a: stable across builds and processes (unlike the standard hasher).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in source.bytes().chain([b'/']).chain(account.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Duration::from_secs(h % spread)
    }
}

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
    /// Whether the daemon audits the account daily (`audit = false` opts it out).
    pub audit: bool,
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

    /// The time between its next two instants after `at` (5 minutes if it has none).
    pub fn period(&self, at: DateTime<Utc>) -> chrono::TimeDelta {
        self.next_after(at)
            .and_then(|a| Some(self.next_after(a)? - a))
            .unwrap_or(chrono::TimeDelta::minutes(5))
    }
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schedule({:?})", self.expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accounts_audit_offset_is_stable_within_the_spread_and_differs_between_accounts() {
        let a = AuditSettings::default();
        let one = a.offset("mluvii", "main");
        assert_eq!(one, a.offset("mluvii", "main"), "the same on every replica");
        assert!(one < a.spread);
        let offsets: std::collections::BTreeSet<Duration> = (0..100)
            .map(|i| a.offset("takecontrol", &format!("acct-{i}")))
            .collect();
        assert!(
            offsets.len() > 90,
            "a hundred accounts are spread: {}",
            offsets.len()
        );
        let none = AuditSettings {
            spread: Duration::ZERO,
            ..AuditSettings::default()
        };
        assert_eq!(none.offset("mluvii", "main"), Duration::ZERO);
    }
}
