//! Every per-window statement costs O(the window), whatever the planner knows: plans are read,
//! not clocks. The warehouse is seeded with several accounts and analyzed before a new account's
//! rows exist (statistics then say that account has no rows, as during any large backfill with
//! autovacuum off); each statement that reads stored rows, and each foreign-key check
//! PostgreSQL runs for a child row, is explained as executed, with custom and generic plans, and
//! every access to a warehouse table must be an index probe whose conditions are the whole key.
//! (The upserts find conflicts through their arbiter index, which the planner does not choose.)
//! A second test syncs a sparse account into a never-analyzed warehouse and holds the tuples
//! PostgreSQL read to a small multiple of the rows written.

use crate::helpers::*;
use chrono::{TimeDelta, Utc};
use serde_json::Value;
use sessionsync::engine::Outcome;
use sessionsync_sim::takecontrol::{TakeControlSim, generate_with};

/// Seeds `accounts` accounts of `per_account` sessions (with children) into every source's
/// tables, set-based.
async fn seed(c: &tokio_postgres::Client, accounts: &[&str], per_account: i64) {
    for a in accounts {
        c.execute(
            "INSERT INTO takecontrol_sessions (account, session_id, started_at, raw, content_hash)
             SELECT $1, g, now() - g * interval '1 minute', '{}', 'h' FROM generate_series(1, $2::bigint) g",
            &[a, &per_account],
        )
        .await
        .unwrap();
        c.execute(
            "INSERT INTO takecontrol_chat_messages (account, session_id, seq, message)
             SELECT $1, g, s, 'x' FROM generate_series(1, $2::bigint) g, generate_series(0, 2) s",
            &[a, &per_account],
        )
        .await
        .unwrap();
        c.execute(
            "INSERT INTO takecontrol_video_links (account, session_id, seq, url)
             SELECT $1, g, 0, 'u' FROM generate_series(1, $2::bigint, 5) g",
            &[a, &per_account],
        )
        .await
        .unwrap();
        c.execute(
            "INSERT INTO mluvii_sessions (account, session_id, created_at, raw)
             SELECT $1, g, now() - g * interval '1 minute', '{}' FROM generate_series(1, $2::bigint) g",
            &[a, &per_account],
        )
        .await
        .unwrap();
        for (table, cols, vals) in [
            ("mluvii_session_operators", "user_id", "7"),
            ("mluvii_routing_events", "seq", "0"),
            ("mluvii_session_durations", "active_seconds", "1.0"),
        ] {
            c.execute(
                &format!(
                    "INSERT INTO {table} (account, session_id, {cols})
                     SELECT $1, g, {vals} FROM generate_series(1, $2::bigint) g"
                ),
                &[a, &per_account],
            )
            .await
            .unwrap();
        }
        c.execute(
            "INSERT INTO superoffice_chat_sessions (account, chat_session_id, requested_at, raw)
             SELECT $1, g, now() - g * interval '1 minute', '{}' FROM generate_series(1, $2::int) g",
            &[a, &(per_account as i32)],
        )
        .await
        .unwrap();
        c.execute(
            "INSERT INTO superoffice_chat_messages (account, chat_message_id, chat_session_id)
             SELECT $1, g, g / 3 FROM generate_series(1, $2::int) g",
            &[a, &(3 * per_account as i32)],
        )
        .await
        .unwrap();
    }
}

/// Every scan of a table in `plan` (EXPLAIN FORMAT JSON): (node type, relation, index, index
/// condition or filter).
fn scans(plan: &Value, out: &mut Vec<(String, String, String, String)>) {
    let node = plan.get("Node Type").and_then(Value::as_str).unwrap_or("");
    if let Some(rel) = plan.get("Relation Name").and_then(Value::as_str)
        && node != "ModifyTable"
    {
        let s = |k: &str| {
            plan.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        out.push((
            s("Node Type"),
            rel.to_string(),
            s("Index Name"),
            format!("{} {}", s("Index Cond"), s("Recheck Cond")),
        ));
    }
    if let Some(idx) = plan.get("Index Name").and_then(Value::as_str)
        && plan.get("Relation Name").is_none()
    {
        // A Bitmap Index Scan names its index, not its table.
        let cond = plan.get("Index Cond").and_then(Value::as_str).unwrap_or("");
        out.push((
            "Bitmap Index Scan".into(),
            String::new(),
            idx.to_string(),
            cond.to_string(),
        ));
    }
    for child in plan
        .get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        scans(child, out);
    }
}

/// Explains `sql` (prepared with `types`, executed with `args`) under both plan-cache modes and
/// asserts every table access is an index probe on `key_columns` of a primary key.
async fn assert_probes_whole_key(
    c: &tokio_postgres::Client,
    sql: &str,
    types: &str,
    args: &str,
    key_columns: &[&str],
) {
    assert_probes(c, sql, types, args, key_columns, "_pkey").await
}

/// As [`assert_probes_whole_key`], through the index whose name ends with `index_suffix`.
async fn assert_probes(
    c: &tokio_postgres::Client,
    sql: &str,
    types: &str,
    args: &str,
    key_columns: &[&str],
    index_suffix: &str,
) {
    c.batch_execute("DEALLOCATE ALL").await.unwrap();
    c.batch_execute(&format!("PREPARE probe({types}) AS {sql}"))
        .await
        .unwrap_or_else(|e| panic!("preparing {sql}: {e}"));
    for mode in ["force_custom_plan", "force_generic_plan"] {
        c.batch_execute(&format!("SET plan_cache_mode = {mode}"))
            .await
            .unwrap();
        let text: String = c
            .query_one(&format!("EXPLAIN (FORMAT JSON) EXECUTE probe({args})"), &[])
            .await
            .unwrap()
            .get::<_, Value>(0)
            .to_string();
        let plan: Value = serde_json::from_str(&text).unwrap();
        let mut found = Vec::new();
        scans(&plan[0]["Plan"], &mut found);
        let tables: Vec<_> = found.iter().filter(|s| s.0 != "Function Scan").collect();
        assert!(
            !tables.is_empty(),
            "{mode}: no table access in\n{text}\nfor {sql}"
        );
        for (node, rel, index, cond) in tables {
            assert!(
                matches!(
                    node.as_str(),
                    "Index Scan"
                        | "Index Only Scan"
                        | "Bitmap Heap Scan"
                        | "Bitmap Index Scan"
                        | "Tid Scan"
                ),
                "{mode}: {node} on {rel} for {sql}\n{text}"
            );
            if node == "Bitmap Heap Scan" || node == "Tid Scan" {
                // A Bitmap Index Scan child is checked; a Tid Scan reads only the row
                // addresses its probes found.
                continue;
            }
            assert!(
                index.ends_with(index_suffix),
                "{mode}: {rel} read through {index}, not *{index_suffix}, for {sql}\n{text}"
            );
            for col in key_columns {
                assert!(
                    cond.contains(&format!("{col} =")),
                    "{mode}: {rel} probed through {index} without `{col}` in its index condition `{cond}`, for {sql}\n{text}"
                );
            }
        }
    }
    c.batch_execute("RESET plan_cache_mode; DEALLOCATE ALL")
        .await
        .unwrap();
}

#[tokio::test]
async fn every_statement_that_reads_stored_rows_probes_the_whole_key_under_stale_statistics() {
    let db = TestDb::new().await;
    let s = settings(&db, "");
    let wh = sessionsync::warehouse::Warehouse::new(&s.warehouse).unwrap();
    wh.migrate().await.unwrap();
    let c = db.client().await;
    // Five accounts stored and analyzed; the new account's rows arrive after the ANALYZE.
    seed(&c, &["a1", "a2", "a3", "a4", "a5"], 4000).await;
    c.batch_execute("ANALYZE").await.unwrap();
    seed(&c, &["newacct"], 4000).await;

    let list: Vec<String> = (1000..=1500).map(|i| i.to_string()).collect();
    let ids = format!("'newacct', '{{{}}}'::bigint[]", list.join(","));
    let mut statements = sessionsync::sources::takecontrol::store::reading_statements();
    statements.extend(sessionsync::sources::mluvii::store::reading_statements());
    assert!(statements.len() >= 6);
    for sql in &statements {
        assert_probes_whole_key(&c, sql, "text, bigint[]", &ids, &["account", "session_id"]).await;
    }

    // What a write does to transcripts past `retain_transcripts` (warehouse::privacy::strip_written),
    // for every source with transcripts: key probes only.
    for inv in sessionsync::sources::inventories() {
        let (find, deletes, strip) = sessionsync::privacy::warehouse::strip_statements(inv);
        let key = ["account", inv.id_column];
        let args = ids.clone();
        assert_probes_whole_key(
            &c,
            &find,
            "text, bigint[], timestamptz",
            &format!("{args}, now()"),
            &key,
        )
        .await;
        for sql in deletes.iter().chain(&strip) {
            let child_key = [
                "account",
                inv.children
                    .iter()
                    .find(|(t, _)| sql.contains(&format!("DELETE FROM {t} ")))
                    .map_or(inv.id_column, |(_, k)| *k),
            ];
            // A child's own primary key may not start with the session (SuperOffice's messages):
            // any index, as long as it is probed by account and session.
            assert_probes(&c, sql, "text, bigint[]", &args, &child_key, "").await;
        }
    }

    // PostgreSQL's own check of each child row's foreign key (ri_triggers.c's query), for
    // every foreign key in the schema: none since migration 0010, but one added later is held
    // to the same rule.
    let fks = c
        .query(
            "SELECT con.conrelid::regclass::text, con.confrelid::regclass::text,
                    array_agg(a.attname::text ORDER BY k.i)
               FROM pg_constraint con
               CROSS JOIN LATERAL unnest(con.confkey) WITH ORDINALITY AS k(attnum, i)
               JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
              WHERE con.contype = 'f' AND con.connamespace = 'sessionsync'::regnamespace
              GROUP BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    for fk in &fks {
        let (child, parent, cols): (String, String, Vec<String>) =
            (fk.get(0), fk.get(1), fk.get(2));
        assert_eq!(cols, ["account", "session_id"], "{child} -> {parent}");
        let sql = format!(
            "SELECT 1 FROM ONLY {parent} x WHERE account OPERATOR(pg_catalog.=) $1
             AND session_id OPERATOR(pg_catalog.=) $2 FOR KEY SHARE OF x"
        );
        assert_probes_whole_key(
            &c,
            &sql,
            "text, bigint",
            "'newacct', 1234",
            &["account", "session_id"],
        )
        .await;
    }
}

#[tokio::test]
async fn the_webhook_inbox_is_read_through_its_index_and_row_addresses_only() {
    // A busy inbox with autovacuum off: many rows of other accounts, most of them deleted
    // (dead, not vacuumed), analyzed before the new account has any.
    let db = TestDb::new().await;
    let s = settings(&db, "");
    let wh = sessionsync::warehouse::Warehouse::new(&s.warehouse).unwrap();
    wh.migrate().await.unwrap();
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO webhook_events (source, account, session_id, event_type, event_key, received_at)
         SELECT 'superoffice', 'a' || (g % 5), g, 'x', 'k' || g, now() FROM generate_series(1, 50000) g;
         DELETE FROM webhook_events WHERE id < 49000;
         ANALYZE webhook_events;
         INSERT INTO webhook_events (source, account, session_id, event_type, event_key, received_at)
         SELECT 'superoffice', 'newacct', g, 'x', 'n' || g, now() FROM generate_series(1, 3000) g;",
    )
    .await
    .unwrap();
    use sessionsync::webhooks::inbox;
    assert_probes(
        &c,
        inbox::CLAIM,
        "text, text, bigint",
        "'superoffice', 'newacct', 500",
        &["source", "account"],
        "_claim_idx",
    )
    .await;
    let ctids = "'{\"(0,1)\",\"(40,2)\"}'::text[], '{49001,49002}'::bigint[]";
    assert_probes(&c, inbox::DELETE, "text[], bigint[]", ctids, &[], "").await;
    assert_probes(
        &c,
        inbox::FAILED,
        "text[], bigint[], timestamptz, text",
        &format!("{ctids}, now(), 'e'"),
        &[],
        "",
    )
    .await;
    assert_probes(
        &c,
        inbox::LEASE,
        "text[], bigint[], timestamptz",
        &format!("{ctids}, now()"),
        &[],
        "",
    )
    .await;
}

/// Tuples read from every index and by every sequential scan of the Take Control tables, once
/// the server's counters have settled.
async fn tuples_read(db: &TestDb) -> (i64, i64) {
    settled_counters(
        db,
        "SELECT (SELECT coalesce(sum(idx_tup_read), 0)::bigint FROM pg_stat_user_indexes
                  WHERE relname LIKE 'takecontrol%'),
                (SELECT coalesce(sum(seq_tup_read), 0)::bigint FROM pg_stat_user_tables
                  WHERE relname LIKE 'takecontrol%')",
        &[],
    )
    .await
}

#[tokio::test]
async fn a_sparse_account_into_a_never_analyzed_warehouse_reads_in_proportion_to_what_it_writes() {
    // About 12 sessions a day over eleven months, five chat messages each, 7-day windows: the
    // shape that made every child row's foreign-key check read the whole account.
    let to = Utc::now() - TimeDelta::hours(1);
    let start = to - TimeDelta::days(330);
    let data = generate_with(17, 4000, start, to, Some(5));
    let sim = TakeControlSim::start("k", data).await.unwrap();
    let db = TestDb::new().await;
    let h = Harness::new(&settings(
        &db,
        &tc_toml(&sim.base_url(), "k", start, "").replace("window = \"1d\"", "window = \"7d\""),
    ))
    .await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    drop(h); // closes the pool: the server publishes the backends' counters
    let c = db.client().await;
    let rows = count(&c, "takecontrol_sessions").await
        + count(&c, "takecontrol_chat_messages").await
        + count(&c, "takecontrol_video_links").await;
    assert!(rows > 20_000, "{rows}");
    let (idx, seq) = tuples_read(&db).await;
    eprintln!("{rows} rows written; {idx} index tuples and {seq} tuples sequentially read");
    // Each stored row costs at most a few probes of one key (fingerprint lookup, foreign-key
    // check); a scan of the account per row would be thousands of times more.
    assert!(
        idx <= 3 * rows && seq <= rows,
        "{idx} index tuples and {seq} sequentially read for {rows} rows written"
    );
}

#[tokio::test]
async fn deleting_or_truncating_sessions_takes_their_children_with_them() {
    let db = TestDb::new().await;
    let s = settings(&db, "");
    let wh = sessionsync::warehouse::Warehouse::new(&s.warehouse).unwrap();
    wh.migrate().await.unwrap();
    let c = db.client().await;
    seed(&c, &["a1", "a2"], 100).await;
    // Any role, any search_path: the triggers find the schema's tables themselves.
    c.batch_execute(
        "SET search_path = public;
         DELETE FROM sessionsync.takecontrol_sessions WHERE account = 'a1' AND session_id <= 10;
         DELETE FROM sessionsync.mluvii_sessions WHERE account = 'a2';
         SET search_path = sessionsync",
    )
    .await
    .unwrap();
    let orphans = |child: &'static str, parent: &'static str| {
        let c = &c;
        async move {
            c.query_one(
                &format!(
                    "SELECT count(*) FROM {child} x WHERE NOT EXISTS (
                         SELECT 1 FROM {parent} p WHERE p.account = x.account AND p.session_id = x.session_id)"
                ),
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    for child in ["takecontrol_chat_messages", "takecontrol_video_links"] {
        assert_eq!(orphans(child, "takecontrol_sessions").await, 0, "{child}");
    }
    for child in [
        "mluvii_session_operators",
        "mluvii_routing_events",
        "mluvii_session_durations",
    ] {
        assert_eq!(orphans(child, "mluvii_sessions").await, 0, "{child}");
    }
    assert_eq!(count(&c, "takecontrol_chat_messages").await, 3 * 190);
    c.batch_execute("TRUNCATE takecontrol_sessions, mluvii_sessions")
        .await
        .unwrap();
    for child in [
        "takecontrol_chat_messages",
        "takecontrol_video_links",
        "mluvii_session_operators",
        "mluvii_routing_events",
        "mluvii_session_durations",
    ] {
        assert_eq!(count(&c, child).await, 0, "{child}");
    }
}

#[tokio::test]
async fn erase_finds_a_person_through_the_selector_indexes_and_erases_by_key_probes() {
    // Stored and analyzed before most rows exist (autovacuum off): the statistics say the
    // tables are nearly empty, and the erase must still read through its indexes.
    let db = TestDb::new().await;
    let s = settings(&db, "");
    let wh = sessionsync::warehouse::Warehouse::new(&s.warehouse).unwrap();
    wh.migrate().await.unwrap();
    let c = db.client().await;
    seed(&c, &["a1"], 100).await;
    c.batch_execute("ANALYZE").await.unwrap();
    seed(&c, &["a2", "a3", "a4", "a5", "newacct"], 8000).await;
    c.batch_execute(
        "UPDATE takecontrol_sessions SET customer_email = 'c' || session_id || '@example.com', customer_name = 'C ' || session_id;
         UPDATE superoffice_chat_sessions SET customer_email = 'c' || chat_session_id || '@example.com', customer_phone = '+420 ' || chat_session_id;
         UPDATE mluvii_sessions SET phone_callback_number = '+420' || session_id, raw = jsonb_build_object('guest', jsonb_build_object('identity', 'g' || session_id));
         UPDATE mluvii_routing_events SET phone_number = '+420' || session_id;",
    )
    .await
    .unwrap();
    let mut checked = 0;
    for inv in sessionsync::sources::inventories() {
        for selector in [
            sessionsync::privacy::Selector::Email,
            sessionsync::privacy::Selector::Phone,
            sessionsync::privacy::Selector::Name,
        ] {
            for (sql, _) in sessionsync::privacy::erase::probes(inv, selector) {
                assert_probes(
                    &c,
                    &sql,
                    "text, text",
                    "'c17@example.com', 'deadbeef'",
                    &[],
                    "_idx",
                )
                .await;
                checked += 1;
            }
        }
        // The rows of the matched sessions, for every table erase changes: one key probe each.
        let mut tables = vec![(inv.sessions, inv.id_column)];
        tables.extend(inv.children.iter().copied());
        for (table, key) in tables {
            let sql = format!(
                "SELECT count(*) FROM {table} WHERE ctid = ANY({})",
                sessionsync::privacy::warehouse::rows_of(table, key)
            );
            assert_probes(
                &c,
                &sql,
                "text, bigint[]",
                "'newacct', '{17,18}'::bigint[]",
                &["account"],
                "",
            )
            .await;
        }
    }
    assert!(checked >= 9, "{checked} selector statements");
}

/// The completeness audit's statements under stale statistics: a day range of one account is a
/// range scan of the start column's index (never a walk of the account's rows through the
/// primary key), and what it looks up by id probes the whole key.
#[tokio::test]
async fn the_audits_statements_are_bounded_under_stale_statistics() {
    let db = TestDb::new().await;
    let s = settings(&db, "");
    let wh = sessionsync::warehouse::Warehouse::new(&s.warehouse).unwrap();
    wh.migrate().await.unwrap();
    let c = db.client().await;
    seed(&c, &["a1", "a2", "a3", "a4", "a5"], 4000).await;
    c.batch_execute(
        "INSERT INTO sync_runs (source, account, stream, status)
         SELECT s, 'a' || (g % 5), st, 'succeeded' FROM generate_series(1, 20000) g,
                unnest(ARRAY['takecontrol', 'mluvii']) s, unnest(ARRAY['sessions', 'audit']) st;
         INSERT INTO audits (source, account, day, run_id, listed, stored, missing, gone, complete)
         SELECT 'takecontrol', 'a' || (g % 5), current_date - (g % 30), g, 1, 1, 0, 0, true
           FROM generate_series(1, 20000) g;
         ANALYZE",
    )
    .await
    .unwrap();
    seed(&c, &["newacct"], 4000).await;
    let range = "'newacct', now() - interval '2 days', now() - interval '1 day'";
    let ids = format!(
        "'newacct', '{{{}}}'::bigint[]",
        (1000..=1500)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    for inv in sessionsync::sources::inventories() {
        let t = inv.table();
        let sql = sessionsync::warehouse::audits::stored_sql(t);
        assert_probes(
            &c,
            &sql,
            "text, timestamptz, timestamptz",
            range,
            &[],
            "_audit_idx",
        )
        .await;
        let found = c
            .query_one(
                &format!(
                    "EXPLAIN (FORMAT JSON) {}",
                    sql.replace("$1", "'newacct'")
                        .replace("$2", "now() - interval '2 days'")
                        .replace("$3", "now() - interval '1 day'")
                ),
                &[],
            )
            .await
            .unwrap()
            .get::<_, Value>(0)
            .to_string();
        assert!(
            found.contains(&format!("{} >=", t.start)) && found.contains("(account)::text = "),
            "both the account and the range are index conditions: {found}"
        );
        assert!(!found.contains("\"Filter\""), "{found}");
        for sql in [
            sessionsync::warehouse::audits::held_sql(t),
            sessionsync::warehouse::audits::restore_sql(t),
        ] {
            assert_probes_whole_key(&c, &sql, "text, bigint[]", &ids, &["account", t.id]).await;
        }
    }
    // What status and the daemon read of an account's audits: an index entered by account.
    use sessionsync::warehouse::audits::{
        FIRST_RUN_SQL, LAST_COMPLETE_SQL, LAST_RUN_SQL, RUN_FOUND_SQL,
    };
    for sql in [LAST_COMPLETE_SQL, LAST_RUN_SQL] {
        assert_probes(
            &c,
            sql,
            "text, text",
            "'takecontrol', 'newacct'",
            &["source", "account"],
            "_idx",
        )
        .await;
    }
    assert_probes(
        &c,
        RUN_FOUND_SQL,
        "text, text, bigint",
        "'takecontrol', 'newacct', 19999",
        &["source", "account"],
        "_idx",
    )
    .await;
    for sql in [FIRST_RUN_SQL, sessionsync::warehouse::LAST_RUN_STARTED_SQL] {
        let found = c
            .query_one(
                &format!(
                    "EXPLAIN (FORMAT JSON) {}",
                    sql.replace("$1", "'takecontrol'")
                        .replace("$2", "'newacct'")
                        .replace("$3", "'audit'")
                ),
                &[],
            )
            .await
            .unwrap()
            .get::<_, Value>(0)
            .to_string();
        assert!(
            found.contains("sync_runs_stream_idx") && found.contains("sync_runs_pkey"),
            "{found}"
        );
        assert!(!found.contains("\"Filter\""), "{found}");
    }
}

#[tokio::test]
async fn the_renormalize_statements_are_bounded_under_stale_statistics() {
    let db = TestDb::new().await;
    // Every source, under a policy that hashes the transcripts (Take Control then reads its
    // stored chat lines and links too); the hosts are never asked.
    let now = Utc::now();
    let toml = format!(
        "[privacy]\nhash_key = \"0123456789abcdef0123456789abcdef-plans\"\ntranscripts = \"hash\"\n{}{}{}",
        tc_toml("http://127.0.0.1:9", "k", now, ""),
        ml_account_toml("http://127.0.0.1:9", "newacct", ("u", "s"), now, ""),
        so_account_toml("http://127.0.0.1:9", "newacct", ""),
    )
    .replace("account = \"acme\"", "account = \"newacct\"");
    let h = Harness::new(&settings(&db, &toml)).await;
    let c = db.client().await;
    seed(&c, &["a1", "a2", "a3", "a4", "a5"], 4000).await;
    c.batch_execute("ANALYZE").await.unwrap();
    seed(&c, &["newacct"], 4000).await;
    assert_eq!(h.sources.len(), 3);
    for s in &h.sources {
        let rebuild = s.rebuild().expect("every source rebuilds");
        let t = rebuild.table();
        let documents = rebuild.documents();
        for from in [false, true] {
            let sql = sessionsync::engine::renormalize::read_sql(t, &documents, from);
            let (types, args) = match from {
                false => ("text, bigint, bigint", "'newacct', 1000, 500"),
                true => (
                    "text, bigint, bigint, timestamptz",
                    "'newacct', 1000, 500, now() - interval '1 day'",
                ),
            };
            // The session table by its key (the account, then a range of ids); the stored
            // children each by their session's whole key.
            assert_probes(&c, &sql, types, args, &["account"], "").await;
            let text = explain(&c, &sql, types, args).await;
            assert!(
                text.contains(&format!("{}_pkey", t.table)) && !text.contains("\"Sort\""),
                "read in key order, no sort: {text}"
            );
            if documents.len() > 1 && t.table == "takecontrol_sessions" {
                assert!(
                    text.contains("takecontrol_chat_messages_pkey")
                        && text.contains("takecontrol_video_links_pkey"),
                    "{text}"
                );
            }
        }
    }
    // SuperOffice's closed_by: the sessions by their address, their messages by session.
    let ids = format!(
        "'newacct', '{{{}}}'::int[]",
        (1000..=1500)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_probes(
        &c,
        sessionsync::sources::superoffice::store::CLOSED_BY,
        "text, int[]",
        &ids,
        &["account", "chat_session_id"],
        "",
    )
    .await;
}

/// The generic plan of `sql` as JSON text.
async fn explain(c: &tokio_postgres::Client, sql: &str, types: &str, args: &str) -> String {
    c.batch_execute("DEALLOCATE ALL").await.unwrap();
    c.batch_execute(&format!("PREPARE probe({types}) AS {sql}"))
        .await
        .unwrap();
    c.batch_execute("SET plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    let text = c
        .query_one(&format!("EXPLAIN (FORMAT JSON) EXECUTE probe({args})"), &[])
        .await
        .unwrap()
        .get::<_, Value>(0)
        .to_string();
    c.batch_execute("RESET plan_cache_mode; DEALLOCATE ALL")
        .await
        .unwrap();
    text
}
