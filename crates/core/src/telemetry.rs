//! Metrics (the names of `operations.md`) and log set-up.
//!
//! Code does not touch these families directly: it emits an event from [`crate::events`], which
//! writes the log line and moves the metric together.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub source: String,
    pub account: String,
    pub stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub source: String,
    pub account: String,
    pub stream: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub source: String,
    pub account: String,
    pub endpoint: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub source: String,
    pub account: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub source: String,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub source: String,
    pub account: String,
    pub stream: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceStreamLabels {
    pub source: String,
    pub stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub source: String,
    pub account: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceAccountLabels {
    pub source: String,
    pub account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// Builds histograms with one fixed bucket layout (seconds, 5 ms up to ~3 min).
#[derive(Clone)]
pub struct SecondsBuckets;

impl MetricConstructor<Histogram> for SecondsBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.005, 2.0, 16))
    }
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub rows_written: Family<StreamLabels, Counter>,
    pub rows_unchanged: Family<StreamLabels, Counter>,
    pub records_rejected: Family<RejectLabels, Counter>,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_retries: Family<RetryLabels, Counter>,
    pub http_duration: Family<EndpointLabels, Histogram, SecondsBuckets>,
    pub sync_runs: Family<RunLabels, Counter>,
    pub sync_duration: Family<SourceStreamLabels, Histogram, SecondsBuckets>,
    pub watermark: Family<StreamLabels, FloatGauge>,
    pub last_success: Family<StreamLabels, FloatGauge>,
    /// Streams due but waiting for one of `max_concurrent_streams` slots.
    pub streams_waiting: Gauge,
    /// Streams running now.
    pub streams_running: Gauge,
    /// Cron instants that passed while the stream waited for a slot or ran (not made up for).
    pub missed_instants: Family<StreamLabels, Counter>,
    /// How late the stream's latest run started after its instant (waiting for a slot).
    pub start_delay: Family<StreamLabels, FloatGauge>,
    /// Failed runs in a row (0 after a run that succeeded or made progress).
    pub consecutive_failures: Family<StreamLabels, Gauge>,
    /// Until when a failing stream waits before its next run (Unix seconds; 0 when it does not).
    pub backoff_until: Family<StreamLabels, FloatGauge>,
    /// Webhook requests for configured accounts, by outcome.
    pub webhook_events: Family<WebhookLabels, Counter>,
    /// From a webhook event's arrival to its session committed.
    pub webhook_lag: Family<SourceLabels, Histogram, SecondsBuckets>,
    /// Sessions erased (by `erase`, a deletion at the source or anonymisation), by source.
    pub erased_sessions: Family<SourceLabels, Counter>,
    pub fallback_reads: Family<SourceAccountLabels, Counter>,
    pub webhook_connections: Gauge,
    pub webhook_connections_refused: Counter,
    /// Rows removed by the storage limits, by table.
    pub retention_deleted_rows: Family<TableLabels, Counter>,
    /// The newest session time each stream has stored (Unix seconds).
    pub newest_record: Family<StreamLabels, FloatGauge>,
    /// A stream's `expect_data_within` (seconds), where configured: the alert compares the
    /// newest record's age with it.
    pub expect_data_within: Family<StreamLabels, FloatGauge>,
    /// Sessions a vendor lists that the warehouse lacked (stored by an audit), by account.
    pub audit_missing: Family<SourceAccountLabels, Counter>,
    /// Sessions an audit flagged deleted at the source, by account.
    pub audit_gone: Family<SourceAccountLabels, Counter>,
    /// When the account's last audit whose every day's listing completed finished.
    pub audit_last_complete: Family<SourceAccountLabels, FloatGauge>,
    /// Values stored as NULL in rows that landed (a vendor's "no date", a negative duration),
    /// by reason: not an error, and never in `rejected_records`.
    pub values_nulled: Family<RejectLabels, Counter>,
    /// 1 while the vendor reports the account's tenant not running, by state; 0 once it runs.
    pub source_unavailable: Family<UnavailableLabels, Gauge>,
    /// The state each account was last reported down in (to set its gauge back to 0).
    unavailable_states: std::sync::Mutex<std::collections::HashMap<(String, String), String>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnavailableLabels {
    pub source: String,
    pub account: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// `Some(state)`: the account's tenant is reported down in `state` (its gauge is 1, any
    /// other state's 0); `None`: a run reached it (every state's gauge 0).
    pub fn set_unavailable(&self, source: &str, account: &str, state: Option<&str>) {
        let mut states = self.unavailable_states.lock().expect("states");
        let key = (source.to_string(), account.to_string());
        let labels = |state: &str| UnavailableLabels {
            source: source.into(),
            account: account.into(),
            state: state.into(),
        };
        if let Some(before) = states.get(&key).filter(|b| Some(b.as_str()) != state) {
            self.source_unavailable
                .get_or_create(&labels(before))
                .set(0);
        }
        match state {
            Some(s) => {
                self.source_unavailable.get_or_create(&labels(s)).set(1);
                states.insert(key, s.to_string());
            }
            None => {
                states.remove(&key);
            }
        }
    }

    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sessionsync");
        let m = Metrics {
            rows_written: Family::default(),
            rows_unchanged: Family::default(),
            records_rejected: Family::default(),
            http_requests: Family::default(),
            http_retries: Family::default(),
            http_duration: Family::new_with_constructor(SecondsBuckets),
            sync_runs: Family::default(),
            sync_duration: Family::new_with_constructor(SecondsBuckets),
            watermark: Family::default(),
            last_success: Family::default(),
            streams_waiting: Gauge::default(),
            streams_running: Gauge::default(),
            missed_instants: Family::default(),
            start_delay: Family::default(),
            consecutive_failures: Family::default(),
            backoff_until: Family::default(),
            webhook_events: Family::default(),
            webhook_lag: Family::new_with_constructor(SecondsBuckets),
            erased_sessions: Family::default(),
            fallback_reads: Family::default(),
            webhook_connections: Gauge::default(),
            webhook_connections_refused: Counter::default(),
            retention_deleted_rows: Family::default(),
            source_unavailable: Family::default(),
            audit_missing: Family::default(),
            audit_gone: Family::default(),
            audit_last_complete: Family::default(),
            values_nulled: Family::default(),
            unavailable_states: Default::default(),
            newest_record: Family::default(),
            expect_data_within: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "newest_record_timestamp_seconds",
            "The newest session time the stream has stored (start, request or creation; Unix seconds), or its configured start while it has stored none: silence is visible",
            m.newest_record.clone(),
        );
        registry.register(
            "expect_data_within_seconds",
            "The stream's expect_data_within (seconds), where configured: SessionsyncNoNewData fires when its newest record is older",
            m.expect_data_within.clone(),
        );
        registry.register(
            "source_unavailable",
            "1 while the vendor reports the account's tenant not running (e.g. SuperOffice OfflineMaintenance), by state; 0 once it runs again",
            m.source_unavailable.clone(),
        );
        registry.register(
            "audit_missing",
            "Sessions a vendor lists that the warehouse lacked, stored by a completeness audit (the incremental path had missed them), by account",
            m.audit_missing.clone(),
        );
        registry.register(
            "audit_gone",
            "Sessions a completeness audit found deleted at the source and flagged (source_deleted_at; personal data erased), by account",
            m.audit_gone.clone(),
        );
        registry.register(
            "audit_last_complete_timestamp_seconds",
            "When the account's last completeness audit whose every day's listing completed finished (Unix seconds)",
            m.audit_last_complete.clone(),
        );
        registry.register(
            "values_nulled",
            "Values stored as NULL in rows that landed (a vendor's \"no date\", a negative duration ...), by reason: not an error, nothing set aside",
            m.values_nulled.clone(),
        );
        registry.register(
            "erased_sessions",
            "Sessions whose personal data was erased (erase, deletion at the source, anonymisation), by source",
            m.erased_sessions.clone(),
        );
        registry.register(
            "webhook_connections",
            "Connections open on the webhook listener",
            m.webhook_connections.clone(),
        );
        registry.register(
            "webhook_connections_refused",
            "Connections the webhook listener closed as soon as it accepted them, because as many as it allows were open",
            m.webhook_connections_refused.clone(),
        );
        registry.register(
            "fallback_reads",
            "Records read by id because their listed row lacked what the source needs (one request each; mluvii list rows that are not whole sessions), by account",
            m.fallback_reads.clone(),
        );
        registry.register(
            "retention_deleted_rows",
            "Rows removed by the storage limits (retain_sessions, retain_transcripts), by table",
            m.retention_deleted_rows.clone(),
        );
        registry.register(
            "rows_written",
            "Rows inserted or changed in the warehouse",
            m.rows_written.clone(),
        );
        registry.register(
            "rows_unchanged",
            "Rows re-read whose content had not changed (not rewritten)",
            m.rows_unchanged.clone(),
        );
        registry.register(
            "records_rejected",
            "Records set aside in rejected_records, by reason (exactly the records written there)",
            m.records_rejected.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests to source APIs, by status code or `error`",
            m.http_requests.clone(),
        );
        registry.register(
            "http_retries",
            "HTTP retries, by reason",
            m.http_retries.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Duration of source API requests",
            m.http_duration.clone(),
        );
        registry.register(
            "sync_runs",
            "Finished stream runs, by outcome",
            m.sync_runs.clone(),
        );
        registry.register(
            "sync_duration_seconds",
            "Wall time of stream runs",
            m.sync_duration.clone(),
        );
        registry.register(
            "watermark_timestamp_seconds",
            "The stream's committed watermark (Unix seconds)",
            m.watermark.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When the stream last finished a run that succeeded (Unix seconds)",
            m.last_success.clone(),
        );
        registry.register(
            "streams_waiting",
            "Streams that are due but wait for a free slot (engine.max_concurrent_streams)",
            m.streams_waiting.clone(),
        );
        registry.register(
            "streams_running",
            "Streams running now",
            m.streams_running.clone(),
        );
        registry.register(
            "schedule_missed_instants",
            "Cron instants of the stream that passed while it waited for a slot or was still running (the daemon is not keeping up)",
            m.missed_instants.clone(),
        );
        registry.register(
            "schedule_start_delay_seconds",
            "How late the stream's latest run started after its cron instant (waiting for a slot)",
            m.start_delay.clone(),
        );
        registry.register(
            "stream_consecutive_failures",
            "Failed runs of the stream in a row (reset by a run that succeeds or makes progress)",
            m.consecutive_failures.clone(),
        );
        registry.register(
            "stream_backoff_until_timestamp_seconds",
            "Until when a repeatedly failing stream waits before its next run (Unix seconds; 0 when it is not backing off)",
            m.backoff_until.clone(),
        );
        registry.register(
            "webhook_events",
            "Webhook requests for configured accounts, by outcome (accepted, duplicate, ignored, unauthorized, malformed, unavailable)",
            m.webhook_events.clone(),
        );
        registry.register(
            "webhook_lag_seconds",
            "From a webhook event's arrival to its session committed in the warehouse",
            m.webhook_lag.clone(),
        );
        let build_info: Family<VersionLabels, Gauge> = Family::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register("build_info", "Build information; always 1", build_info);
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The classic Prometheus text format (0.0.4), for scrapers and tools that do not ask for
    /// OpenMetrics (`promtool check metrics`, older Prometheus): counter families are named
    /// with their `_total` suffix, and `# UNIT` / `# EOF` are left out.
    pub fn encode_prometheus_text(&self) -> String {
        to_prometheus_text(&self.encode())
    }
}

/// OpenMetrics text → Prometheus text format 0.0.4.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .filter(|name| !name.ends_with("_total"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Log lines on a terminal while live bars are drawn: written through the bars (which are
/// cleared, the line written, and the bars drawn again below it), so no line breaks a bar.
pub mod terminal {
    use std::io::Write;
    use std::sync::Mutex;

    static BARS: Mutex<Option<indicatif::MultiProgress>> = Mutex::new(None);

    /// Log lines go through `bars` until [`detach`].
    pub fn attach(bars: indicatif::MultiProgress) {
        if let Ok(mut b) = BARS.lock() {
            *b = Some(bars);
        }
    }

    pub fn detach() {
        if let Ok(mut b) = BARS.lock() {
            *b = None;
        }
    }

    /// Standard error, through the bars while they are drawn.
    pub struct Stderr;

    impl Write for Stderr {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.write_all(buf)?;
            Ok(buf.len())
        }

        fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
            let bars = BARS.lock().ok().and_then(|b| b.clone());
            match bars {
                Some(bars) => bars.suspend(|| std::io::stderr().write_all(buf)),
                None => std::io::stderr().write_all(buf),
            }
        }

        fn flush(&mut self) -> std::io::Result<()> {
            std::io::stderr().flush()
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
        type Writer = Stderr;
        fn make_writer(&'a self) -> Stderr {
            Stderr
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise.
    Auto,
    Text,
    Json,
}

/// Crates whose debug output could carry data or secrets.
const QUIET_TARGETS: [&str; 9] = [
    "tokio_postgres",
    "postgres_protocol",
    "deadpool_postgres",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "tokio_postgres_rustls",
];

/// Installs the global subscriber (stderr; level from `RUST_LOG`, default `info`, and for a
/// one-shot command in text, the events' per-window lines left out).
/// What a command shows of its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogMode {
    /// The daemon: every event.
    Daemon,
    /// A one-shot command: on a terminal, what needs attention.
    OneShot,
    /// A command that says everything in its own lines (`check`): errors only.
    Lines,
}

pub fn init_logging(format: LogFormat, mode: LogMode) {
    use std::io::IsTerminal;
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    // A person running a one-shot command (sync, backfill, demo ...) in a terminal sees its own
    // summary and what needs attention: the events' per-window and per-value lines (INFO) are
    // left to JSON logs, the daemon, and RUST_LOG. `check` says everything in its own lines:
    // a retry's warning would land in the middle of its list, and says nothing it does not.
    let default = match mode {
        LogMode::Lines => "error",
        _ if json => "info",
        LogMode::Daemon => "info",
        LogMode::OneShot => "info,sessionsync_core::events=warn",
    };
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // The database and HTTP client crates log query parameters (customer data) and URLs (the
    // legacy Take Control key is a query parameter) at debug level: they stay at info whatever
    // RUST_LOG says.
    for quiet in QUIET_TARGETS {
        if let Ok(d) = format!("{quiet}=info").parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(terminal::Stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}
