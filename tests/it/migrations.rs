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

/// docs/operations.md's least-privilege snippet, run as written (names made unique): that role
/// migrates and syncs with no CREATE on the database, and the read-only BI role reads the rows.
#[tokio::test]
async fn the_documented_least_privilege_role_migrates_syncs_and_bi_reads() {
    use sessionsync_sim::takecontrol::{TakeControlSim, generate};
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"),
    )
    .unwrap();
    let snippet = doc
        .split("## The warehouse role")
        .nth(1)
        .and_then(|s| s.split("```sql\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("docs/operations.md has the role snippet")
        .to_string();
    let n = std::process::id();
    let (role, reader, db) = (
        format!("lp_sync_{n}"),
        format!("lp_bi_{n}"),
        format!("lp_wh_{n}"),
    );
    let snippet = snippet
        .replace("bi_reader", &reader)
        .replace("ROLE sessionsync", &format!("ROLE {role}"))
        .replace(
            "AUTHORIZATION sessionsync",
            &format!("AUTHORIZATION {role}"),
        )
        .replace("FOR ROLE sessionsync", &format!("FOR ROLE {role}"))
        .replace("DATABASE warehouse", &format!("DATABASE {db}"));
    let admin = admin_url();
    let connect = |url: String| async move {
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c
    };
    let url_of = |user: &str, database: &str| {
        let mut u = reqwest::Url::parse(&admin).unwrap();
        u.set_username(user).unwrap();
        u.set_password(Some("change-me")).unwrap();
        u.set_path(&format!("/{database}"));
        u.to_string()
    };
    // The part before `\c` on the server, the rest in the new database.
    let (server_part, db_part) = snippet.split_once("\\c warehouse\n").unwrap();
    let c = connect(admin.clone()).await;
    for stmt in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("DROP ROLE IF EXISTS {reader}"),
        format!("DROP ROLE IF EXISTS {role}"),
    ] {
        c.batch_execute(&stmt).await.unwrap();
    }
    let left = Objects {
        db: db.clone(),
        roles: [reader.clone(), role.clone()],
    };
    // One statement at a time, as psql sends them (CREATE DATABASE cannot run in a transaction).
    let statements = |part: &str| -> Vec<String> {
        part.lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n")
            .split(';')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    for stmt in statements(server_part) {
        c.batch_execute(&stmt).await.unwrap();
    }
    let mut in_db = reqwest::Url::parse(&admin).unwrap();
    in_db.set_path(&format!("/{db}"));
    let in_db = connect(in_db.to_string()).await;
    for stmt in statements(db_part) {
        in_db.batch_execute(&stmt).await.unwrap();
    }
    drop(in_db);
    // The reader needs a login for this test only.
    c.batch_execute(&format!(
        "ALTER ROLE {reader} LOGIN PASSWORD 'change-me'; GRANT CONNECT ON DATABASE {db} TO {reader}"
    ))
    .await
    .unwrap();
    let start = chrono::Utc::now() - chrono::TimeDelta::days(1);
    let sim = TakeControlSim::start(
        "k",
        generate(
            3,
            30,
            start,
            chrono::Utc::now() - chrono::TimeDelta::hours(1),
        ),
    )
    .await
    .unwrap();
    let s = sessionsync::config::Settings::from_toml(
        std::path::Path::new("lp.toml"),
        &format!(
            "[warehouse]\nurl = \"{}\"\n{}",
            url_of(&role, &db),
            tc_toml(&sim.base_url(), "k", start, "")
        ),
        &|_| None,
        &sessionsync::sources::configs(),
    )
    .unwrap();
    let h = Harness::new(&s).await;
    let r = h.sync().await;
    assert_eq!(
        r.outcome,
        sessionsync::engine::Outcome::Succeeded,
        "{:?}",
        r.error
    );
    let bi = connect(url_of(&reader, &db)).await;
    let n_rows: i64 = bi
        .query_one("SELECT count(*) FROM sessionsync.takecontrol_sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n_rows, 30);
    assert!(
        bi.execute("DELETE FROM sessionsync.takecontrol_sessions", &[])
            .await
            .is_err(),
        "the BI role only reads"
    );
    drop(h);
    drop(bi);
    drop(left);
}

/// The database and roles the role test creates, dropped when it ends (also when it fails): each
/// statement on its own (DROP DATABASE cannot run in a transaction block, which a batch of
/// several statements is), each one's error said.
struct Objects {
    db: String,
    roles: [String; 2],
}

impl Drop for Objects {
    fn drop(&mut self) {
        let mut statements = vec![format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db)];
        statements.extend(
            self.roles
                .iter()
                .map(|r| format!("DROP ROLE IF EXISTS {r}")),
        );
        let failed = drop_all(&statements);
        // A failing test must not hide behind a second panic (that would abort).
        if !failed.is_empty() && !std::thread::panicking() {
            panic!("could not drop what the test created: {failed:?}");
        }
    }
}
