//! The file's own sections (`[warehouse]`, `[server]`, `[engine]`, `[webhooks]`, `[privacy]`):
//! their raw shape (every struct refuses unknown keys) and their validation into
//! [`Settings`](super::Settings), with the accounts the sources read.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::entries::{Account, SourceKind, accounts};
use super::{
    AuditSettings, ConfigError, DEFAULT_AUDIT_DAYS, DEFAULT_AUDIT_SCHEDULE, DEFAULT_AUDIT_SPREAD,
    DEFAULT_CONCURRENT_STREAMS, DEFAULT_POOL_SIZE, EngineSettings, KeyProblem,
    MAX_CONCURRENT_STREAMS, SSL_MODES, Schedule, Secret, ServerSettings, Settings,
    WarehouseSettings, WebhookSettings, parse_duration, validate_identifier,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    warehouse: RawWarehouse,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    engine: RawEngine,
    webhooks: Option<RawWebhooks>,
    #[serde(default)]
    privacy: RawPrivacy,
    #[serde(default)]
    audit: RawAudit,
}

/// The sections of the file that are not a source's.
pub(super) const SECTIONS: [&str; 6] = [
    "warehouse",
    "server",
    "engine",
    "webhooks",
    "privacy",
    "audit",
];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    schedule: Option<String>,
    days: Option<u32>,
    spread: Option<String>,
}

/// `[audit]`: the daemon's daily completeness audit (sources.md section 5).
fn audit_settings(a: RawAudit) -> Result<AuditSettings, KeyProblem> {
    let schedule = Schedule::parse(a.schedule.as_deref().unwrap_or(DEFAULT_AUDIT_SCHEDULE))
        .map_err(|p| ("audit.schedule".to_string(), p))?;
    let days = a.days.unwrap_or(DEFAULT_AUDIT_DAYS);
    if !(1..=366).contains(&days) {
        return Err((
            "audit.days".into(),
            format!("is {days}; use 1 to 366 (closed UTC days compared each time)"),
        ));
    }
    let spread = parse_duration("audit.spread", a.spread.as_deref(), DEFAULT_AUDIT_SPREAD)?;
    let period = schedule.period(chrono::Utc::now());
    if spread.as_secs() > period.num_seconds().max(0) as u64 / 2 {
        return Err((
            "audit.spread".into(),
            format!(
                "`{}` is more than half the schedule's period ({}s): the accounts' audits would run into the next instant",
                a.spread.as_deref().unwrap_or(DEFAULT_AUDIT_SPREAD),
                period.num_seconds()
            ),
        ));
    }
    Ok(AuditSettings {
        schedule,
        days,
        spread,
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPrivacy {
    customer_identity: Option<crate::privacy::Policy>,
    network: Option<crate::privacy::Policy>,
    free_text: Option<crate::privacy::Policy>,
    transcripts: Option<crate::privacy::Policy>,
    agent_identity: Option<crate::privacy::Policy>,
    hash_key: Option<Secret>,
    previous_hash_keys: Option<Vec<Secret>>,
    retain_sessions: Option<String>,
    retain_transcripts: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWarehouse {
    url: Option<String>,
    schema: Option<String>,
    pool_size: Option<usize>,
    synchronous_commit: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    max_concurrent_streams: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
}

pub(super) fn validate(
    file: &Path,
    raw: RawFile,
    env: &dyn Fn(&str) -> Option<String>,
    entries: Vec<(&'static SourceKind, Vec<toml::Value>)>,
) -> Result<Settings, ConfigError> {
    let fail = |(key, problem): (String, String)| ConfigError::Invalid {
        file: file.to_path_buf(),
        key,
        problem,
    };

    let url = match env("DATABASE_URL").filter(|s| !s.is_empty()) {
        Some(u) => u,
        None => raw.warehouse.url.clone().ok_or_else(|| {
            fail((
                "warehouse.url".into(),
                "missing: set it in the file or export DATABASE_URL (postgres://user@host:5432/db)"
                    .into(),
            ))
        })?,
    };
    // The key the URL came from: DATABASE_URL overrides the file.
    let url_key = if env("DATABASE_URL").is_some_and(|s| !s.is_empty()) {
        "warehouse.url (from DATABASE_URL)"
    } else {
        "warehouse.url"
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(fail((
            url_key.into(),
            "must be a postgres:// or postgresql:// URL".into(),
        )));
    }
    check_url_options(&url).map_err(|p| fail((url_key.into(), p)))?;
    let schema = raw.warehouse.schema.unwrap_or_else(|| "sessionsync".into());
    validate_identifier(&schema).map_err(|p| fail(("warehouse.schema".into(), p)))?;
    // The two are independent: a running stream holds no connection while it waits on its
    // vendor (engine::claims). One connection keeps the running streams' locks, so a pool
    // needs at least one more for commits.
    let max_concurrent_streams = raw
        .engine
        .max_concurrent_streams
        .unwrap_or(DEFAULT_CONCURRENT_STREAMS);
    if !(1..=MAX_CONCURRENT_STREAMS).contains(&max_concurrent_streams) {
        return Err(fail((
            "engine.max_concurrent_streams".into(),
            format!("is {max_concurrent_streams}; use 1 to {MAX_CONCURRENT_STREAMS}"),
        )));
    }
    let pool_size = raw.warehouse.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
    if !(2..=1000).contains(&pool_size) {
        return Err(fail((
            "warehouse.pool_size".into(),
            format!(
                "is {pool_size}; use 2 to 1000 (one connection keeps the running streams' locks, the others serve commits), or remove it for the default {DEFAULT_POOL_SIZE}"
            ),
        )));
    }

    let listen_s = raw.server.listen.unwrap_or_else(|| "127.0.0.1:9898".into());
    let listen: SocketAddr = listen_s.parse().map_err(|_| {
        fail((
            "server.listen".into(),
            format!("`{listen_s}` is not an address:port such as 127.0.0.1:9898"),
        ))
    })?;
    let server = ServerSettings { listen };

    let accounts = accounts(entries).map_err(fail)?;
    let privacy = privacy_settings(raw.privacy, &accounts).map_err(fail)?;
    let audit = audit_settings(raw.audit).map_err(fail)?;
    let webhooks = raw
        .webhooks
        .map(|w| webhook_settings(w, &server))
        .transpose()
        .map_err(fail)?;

    Ok(Settings {
        file: file.to_path_buf(),
        warehouse: WarehouseSettings {
            url: Secret::new(url),
            schema,
            pool_size,
            synchronous_commit: raw.warehouse.synchronous_commit.unwrap_or(false),
        },
        server,
        webhooks,
        privacy,
        engine: EngineSettings {
            max_concurrent_streams,
        },
        audit,
        accounts,
    })
}

/// The warehouse URL's TLS options, as libpq reads them (`warehouse::tls` applies them): an
/// unknown `sslmode` is a configuration error, found at load. The URL itself, which may carry a
/// password, is never part of the message.
fn check_url_options(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("is not a URL ({e}); expected postgres://user[:password]@host:port/database[?sslmode=require]"))?;
    for (k, v) in parsed.query_pairs() {
        if k == "sslmode" && !SSL_MODES.contains(&v.as_ref()) {
            return Err(format!(
                "sslmode `{v}` is not one of {}",
                SSL_MODES.join(", ")
            ));
        }
    }
    Ok(())
}

/// `[privacy]` (docs/privacy.md section 2): a key is required, and at least 32 bytes long, when
/// any class of `[privacy]` or of an entry's overrides hashes.
fn privacy_settings(
    p: RawPrivacy,
    accounts: &[Account],
) -> Result<crate::privacy::PrivacySettings, KeyProblem> {
    use crate::privacy::{Class, Policies};
    let mut policies = Policies::default();
    for (c, v) in [
        (Class::CustomerIdentity, p.customer_identity),
        (Class::Network, p.network),
        (Class::FreeText, p.free_text),
        (Class::Transcripts, p.transcripts),
        (Class::AgentIdentity, p.agent_identity),
    ] {
        if let Some(v) = v {
            policies.set(c, v);
        }
    }
    let hash_key = p.hash_key.filter(|k| !k.is_empty());
    let hashing = policies.needs_key()
        || accounts
            .iter()
            .any(|a| policies.with(&a.stream.privacy).needs_key());
    match &hash_key {
        None if hashing => {
            return Err((
                "privacy.hash_key".into(),
                "missing: a class is \"hash\", which needs a secret key of at least 32 bytes (for example hash_key = \"${SESSIONSYNC_HASH_KEY}\" with the output of `openssl rand -hex 32`)".into(),
            ));
        }
        Some(k) if k.expose().len() < crate::privacy::MIN_KEY_BYTES => {
            return Err((
                "privacy.hash_key".into(),
                format!(
                    "is {} bytes long; use at least {} (for example the output of `openssl rand -hex 32`)",
                    k.expose().len(),
                    crate::privacy::MIN_KEY_BYTES
                ),
            ));
        }
        _ => {}
    }
    let previous_hash_keys = p.previous_hash_keys.unwrap_or_default();
    if !previous_hash_keys.is_empty() && hash_key.is_none() {
        return Err((
            "privacy.previous_hash_keys".into(),
            "needs hash_key: the previous keys are the ones hash_key replaced".into(),
        ));
    }
    for (i, k) in previous_hash_keys.iter().enumerate() {
        if k.expose().len() < crate::privacy::MIN_KEY_BYTES {
            return Err((
                format!("privacy.previous_hash_keys[{i}]"),
                format!(
                    "is {} bytes long; a hash key has at least {} (is it the right value?)",
                    k.expose().len(),
                    crate::privacy::MIN_KEY_BYTES
                ),
            ));
        }
        if hash_key.as_ref().is_some_and(|h| h.expose() == k.expose()) {
            return Err((
                format!("privacy.previous_hash_keys[{i}]"),
                "is hash_key itself; list only the keys used before it".into(),
            ));
        }
    }
    let limit = |key: &str, v: Option<String>| -> Result<Option<Duration>, KeyProblem> {
        v.map(|s| {
            let d = parse_duration(&format!("privacy.{key}"), Some(&s), "0s")?;
            if d < Duration::from_secs(86_400) {
                return Err((
                    format!("privacy.{key}"),
                    format!("`{s}` is under a day; write e.g. \"730d\""),
                ));
            }
            Ok(d)
        })
        .transpose()
    };
    Ok(crate::privacy::PrivacySettings {
        policies,
        hash_key,
        previous_hash_keys,
        retain_sessions: limit("retain_sessions", p.retain_sessions)?,
        retain_transcripts: limit("retain_transcripts", p.retain_transcripts)?,
    })
}

/// `[webhooks]`: the listener's own address, never the metrics server's.
fn webhook_settings(
    w: RawWebhooks,
    server: &ServerSettings,
) -> Result<WebhookSettings, KeyProblem> {
    let listen_s = w.listen.unwrap_or_else(|| "0.0.0.0:8080".into());
    let listen: SocketAddr = listen_s.parse().map_err(|_| {
        (
            "webhooks.listen".into(),
            format!("`{listen_s}` is not an address:port such as 0.0.0.0:8080"),
        )
    })?;
    if listen == server.listen
        || (listen.port() == server.listen.port()
            && listen.port() != 0
            && (listen.ip().is_unspecified() || server.listen.ip().is_unspecified()))
    {
        return Err((
            "webhooks.listen".into(),
            format!(
                "`{listen}` is the metrics server's address (server.listen); the webhook listener needs its own port"
            ),
        ));
    }
    Ok(WebhookSettings { listen })
}
