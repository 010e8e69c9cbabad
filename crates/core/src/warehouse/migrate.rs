//! Embedded SQL migrations (`sql/*.sql`), applied in order, each once, in one transaction that
//! holds an advisory lock: two daemons starting at once apply them once. Each applied migration's
//! SHA-256 is recorded; a migration edited after it was applied is refused at start.

use super::{WarehouseError, pg_detail};

/// `(version, sql)`, in the order they apply: every `sql/*.sql` file, by name (`build.rs`
/// lists them). Adding a source adds one file there.
pub const MIGRATIONS: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// SHA-256 of a migration's text, hex.
pub fn checksum(sql: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

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
    // A schema created beforehand (owned by sessionsync's role, which then needs no CREATE on
    // the database: docs/operations.md, "The warehouse role") is used as it is.
    let exists = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .map_err(q("looking for the schema"))?
        .is_some();
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .map_err(q(
                "creating the schema (the role needs CREATE on the database, or create the schema for it beforehand: docs/operations.md, \"The warehouse role\")",
            ))?;
    }
    // `schema` is a validated identifier; quoted anyway.
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS \"{schema}\".schema_migrations (
             version text PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now());
         COMMENT ON TABLE \"{schema}\".schema_migrations IS 'Migrations applied by sessionsync migrate';
         COMMENT ON COLUMN \"{schema}\".schema_migrations.version IS 'Name of the migration file';
         COMMENT ON COLUMN \"{schema}\".schema_migrations.applied_at IS 'When it was applied';
         ALTER TABLE \"{schema}\".schema_migrations ADD COLUMN IF NOT EXISTS checksum text;
         COMMENT ON COLUMN \"{schema}\".schema_migrations.checksum IS 'SHA-256 of the migration as applied; a file edited afterwards is refused at start';
         SET LOCAL search_path TO \"{schema}\";"
    ))
    .await
    .map_err(q("creating the schema"))?;
    let done: std::collections::HashMap<String, Option<String>> = tx
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await
        .map_err(q("reading schema_migrations"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        let sum = checksum(sql);
        match done.get(*version) {
            Some(Some(recorded)) if *recorded == sum => continue,
            Some(Some(recorded)) => {
                return Err(WarehouseError::Migration {
                    version: version.to_string(),
                    detail: format!(
                        "it was applied with checksum {recorded}, but this binary's copy has {sum}: the migration was edited after it was applied. Nothing was changed. Run the version that applied it, or restore the file and put the change in a new migration"
                    ),
                });
            }
            Some(None) => {
                // Applied by a version that did not record checksums: record this one's.
                tx.execute(
                    "UPDATE schema_migrations SET checksum = $2 WHERE version = $1",
                    &[version, &sum],
                )
                .await
                .map_err(q("recording a migration's checksum"))?;
                continue;
            }
            None => {}
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| WarehouseError::Migration {
                version: version.to_string(),
                detail: pg_detail(&e),
            })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
            &[version, &sum],
        )
        .await
        .map_err(q("recording a migration"))?;
        applied.push(*version);
    }
    tx.commit().await.map_err(q("committing migrations"))?;
    Ok(applied)
}
