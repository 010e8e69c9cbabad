//! The PostgreSQL side: connection pool (TLS per libpq's `sslmode`), embedded migrations, and
//! the bookkeeping tables (`sync_state`, `sync_runs`, `rejected_records`) and the completeness
//! audit's (`audits`, `audits.rs`).

pub mod audits;
mod bookkeeping;
pub mod bootstrap;
mod migrate;
pub mod settings;
mod tls;
mod unnest;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

pub use settings::WarehouseSettings;
pub use unnest::{Unnest, texts, values};

pub use bookkeeping::*;
pub use migrate::{MIGRATIONS, checksum as migration_checksum};

/// JSON already serialized, sent as `jsonb` (or `json`) as it is: a record whose text was
/// needed anyway (to fingerprint it) is not serialized a second time for the database.
#[derive(Debug)]
pub struct JsonText<'a>(pub &'a str);

impl tokio_postgres::types::ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use bytes::BufMut;
        if *ty == tokio_postgres::types::Type::JSONB {
            out.put_u8(1); // jsonb's binary format: a version byte, then the text
        }
        out.put_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        matches!(
            *ty,
            tokio_postgres::types::Type::JSON | tokio_postgres::types::Type::JSONB
        )
    }

    tokio_postgres::types::to_sql_checked!();
}

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error(
        "warehouse URL is not usable: {0} (expected postgres://user[:password]@host:port/database[?sslmode=require])"
    )]
    Url(String),
    /// The server answered and refused the login (password, role, pg_hba.conf).
    #[error(
        "the warehouse database {target} refused the login ({detail}): the server was reached; check the user and password in warehouse.url / DATABASE_URL, and that the server's pg_hba.conf lets this host in"
    )]
    LoginRefused { target: String, detail: String },
    /// The server answered: there is no such database.
    #[error(
        "the warehouse database {target} does not exist on the server ({detail}): create it (docs/operations.md, \"The warehouse role\") or fix the database name in warehouse.url / DATABASE_URL"
    )]
    NoDatabase { target: String, detail: String },
    /// The cause is kept (its text said once, here): not a `source`, so that a chain printer
    /// does not say it again.
    #[error(
        "cannot reach the warehouse database {target}: {}. Is PostgreSQL running there, and are warehouse.url / DATABASE_URL right?",
        pool_detail(.error)
    )]
    Connect {
        /// Host, port, database and user (never the password).
        target: String,
        error: deadpool_postgres::PoolError,
    },
    /// The cause is kept, its text said once (not a `source`: a chain printer would repeat it).
    #[error("warehouse query failed while {doing}: {}", pg_detail(.error))]
    Query {
        doing: &'static str,
        error: tokio_postgres::Error,
    },
    /// A failure injected by a test (the `fault-points` feature; release builds have none).
    #[cfg(feature = "fault-points")]
    #[error(
        "warehouse write failed while {doing}: a failure injected by a test (engine fault point)"
    )]
    FaultInjected { doing: &'static str },
    #[error("warehouse migration `{version}` failed: {detail}")]
    Migration { version: String, detail: String },
    #[error(
        "[privacy]: the warehouse still depends on the hash key with fingerprint {fingerprint} ({erasures} erasure(s) recorded under it, {rows} session row(s) hashed under it), but it is neither hash_key nor in previous_hash_keys. Put that key back into previous_hash_keys (keep it there while erasures or rows depend on it; `sessionsync backfill` rewrites the rows under the current key)"
    )]
    KeyStillUsed {
        fingerprint: String,
        erasures: i64,
        rows: i64,
    },
}

impl WarehouseError {
    /// Whether the error is the configuration's, not the warehouse's (exit 2, no retry).
    pub fn is_config(&self) -> bool {
        matches!(self, WarehouseError::KeyStillUsed { .. })
    }
}

impl WarehouseError {
    pub fn query(doing: &'static str) -> impl FnOnce(tokio_postgres::Error) -> WarehouseError {
        move |error| WarehouseError::Query { doing, error }
    }
}

/// Deletes the child rows of sessions `$2` (bigint[]) of account `$1` from `table` (a constant
/// of the calling source), probing the child table's key once per session whatever the
/// planner's statistics say. The plain `USING unnest(..)` join is planned, when statistics say
/// the account has no rows, as a hash join over an index scan with `account = $1` alone (all of
/// the account's children per window); `session_id = ANY($2)` may be planned the same way.
/// Here each session's rows are found by a fenced (`OFFSET 0`) lateral probe whose only plans
/// are a probe of the whole key or a scan per session, and deleted by their row addresses.
pub fn delete_children(table: &str) -> String {
    format!(
        "DELETE FROM {table} c WHERE c.ctid = ANY(ARRAY(
             SELECT x.ctid FROM unnest($2::bigint[]) AS u(id)
             CROSS JOIN LATERAL (
                 SELECT t.ctid FROM {table} t
                 WHERE t.account = $1 AND t.session_id = u.id OFFSET 0) AS x))"
    )
}

/// A database error's message with its server detail, if any.
pub fn pg_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.severity(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            if let Some(src) = std::error::Error::source(e) {
                s.push_str(&format!(": {src}"));
            }
            s
        }
    }
}

/// Whether the warehouse takes writes ([`Warehouse::writable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writable {
    Yes,
    /// A standby in recovery.
    InRecovery,
    /// Read-only sessions (`default_transaction_read_only`).
    ReadOnly,
    Unreachable,
}

impl Writable {
    /// What `/readyz` answers when not ready.
    pub fn why_not(self) -> Option<&'static str> {
        match self {
            Writable::Yes => None,
            Writable::InRecovery => Some(
                "the warehouse is a standby in recovery: it cannot take writes (a failover left this address on a standby?)",
            ),
            Writable::ReadOnly => Some(
                "the warehouse takes no writes: its sessions are read-only (default_transaction_read_only)",
            ),
            Writable::Unreachable => Some("the warehouse does not answer"),
        }
    }
}

/// The warehouse: a pool whose connections all use the configured schema as `search_path`.
#[derive(Clone)]
pub struct Warehouse {
    pool: Pool,
    schema: String,
    /// Where it connects, for errors: host, port, database and user, never the password.
    target: String,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse")
            .field("schema", &self.schema)
            .finish()
    }
}

impl Warehouse {
    /// Builds the pool; no connection is made until one is needed.
    pub fn new(settings: &WarehouseSettings) -> Result<Self, WarehouseError> {
        settings::validate_identifier(&settings.schema).map_err(WarehouseError::Url)?;
        let (mut pg, tls) = tls::config_from_url(&settings.url)?;
        pg.application_name("sessionsync");
        // The schema is a validated identifier ([a-z_][a-z0-9_]*): safe inside the options string.
        //
        // synchronous_commit: a window's rows and its watermark always commit together, so a
        // server crash can only lose the last few hundred milliseconds of *both*, and the next
        // cycle re-reads that range from the source. Not waiting for each commit's WAL flush
        // makes a backfill of many windows several times faster.
        let sync_commit = if settings.synchronous_commit {
            "on"
        } else {
            "off"
        };
        // client_min_messages: the server's NOTICEs ("schema already exists, skipping", "drop
        // cascades to ...") are not the user's business; warnings and errors still arrive.
        pg.options(format!(
            "-c search_path={} -c synchronous_commit={sync_commit} -c client_min_messages=warning",
            settings.schema
        ));
        pg.connect_timeout(Duration::from_secs(10));
        let target = target(&pg);
        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| WarehouseError::Url(e.to_string()))?;
        Ok(Warehouse {
            pool,
            schema: settings.schema.clone(),
            target,
        })
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A pooled connection.
    pub async fn conn(&self) -> Result<deadpool_postgres::Object, WarehouseError> {
        self.pool.get().await.map_err(|error| {
            let target = self.target.clone();
            let code = match &error {
                deadpool_postgres::PoolError::Backend(e) => e.code().cloned(),
                _ => None,
            };
            use tokio_postgres::error::SqlState;
            match code {
                Some(c)
                    if c == SqlState::INVALID_PASSWORD
                        || c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
                {
                    WarehouseError::LoginRefused {
                        target,
                        detail: pool_detail(&error),
                    }
                }
                Some(c) if c == SqlState::INVALID_CATALOG_NAME => WarehouseError::NoDatabase {
                    target,
                    detail: pool_detail(&error),
                },
                _ => WarehouseError::Connect { target, error },
            }
        })
    }

    /// Applies every migration not yet applied, under an advisory lock.
    pub async fn migrate(&self) -> Result<Vec<&'static str>, WarehouseError> {
        let mut conn = self.conn().await?;
        migrate::run(&mut conn, &self.schema).await
    }

    /// Whether the warehouse answers within two seconds and takes writes: not a standby in
    /// recovery (a failover left this address on one), not read-only
    /// (`default_transaction_read_only`): `/readyz`.
    pub async fn writable(&self) -> Writable {
        let check = async {
            let c = self.conn().await.ok()?;
            let row = c
                .query_one(
                    "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'",
                    &[],
                )
                .await
                .ok()?;
            Some((row.get::<_, bool>(0), row.get::<_, bool>(1)))
        };
        match tokio::time::timeout(Duration::from_secs(2), check).await {
            Ok(Some((false, false))) => Writable::Yes,
            Ok(Some((true, _))) => Writable::InRecovery,
            Ok(Some((false, true))) => Writable::ReadOnly,
            _ => Writable::Unreachable,
        }
    }
}

/// `at HOST:PORT, database `DB` as user `USER`` of a connection config (never its password).
fn target(pg: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            let port = pg
                .get_ports()
                .get(i)
                .or(pg.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let mut s = format!(
        "at {}",
        if hosts.is_empty() {
            "localhost:5432".into()
        } else {
            hosts.join(", ")
        }
    );
    if let Some(db) = pg.get_dbname() {
        s.push_str(&format!(", database `{db}`"));
    }
    if let Some(user) = pg.get_user() {
        s.push_str(&format!(" as user `{user}`"));
    }
    s
}

fn pool_detail(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(be) => pg_detail(be),
        other => other.to_string(),
    }
}
