//! The BI layer over all three connectors at once: `support_sessions`, the daily views, and
//! every example query of `docs/warehouse.md`.

use crate::helpers::*;
use chrono::{DateTime, TimeDelta, Utc};
use sessionsync::engine::Outcome;
use sessionsync_sim::{mluvii, superoffice, takecontrol};
use tokio_util::sync::CancellationToken;

/// A database synced from the three simulators (kept alive with it).
struct Synced {
    db: TestDb,
    _sims: (
        takecontrol::TakeControlSim,
        mluvii::MluviiSim,
        superoffice::SuperOfficeSim,
    ),
}

async fn synced() -> Synced {
    let db = TestDb::new().await;
    let now = Utc::now();
    let from: DateTime<Utc> = now - TimeDelta::days(2);
    let tc = takecontrol::TakeControlSim::start(
        "k",
        takecontrol::generate(1, 30, from, now - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    let ml = mluvii::MluviiSim::start(
        "u",
        "s",
        mluvii::generate(2, 16, from, now - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    let creds = superoffice::SimCredentials {
        ticket: "t".into(),
        app_token: "a".into(),
        bearer: "b".into(),
    };
    let so = superoffice::SuperOfficeSim::start(
        creds,
        superoffice::generate(3, 12, from, now - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    let toml = format!(
        r#"{}
[[mluvii]]
account = "m"
base_url = "{}"
client_id = "u"
client_secret = "s"
start = "{start}"
requests_per_second = 500

[[superoffice]]
account = "so"
base_url = "{}"
ticket = "t"
app_token = "a"
start = "{start}"
requests_per_second = 500
"#,
        tc_toml(&tc.base_url(), "k", from, ""),
        ml.base_url(),
        so.base_url(),
        start = from.to_rfc3339(),
    );
    let h = Harness::new(&settings(&db, &toml)).await;
    assert_eq!(h.sources.len(), 3);
    for s in &h.sources {
        let r = h
            .engine
            .run_once(s, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(r.outcome, Outcome::Succeeded, "{}: {:?}", r.key, r.error);
        // And the completeness audit of the days before today, as the daemon does daily.
        let a = h
            .engine
            .audit(
                s,
                sessionsync::engine::AuditOptions {
                    days: sessionsync::engine::Days::last(3, Utc::now()),
                    dry_run: false,
                },
                &CancellationToken::new(),
                &|_| {},
            )
            .await
            .unwrap();
        assert_eq!(a.outcome, Outcome::Succeeded, "{}: {:?}", a.key, a.error);
        assert_eq!((a.missing(), a.gone()), (0, 0), "{}", a.key);
    }
    Synced {
        db,
        _sims: (tc, ml, so),
    }
}

#[tokio::test]
async fn support_sessions_has_one_row_per_session_of_every_system() {
    let s = synced().await;
    let c = s.db.client().await;
    let rows = strings(
        &c,
        "SELECT source || ':' || channel || ':' || count(*) FROM support_sessions GROUP BY source, channel ORDER BY 1",
    )
    .await;
    assert_eq!(
        rows,
        vec![
            "mluvii:chat:12",
            "mluvii:phone:4",
            "superoffice:chat:12",
            "takecontrol:remote:30"
        ]
    );
    // Waits and after-call work come through where the systems have them.
    let acw = count(
        &c,
        "support_sessions WHERE source = 'mluvii' AND after_work_seconds > 0",
    )
    .await;
    assert!(acw > 0);
    let agents = count(
        &c,
        "support_sessions WHERE source = 'mluvii' AND agent LIKE 'Op%'",
    )
    .await;
    assert!(agents > 0);
}

#[tokio::test]
async fn views_agree_with_their_base_tables() {
    let s = synced().await;
    let c = s.db.client().await;
    for (source, table) in [
        ("takecontrol", "takecontrol_sessions"),
        ("superoffice", "superoffice_chat_sessions"),
        ("mluvii", "mluvii_sessions"),
    ] {
        let view = count(&c, &format!("support_sessions WHERE source = '{source}'")).await;
        assert_eq!(view, count(&c, table).await, "{source}");
    }
    let daily: i64 = c
        .query_one("SELECT sum(sessions)::bigint FROM support_daily", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        daily,
        count(&c, "support_sessions WHERE requested_at IS NOT NULL").await
    );
    let ops: i64 = c
        .query_one(
            "SELECT sum(sessions)::bigint FROM mluvii_operator_daily",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ops, count(&c, "mluvii_session_operators").await);
    // A session the vendor deleted stays in support_sessions, flagged, and leaves the counts.
    c.batch_execute(
        "UPDATE mluvii_sessions SET source_deleted_at = now()
          WHERE session_id = (SELECT min(session_id) FROM mluvii_session_operators)",
    )
    .await
    .unwrap();
    let flagged = count(&c, "support_sessions WHERE source_deleted_at IS NOT NULL").await;
    assert_eq!(flagged, 1);
    let daily_after: i64 = c
        .query_one("SELECT sum(sessions)::bigint FROM support_daily", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(daily_after, daily - 1);
    let ops_after: i64 = c
        .query_one(
            "SELECT sum(sessions)::bigint FROM mluvii_operator_daily",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ops_after < ops);
}

#[tokio::test]
async fn every_example_query_of_the_docs_runs_and_returns_rows() {
    let s = synced().await;
    let c = s.db.client().await;
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/warehouse.md")).unwrap();
    let queries: Vec<&str> = doc
        .split("```sql")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert!(queries.len() >= 5, "found {} queries", queries.len());
    for q in queries {
        let rows = c
            .query(q, &[])
            .await
            .unwrap_or_else(|e| panic!("{q}\nfailed: {e}"));
        assert!(!rows.is_empty(), "no rows from\n{q}");
    }
}

#[tokio::test]
async fn the_grafana_sessions_dashboard_queries_run() {
    let s = synced().await;
    let c = s.db.client().await;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docker/grafana/dashboards/sessions.json"
    );
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut n = 0;
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let raw = t["rawSql"].as_str().unwrap();
            // Grafana's macro, as Grafana expands it for "all time".
            let mut q = String::new();
            let mut rest = raw;
            while let Some(i) = rest.find("$__timeFilter(") {
                q.push_str(&rest[..i]);
                let after = &rest[i + "$__timeFilter(".len()..];
                let mut depth = 1;
                let end = after
                    .char_indices()
                    .find(|&(_, ch)| {
                        depth += match ch {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .unwrap()
                    .0;
                q.push_str(&format!("({} IS NOT NULL)", &after[..end]));
                rest = &after[end + 1..];
            }
            q.push_str(rest);
            let rows = c
                .query(&q, &[])
                .await
                .unwrap_or_else(|e| panic!("{q}\nfailed: {e}"));
            assert!(!rows.is_empty(), "no rows from {q}");
            n += 1;
        }
    }
    assert!(n >= 5);
}
