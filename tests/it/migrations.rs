//! Migrations are applied once, with their checksums; one edited after it was applied is refused.

use crate::helpers::*;
use sessionsync::warehouse::{MIGRATIONS, Warehouse};

#[tokio::test]
async fn a_migration_edited_after_it_was_applied_is_refused_and_old_records_get_checksums() {
    let db = TestDb::new().await;
    let s = settings(&db, "");
    let wh = Warehouse::new(&s.warehouse).unwrap();
    assert_eq!(wh.migrate().await.unwrap().len(), MIGRATIONS.len());
    assert!(wh.migrate().await.unwrap().is_empty(), "applied once");
    let c = db.client().await;
    let missing: i64 = c
        .query_one(
            "SELECT count(*) FROM schema_migrations WHERE checksum IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(missing, 0);

    // Recorded by a version that kept no checksums: filled in, nothing re-applied.
    c.batch_execute("UPDATE schema_migrations SET checksum = NULL")
        .await
        .unwrap();
    assert!(wh.migrate().await.unwrap().is_empty());
    assert_eq!(
        strings(
            &c,
            "SELECT checksum FROM schema_migrations WHERE version = '0002_takecontrol'"
        )
        .await,
        [sessionsync::warehouse::migration_checksum(MIGRATIONS[1].1)]
    );

    // The file changed since: refused, naming the migration, and nothing else happens.
    c.batch_execute(
        "UPDATE schema_migrations SET checksum = 'deadbeef' WHERE version = '0002_takecontrol'",
    )
    .await
    .unwrap();
    let e = wh.migrate().await.unwrap_err().to_string();
    assert!(
        e.contains("0002_takecontrol") && e.contains("edited"),
        "{e}"
    );
}
