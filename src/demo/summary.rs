//! What the demo prints at the end: rows per table (each source's, as its inventory names
//! them), a few duration figures, and the query to try next.

use crate::warehouse::Warehouse;

/// The query the demo suggests first: waits per source and channel as medians.
pub const FIRST_QUERY: &str = "SELECT source, channel, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY wait_seconds) AS median_wait_s FROM sessionsync.support_sessions GROUP BY 1, 2 ORDER BY 1, 2";
/// Why it takes the median.
pub const FIRST_QUERY_WHY: &str = "Medians, not averages: a few chats that waited for days (SuperOffice's samples) would skew an average.";

/// Rows per table and a few duration figures, for people.
pub async fn summary(wh: &Warehouse, database: &str) -> anyhow::Result<String> {
    let conn = wh.conn().await?;
    let mut out = String::from(
        "\nWarehouse (schema sessionsync; customer names, e-mails and phones stored hashed: docs/privacy.md, section 2):\n",
    );
    let mut cells = Vec::new();
    // Each source's tables, as its inventory names them, then the engine's own.
    let tables = crate::sources::SOURCES
        .iter()
        .filter_map(|k| k.inventory)
        .flat_map(|i| i.tables())
        .chain(["support_sessions", "rejected_records", "sync_runs"]);
    for table in tables {
        // Table names are the sources' constants.
        let n: i64 = conn
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await?
            .get(0);
        cells.push(format!("{table:<26} {n:>7} rows"));
    }
    // Two to a line: the summary fits a terminal's screen with the run lines above it.
    for pair in cells.chunks(2) {
        out.push_str(&format!("  {}\n", pair.join("    ")));
    }
    let row = conn
        .query_one(
            "SELECT count(duration_seconds),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_seconds),
                    percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_seconds)
               FROM takecontrol_sessions",
            &[],
        )
        .await?;
    let (n, p50, p90): (i64, Option<f64>, Option<f64>) = (row.get(0), row.get(1), row.get(2));
    out.push_str(&format!(
        "\nTake Control session duration: {n} sessions, median {:.0} s, p90 {:.0} s\n",
        p50.unwrap_or(0.0),
        p90.unwrap_or(0.0)
    ));
    let row = conn
        .query_one(
            "SELECT count(*),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY in_queue_seconds),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY waiting_seconds),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY active_seconds),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY acw_seconds)
               FROM mluvii_session_durations",
            &[],
        )
        .await?;
    let median = |i: usize| row.get::<_, Option<f64>>(i).unwrap_or(0.0);
    out.push_str(&format!(
        "mluvii: {} sessions, median in queue {:.0} s, waiting {:.0} s, active {:.0} s, after-call work {:.0} s\n",
        row.get::<_, i64>(0),
        median(1),
        median(2),
        median(3),
        median(4)
    ));
    let row = conn
        .query_one(
            "SELECT source, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY handle_seconds)
               FROM support_sessions GROUP BY source ORDER BY count(*) DESC LIMIT 1",
            &[],
        )
        .await;
    if let Ok(row) = row {
        out.push_str(&format!(
            "support_sessions (all systems): largest source {} with {} sessions, median handle time {:.0} s\n",
            row.get::<_, String>(0),
            row.get::<_, i64>(1),
            row.get::<_, Option<f64>>(2).unwrap_or(0.0)
        ));
    }
    out.push_str(&format!(
        "\n{FIRST_QUERY_WHY}\nNext: psql -d {database} -c '{FIRST_QUERY}'\n"
    ));
    Ok(out)
}
