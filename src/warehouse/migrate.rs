//! Embedded SQL migrations (`sql/*.sql`), applied in order, each once, in one transaction that
//! holds an advisory lock: two daemons starting at once apply them once.

use super::{WarehouseError, pg_detail};

/// `(version, sql)`, in the order they apply. Adding a source adds one file here.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_bookkeeping",
        include_str!("../../sql/0001_bookkeeping.sql"),
    ),
    (
        "0002_takecontrol",
        include_str!("../../sql/0002_takecontrol.sql"),
    ),
    ("0003_mluvii", include_str!("../../sql/0003_mluvii.sql")),
    (
        "0004_superoffice",
        include_str!("../../sql/0004_superoffice.sql"),
    ),
    (
        "0005_support_sessions",
        include_str!("../../sql/0005_support_sessions.sql"),
    ),
    (
        "0006_support_daily",
        include_str!("../../sql/0006_support_daily.sql"),
    ),
    (
        "0007_content_hash",
        include_str!("../../sql/0007_content_hash.sql"),
    ),
    (
        "0008_window_seconds",
        include_str!("../../sql/0008_window_seconds.sql"),
    ),
    (
        "0009_time_first_indexes",
        include_str!("../../sql/0009_time_first_indexes.sql"),
    ),
    (
        "0010_children_without_foreign_keys",
        include_str!("../../sql/0010_children_without_foreign_keys.sql"),
    ),
];

/// Advisory-lock class for sessionsync (`'sess'` as an int); the second key says what is locked.
pub const LOCK_CLASS: i32 = 0x7365_7373;

pub async fn run(
    client: &mut tokio_postgres::Client,
    schema: &str,
) -> Result<Vec<&'static str>, WarehouseError> {
    let q = |doing| WarehouseError::query(doing);
    let tx = client
        .transaction()
        .await
        .map_err(q("starting the migration transaction"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext('migrate:' || $2::text))",
        &[&LOCK_CLASS, &schema],
    )
    .await
    .map_err(q("taking the migration lock"))?;
    // `schema` is a validated identifier; quoted anyway.
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         CREATE TABLE IF NOT EXISTS \"{schema}\".schema_migrations (
             version text PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now());
         COMMENT ON TABLE \"{schema}\".schema_migrations IS 'Migrations applied by sessionsync migrate';
         COMMENT ON COLUMN \"{schema}\".schema_migrations.version IS 'Name of the migration file';
         COMMENT ON COLUMN \"{schema}\".schema_migrations.applied_at IS 'When it was applied';
         SET LOCAL search_path TO \"{schema}\";"
    ))
    .await
    .map_err(q("creating the schema"))?;
    let done: Vec<String> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(q("reading schema_migrations"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        if done.iter().any(|d| d == version) {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| WarehouseError::Migration {
                version: version.to_string(),
                detail: pg_detail(&e),
            })?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(q("recording a migration"))?;
        applied.push(*version);
    }
    tx.commit().await.map_err(q("committing migrations"))?;
    Ok(applied)
}
