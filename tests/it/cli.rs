//! The binary as operators run it: exit codes, messages, and no secret in any output.

use crate::helpers::*;
use chrono::{TimeDelta, Utc};
use sessionsync_sim::Fault;
use sessionsync_sim::takecontrol::{SimMessage, SimSession, TakeControlSim, generate};

const SECRET: &str = "SECRET-KEY-zz9-do-not-print";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn sessionsync(args: &[&str], config: &str, db_url: Option<&str>) -> Out {
    let file = TempConfig::new(config);
    let o = sessionsync_command(
        args,
        &file.path(),
        &[
            ("DATABASE_URL", db_url),
            ("TC_KEY", Some(SECRET)),
            ("RUST_LOG", Some("debug")),
        ],
    )
    .output()
    .await
    .unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    }
}

fn config(base_url: &str, extra: &str) -> String {
    format!(
        r#"[warehouse]
url = "${{DATABASE_URL}}"

[[takecontrol]]
account = "acme"
base_url = "{base_url}"
api_key = "${{TC_KEY}}"
start = "{}"
requests_per_second = 100
max_retries = 1
max_retry_wait = "1s"
{extra}
"#,
        (Utc::now() - TimeDelta::days(2)).to_rfc3339()
    )
}

#[tokio::test]
async fn bad_configs_exit_2_naming_the_key() {
    let good = config("http://127.0.0.1:9", "");
    let cases = [
        (
            good.replace("account = \"acme\"\n", ""),
            "missing field `account`",
        ),
        (
            good.replace("max_retries = 1", "schedule = \"*/5 * *\""),
            "takecontrol[0].schedule",
        ),
        (
            good.replace("max_retries = 1", "colour = \"red\""),
            "unknown field `colour`",
        ),
        (
            good.replace("${TC_KEY}", "${NOPE_UNSET_VAR}"),
            "NOPE_UNSET_VAR",
        ),
        (
            good.replace("max_retries = 1", "timezone = \"Mars/Olympus\""),
            "takecontrol[0].timezone",
        ),
        (
            good.replace("http://127.0.0.1:9", "ftp://x"),
            "takecontrol[0].base_url",
        ),
    ];
    for (text, words) in cases {
        let o = sessionsync(&["sync"], &text, Some("postgres://postgres@127.0.0.1:9/x")).await;
        assert_eq!(o.code, 2, "{words}: {}", o.stderr);
        assert!(
            o.stderr.contains(words) && o.stderr.contains("sessionsync.toml"),
            "{words}: {}",
            o.stderr
        );
        assert!(!o.stderr.contains(SECRET));
    }
    let o = sessionsync(&["sync"], "", None).await;
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("warehouse.url"), "{}", o.stderr);

    // Previous hash keys need the key that replaced them, and must look like keys.
    for (privacy, words) in [
        (
            "[privacy]\nprevious_hash_keys = [\"0123456789abcdef0123456789abcdef-old\"]\n",
            "privacy.previous_hash_keys",
        ),
        (
            "[privacy]\nhash_key = \"0123456789abcdef0123456789abcdef-new\"\nprevious_hash_keys = [\"short\"]\n",
            "privacy.previous_hash_keys[0]",
        ),
    ] {
        let o = sessionsync(
            &["sync"],
            &format!("{good}\n{privacy}"),
            Some("postgres://postgres@127.0.0.1:9/x"),
        )
        .await;
        assert_eq!(o.code, 2, "{words}: {}", o.stderr);
        assert!(o.stderr.contains(words), "{words}: {}", o.stderr);
        assert!(
            !o.stderr.contains("abcdef-old") && !o.stderr.contains("short\""),
            "{}",
            o.stderr
        );
    }
    // An unknown sslmode, in the file or in DATABASE_URL: a config error naming both, no password.
    let in_file = good.replace(
        "url = \"${DATABASE_URL}\"",
        "url = \"postgres://u:pw-Q7@127.0.0.1:9/x?sslmode=sometimes\"",
    );
    let o = sessionsync(&["sync"], &in_file, None).await;
    assert_eq!(o.code, 2, "{}", o.stderr);
    for words in ["sessionsync.toml", "warehouse.url", "sslmode `sometimes`"] {
        assert!(o.stderr.contains(words), "{words}: {}", o.stderr);
    }
    assert!(!o.stderr.contains("pw-Q7"), "{}", o.stderr);
    let o = sessionsync(
        &["sync"],
        &good,
        Some("postgres://u:pw-Q7@127.0.0.1:9/x?sslmode=sometimes"),
    )
    .await;
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("warehouse.url (from DATABASE_URL)") && !o.stderr.contains("pw-Q7"),
        "{}",
        o.stderr
    );
    // `${VAR` without its `}` is an error naming the key, not a literal.
    let o = sessionsync(
        &["sync"],
        &good.replace("${TC_KEY}", "${TC_KEY"),
        Some("postgres://postgres@127.0.0.1:9/x"),
    )
    .await;
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("takecontrol[0].api_key") && o.stderr.contains("closing `}`"),
        "{}",
        o.stderr
    );
    // A substituted value in a key where it does not fit: the key and the variable, not the value.
    let o = sessionsync(
        &["sync"],
        &good.replace("http://127.0.0.1:9", "${TC_KEY}"),
        Some("postgres://postgres@127.0.0.1:9/x"),
    )
    .await;
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("takecontrol[0].base_url") && o.stderr.contains("${TC_KEY}"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains(SECRET), "the value leaked: {}", o.stderr);
}

#[tokio::test]
async fn sync_exit_codes_status_and_no_secret_anywhere() {
    let db = TestDb::new().await;
    let start = Utc::now() - TimeDelta::days(2);
    let sim = TakeControlSim::start(
        SECRET,
        generate(11, 200, start, Utc::now() - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    // Legacy flavour: the key travels in the query string, the worst case for leaks.
    let cfg = config(&sim.base_url(), "api = \"legacy\"");

    let o = sessionsync(&["sync"], &cfg, Some(&db.url)).await;
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(
        o.stdout
            .contains("takecontrol/acme/sessions: succeeded — 200 written"),
        "{}",
        o.stdout
    );

    sim.faults().push(Fault::Status(503), 2);
    let o = sessionsync(
        &["sync", "--source", "takecontrol", "--account", "acme"],
        &cfg,
        Some(&db.url),
    )
    .await;
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(
        o.stdout.contains("failed") && o.stdout.contains("2 attempts"),
        "{}",
        o.stdout
    );
    let failed_output = format!("{}{}", o.stdout, o.stderr);

    let mut bad = SimSession::new(
        1,
        Utc::now().naive_utc() - TimeDelta::hours(3),
        Some(Utc::now().naive_utc() - TimeDelta::hours(2)),
    );
    bad.chat.push(SimMessage {
        date: bad.start,
        from: "x".into(),
        kind: "t".into(),
        text: "]]><".into(),
        cdata: true,
    });
    sim.upsert(bad);
    let o = sessionsync(&["sync"], &cfg, Some(&db.url)).await;
    assert_eq!(
        o.code, 3,
        "a rejected record makes the run partial: {}",
        o.stdout
    );

    let o = sessionsync(&["status", "--json"], &cfg, Some(&db.url)).await;
    assert_eq!(o.code, 0);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v[0]["source"], "takecontrol");
    assert_eq!(v[0]["last_run_status"], "partial");
    let o2 = sessionsync(&["status"], &cfg, Some(&db.url)).await;
    assert!(
        o2.stdout.contains("takecontrol/acme/sessions"),
        "{}",
        o2.stdout
    );

    let o3 = sessionsync(&["sync", "--source", "nope"], &cfg, Some(&db.url)).await;
    assert_eq!(o3.code, 2);

    for text in [&failed_output, &o.stdout, &o.stderr, &o2.stdout] {
        assert!(!text.contains(SECRET), "secret leaked: {text}");
    }
    // No table holds it either.
    let c = db.client().await;
    let hits: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM takecontrol_sessions t WHERE t::text LIKE '%' || $1 || '%')
                  + (SELECT count(*) FROM sync_runs t WHERE t::text LIKE '%' || $1 || '%')
                  + (SELECT count(*) FROM rejected_records t WHERE t::text LIKE '%' || $1 || '%')
                  + (SELECT count(*) FROM sync_state t WHERE t::text LIKE '%' || $1 || '%')",
            &[&SECRET],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(hits, 0);
}

#[tokio::test]
async fn migrate_is_idempotent_and_comments_every_column() {
    let db = TestDb::new().await;
    let cfg = config("http://127.0.0.1:9", "");
    let o = sessionsync(&["migrate"], &cfg, Some(&db.url)).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("applied"), "{}", o.stdout);
    let o = sessionsync(&["migrate"], &cfg, Some(&db.url)).await;
    assert!(o.stdout.contains("up to date"), "{}", o.stdout);
    let c = db.client().await;
    let missing = strings(
        &c,
        "SELECT c.table_name || '.' || c.column_name FROM information_schema.columns c
          WHERE c.table_schema = 'sessionsync'
            AND col_description(format('%I.%I', c.table_schema, c.table_name)::regclass, c.ordinal_position) IS NULL",
    )
    .await;
    assert!(missing.is_empty(), "columns without COMMENT: {missing:?}");
}

#[tokio::test]
async fn demo_once_starts_a_private_postgres_and_lands_all_three_sources() {
    let dir = std::env::temp_dir().join(format!("sessionsync-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessionsync"))
        .args(["demo", "--once", "--private-postgres", "--sessions", "80"])
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("starting a private one"), "{stdout}");
    for table in [
        "takecontrol_sessions",
        "superoffice_chat_sessions",
        "mluvii_sessions",
        "mluvii_session_durations",
    ] {
        // The summary shows two tables to a line: `name  N rows`.
        let words: Vec<&str> = stdout.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| *w == table)
            .unwrap_or_else(|| panic!("no {table} in {stdout}"));
        let n: i64 = words[at + 1].parse().unwrap();
        assert!(n > 0, "{table}: {n}");
    }
}

const ML_SECRET: &str = "ML-SECRET-do-not-print-44";
const SO_TICKET: &str = "SO-TICKET-do-not-print-55";

#[tokio::test]
async fn check_reports_the_one_bad_credential_and_passes_the_others() {
    use sessionsync_sim::{mluvii, superoffice};
    let db = TestDb::new().await;
    let tc = TakeControlSim::start(SECRET, vec![]).await.unwrap();
    let ml = mluvii::MluviiSim::start("api-user", "the-right-secret", vec![])
        .await
        .unwrap();
    let so = superoffice::SuperOfficeSim::start(
        superoffice::SimCredentials {
            ticket: SO_TICKET.into(),
            app_token: "app".into(),
            bearer: "b".into(),
        },
        superoffice::seed_samples(),
    )
    .await
    .unwrap();
    let cfg = format!(
        r#"{}
[[mluvii]]
account = "ml"
base_url = "{}"
client_id = "api-user"
client_secret = "{ML_SECRET}"
start = "2024-01-01T00:00:00Z"

[[superoffice]]
account = "so"
base_url = "{}"
ticket = "{SO_TICKET}"
app_token = "app"
start = "2024-01-01T00:00:00Z"
"#,
        config(&tc.base_url(), ""),
        ml.base_url(),
        so.base_url()
    );
    let o = sessionsync(&["check"], &cfg, Some(&db.url)).await;
    assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
    let line = |item: &str| {
        o.stdout
            .lines()
            .find(|l| l.contains(item))
            .unwrap_or_else(|| panic!("no {item} in {}", o.stdout))
            .to_string()
    };
    assert!(line("config").starts_with("OK"), "{}", o.stdout);
    assert!(line("warehouse").starts_with("OK"), "{}", o.stdout);
    assert!(line("takecontrol/acme").starts_with("OK"), "{}", o.stdout);
    assert!(line("superoffice/so").starts_with("OK"), "{}", o.stdout);
    let ml_line = line("mluvii/ml");
    assert!(
        ml_line.starts_with("FAIL") && ml_line.contains("client_id `api-user`"),
        "{ml_line}"
    );
    for s in [SECRET, ML_SECRET, SO_TICKET] {
        assert!(!o.stdout.contains(s) && !o.stderr.contains(s), "{s} leaked");
    }
    // All good: exit 0. Accounts whose credentials see no session in 30 days are warned about
    // (these simulators hold none, or only the seed samples of years ago), naming what the
    // vendor's user or key needs; a warning is not a failure.
    let good = cfg.replace(ML_SECRET, "the-right-secret");
    let o = sessionsync(&["check"], &good, Some(&db.url)).await;
    assert_eq!(o.code, 0, "{}", o.stdout);
    for (item, words) in [
        ("takecontrol/acme", "private key"),
        ("mluvii/ml", "right to read sessions"),
        ("superoffice/so", "right to see chat sessions"),
    ] {
        assert!(
            o.stdout
                .lines()
                .any(|l| l.starts_with("WARN") && l.contains(item) && l.contains(words)),
            "{item}: {}",
            o.stdout
        );
    }
}

#[tokio::test]
async fn backfill_lands_a_past_range_and_leaves_the_watermark() {
    let db = TestDb::new().await;
    let now = Utc::now();
    let sim = TakeControlSim::start(
        SECRET,
        generate(5, 120, now - TimeDelta::days(2), now - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    let cfg = config(&sim.base_url(), "");
    let o = sessionsync(&["sync"], &cfg, Some(&db.url)).await;
    assert_eq!(o.code, 0, "{}", o.stdout);
    let c = db.client().await;
    let before = strings(&c, "SELECT watermark::text FROM sync_state").await;
    let total = count(&c, "takecontrol_sessions").await;
    // Lose a day of rows, as a careless DELETE would.
    let from = now - TimeDelta::days(2);
    let to = now - TimeDelta::days(1);
    c.execute(
        "DELETE FROM takecontrol_sessions WHERE started_at >= $1 AND started_at < $2",
        &[&from, &to],
    )
    .await
    .unwrap();
    assert!(count(&c, "takecontrol_sessions").await < total);
    let o = sessionsync(
        &[
            "backfill",
            "--source",
            "takecontrol",
            "--from",
            &from.to_rfc3339(),
            "--to",
            &to.to_rfc3339(),
        ],
        &cfg,
        Some(&db.url),
    )
    .await;
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("backfill progress"), "{}", o.stderr);
    assert_eq!(count(&c, "takecontrol_sessions").await, total);
    assert_eq!(
        strings(&c, "SELECT watermark::text FROM sync_state").await,
        before,
        "the watermark did not move"
    );
    let o = sessionsync(
        &[
            "backfill",
            "--source",
            "takecontrol",
            "--from",
            "2024-13-01",
        ],
        &cfg,
        Some(&db.url),
    )
    .await;
    assert_eq!(o.code, 2, "{}", o.stderr);
}

/// Every command and a full sync of all three systems with distinctive secrets: none of them
/// appears in any output, log line, `/metrics`, error text or table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_output_logs_metrics_or_tables() {
    use sessionsync_sim::{mluvii, superoffice};
    const ML: &str = "MLSECRET-0x7a7a-zz";
    const TICKET: &str = "SOTICKET-0x5b5b-zz";
    const APP: &str = "SOAPP-0x6c6c-zz";
    let db = TestDb::new().await;
    let now = Utc::now();
    let start = now - TimeDelta::days(1);
    let tc = TakeControlSim::start(SECRET, generate(3, 50, start, now - TimeDelta::hours(1)))
        .await
        .unwrap();
    let ml = mluvii::MluviiSim::start(
        "user",
        ML,
        mluvii::generate(3, 16, start, now - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    let so = superoffice::SuperOfficeSim::start(
        superoffice::SimCredentials {
            ticket: TICKET.into(),
            app_token: APP.into(),
            bearer: "unused".into(),
        },
        superoffice::seed_samples(),
    )
    .await
    .unwrap();
    // One failure each, so that error texts are exercised too.
    tc.faults().push(Fault::Status(500), 1);
    ml.faults().push(Fault::Status(503), 1);
    so.faults().push(Fault::VendorError("boom".into()), 1);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        r#"{}
[[mluvii]]
account = "ml"
base_url = "{}"
client_id = "user"
client_secret = "{ML}"
start = "{start}"
requests_per_second = 500

[[superoffice]]
account = "so"
base_url = "{}"
ticket = "{TICKET}"
app_token = "{APP}"
start = "2000-01-01T00:00:00Z"
requests_per_second = 500

[server]
listen = "127.0.0.1:{port}"
"#,
        config(&tc.base_url(), "schedule = \"* * * * * *\""),
        ml.base_url(),
        so.base_url(),
        start = start.to_rfc3339(),
    );
    let mut outputs = Vec::new();
    for args in [
        &["migrate"][..],
        &["check"],
        &["sync"],
        &["sync"],
        &["status"],
        &["status", "--json"],
        &[
            "backfill",
            "--source",
            "mluvii",
            "--from",
            &start.to_rfc3339(),
        ],
    ] {
        let o = sessionsync(args, &cfg, Some(&db.url)).await;
        assert_ne!(o.code, 2, "{args:?}: {}", o.stderr);
        outputs.push(format!("{args:?}\n{}\n{}", o.stdout, o.stderr));
    }
    // The daemon, and its /metrics.
    let dir = std::env::temp_dir().join(format!("sessionsync-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("c.toml"), &cfg).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessionsync"))
        .args(["run", "--config"])
        .arg(dir.join("c.toml"))
        .env("DATABASE_URL", &db.url)
        .env("TC_KEY", SECRET)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        // A file, not a pipe: an unread pipe fills up and blocks the daemon's log writes.
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let mut metrics = String::new();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            metrics = r.text().await.unwrap();
            if metrics.contains("sessionsync_rows_written_total") {
                break;
            }
        }
    }
    assert!(
        metrics.contains("sessionsync_rows_written_total"),
        "{metrics}"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .expect("stops within 10 s")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    outputs.push(metrics);
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    assert!(log.contains("window committed"), "{log}");
    outputs.push(log);
    let _ = std::fs::remove_dir_all(&dir);

    let c = db.client().await;
    let tables = strings(
        &c,
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'sessionsync' AND table_type = 'BASE TABLE'",
    )
    .await;
    for secret in [SECRET, ML, TICKET, APP, "sim-token-", "\"SessionKey\""] {
        for (i, text) in outputs.iter().enumerate() {
            assert!(!text.contains(secret), "{secret} in output {i}: {text}");
        }
        for t in &tables {
            let n: i64 = c
                .query_one(
                    &format!("SELECT count(*) FROM {t} x WHERE strpos(x::text, $1) > 0"),
                    &[&secret],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 0, "{secret} stored in {t}");
        }
    }
    assert!(
        count(&c, "mluvii_sessions").await > 0 && count(&c, "superoffice_chat_sessions").await > 0
    );
}

#[tokio::test]
async fn bad_config_of_every_source_exits_2_naming_the_key() {
    let base = r#"[warehouse]
url = "${DATABASE_URL}"
[[mluvii]]
account = "m"
base_url = "https://app.mluvii.com"
client_id = "u"
client_secret = "s3cr3t-value"
start = "2024-01-01T00:00:00Z"
[[superoffice]]
account = "so"
base_url = "https://crm.example.com/SuperOffice"
ticket = "t1ck3t-value"
app_token = "app"
start = "2024-01-01T00:00:00Z"
"#;
    let cases = [
        (
            base.replace("concurrency", "x").replace(
                "client_id = \"u\"\n",
                "client_id = \"u\"\nconcurrency = 0\n",
            ),
            "mluvii[0].concurrency",
        ),
        (
            base.replace("client_secret = \"s3cr3t-value\"\n", ""),
            "client_secret",
        ),
        (
            base.replace("client_secret = \"s3cr3t-value\"", "client_secret = \"\""),
            "mluvii[0].client_secret",
        ),
        (
            base.replace("https://app.mluvii.com", "not a url"),
            "mluvii[0].base_url",
        ),
        (
            base.replace(
                "client_id = \"u\"\n",
                "client_id = \"u\"\nmax_response_mb = 0\n",
            ),
            "mluvii[0].max_response_mb",
        ),
        (
            base.replace(
                "start = \"2024-01-01T00:00:00Z\"\n[[superoffice]]",
                "start = \"yesterday\"\n[[superoffice]]",
            ),
            "mluvii[0].start",
        ),
        (
            base.replace("app_token = \"app\"\n", ""),
            "superoffice[0].app_token",
        ),
        (
            base.replace(
                "app_token = \"app\"\n",
                "app_token = \"app\"\nbearer = \"b\"\n",
            ),
            "superoffice[0].ticket",
        ),
        (
            base.replace(
                "app_token = \"app\"\n",
                "app_token = \"app\"\nmode = \"everything\"\n",
            ),
            "superoffice[0].mode",
        ),
        (
            base.replace(
                "https://crm.example.com/SuperOffice",
                "https://online.superoffice.com/Cust1",
            ),
            "superoffice[0].base_url",
        ),
        (base.replace(
                "base_url = \"https://crm.example.com/SuperOffice\"\nticket = \"t1ck3t-value\"\n",
                "environment = \"online\"\ncontext_identifier = \"Cust1\"\nsystem_user_token = \"t1ck3t-value\"\n",
            ), "superoffice[0].private_key"),
        (
            base.replace(
                "base_url = \"https://crm.example.com/SuperOffice\"\nticket = \"t1ck3t-value\"\n",
                "environment = \"online\"\ncontext_identifier = \"Cust1\"\nsystem_user_token = \"t1ck3t-value\"\n",
            ).replace(
                "context_identifier = \"Cust1\"\n",
                "context_identifier = \"Cust1\"\nprivate_key = \"-----BEGIN RSA PRIVATE KEY-----s3cr3t-value\"\n",
            ),
            "superoffice[0].private_key",
        ),
        (
            base.replace(
                "base_url = \"https://crm.example.com/SuperOffice\"\nticket = \"t1ck3t-value\"\n",
                "environment = \"online\"\ncontext_identifier = \"Cust1\"\nsystem_user_token = \"t1ck3t-value\"\n",
            ).replace("environment = \"online\"", "environment = \"production\""),
            "superoffice[0].environment",
        ),
        (
            base.replace(
                "app_token = \"app\"\n",
                "app_token = \"app\"\npage_size = 100000\n",
            ),
            "superoffice[0].page_size",
        ),
        (
            base.replace("account = \"so\"", "account = \"s o\""),
            "superoffice[0].account",
        ),
        (
            base.replace(
                "[warehouse]\n",
                "[warehouse]\nschema = \"Robert'); DROP TABLE x;--\"\n",
            ),
            "warehouse.schema",
        ),
        (
            base.replace(
                "[warehouse]\n",
                "[server]\nlisten = \"everywhere\"\n[warehouse]\n",
            ),
            "server.listen",
        ),
    ];
    for (text, key) in cases {
        let o = sessionsync(&["sync"], &text, Some("postgres://postgres@127.0.0.1:9/x")).await;
        assert_eq!(o.code, 2, "{key}: {}", o.stderr);
        assert!(o.stderr.contains(key), "{key}: {}", o.stderr);
        assert!(
            !o.stderr.contains("s3cr3t-value") && !o.stderr.contains("t1ck3t-value"),
            "{}",
            o.stderr
        );
    }
}

/// Issue 15's acceptance, on a real pseudo-terminal (`script`, util-linux): the demo speaks
/// plainly: at most 40 lines (the audit's lines included), no server NOTICE, no per-window line, live bars cleared.
#[tokio::test]
async fn demo_once_on_a_terminal_is_short_and_plain() {
    // What a person sees: the demo in a real terminal emulator (tmux, 132x50), read back from
    // its screen (redrawn bars and cleared lines count as the terminal shows them).
    let database = format!("sessionsync_demo_tty_{}", std::process::id());
    let socket = format!("sessionsync-test-{}", std::process::id());
    let done = std::env::temp_dir().join(format!("{socket}.done"));
    let _ = std::fs::remove_file(&done);
    let command = format!(
        "env -u RUST_LOG DATABASE_URL='{}' {} demo --once --sessions 200 --database {database}; echo $? > {}; sleep 600",
        admin_url(),
        env!("CARGO_BIN_EXE_sessionsync"),
        done.display()
    );
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .expect("tmux runs (Debian package tmux)")
    };
    let started = tmux(&["new-session", "-d", "-x", "132", "-y", "50", &command]);
    assert!(started.status.success(), "{started:?}");
    let mut code = None;
    for _ in 0..1200 {
        if let Ok(c) = std::fs::read_to_string(&done) {
            code = Some(c.trim().to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let screen =
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-S", "-"]).stdout).into_owned();
    tmux(&["kill-server"]);
    let _ = std::fs::remove_file(&done);
    let failed = drop_all(&[format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")]);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(code.as_deref(), Some("0"), "{screen}");
    let lines: Vec<&str> = screen.lines().collect();
    let used = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |i| i + 1);
    assert!(used <= 40, "{used} lines:\n{screen}");
    for line in &lines[..used] {
        assert!(
            !line.contains("] "),
            "a bar frame was left: {line}\n{screen}"
        );
        for log in [" INFO ", " WARN ", " DEBUG ", "\"level\"", "NOTICE"] {
            assert!(!line.contains(log), "a log line: {line}\n{screen}");
        }
    }
    assert!(!screen.contains("window committed"), "{screen}");
    assert!(
        screen.contains("values nulled: negative_duration"),
        "{screen}"
    );
    assert!(
        screen.contains("in the warehouse") && screen.contains("without a sync run"),
        "the webhook push is shown: {screen}"
    );
}

#[tokio::test]
async fn a_closed_pipe_ends_a_command_quietly() {
    let db = TestDb::new().await;
    let file = TempConfig::new(&format!(
        "{}\n[privacy]\nhash_key = \"0123456789abcdef0123456789abcdef-test\"\n",
        config("http://127.0.0.1:9", "")
    ));
    let env = [
        ("DATABASE_URL", Some(db.url.as_str())),
        ("TC_KEY", Some(SECRET)),
    ];
    let migrated = sessionsync_command(&["migrate"], &file.path(), &env)
        .output()
        .await
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    for args in [
        &["erase", "--email", "nobody@example.com", "--dry-run"][..],
        &["privacy", "inventory"][..],
        &["status"][..],
    ] {
        let mut child = sessionsync_command(args, &file.path(), &env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before anything is written (`… | head -0`).
        drop(child.stdout.take());
        let out = child.wait_with_output().await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

/// Off a terminal (a log, a CI job), `sync` says where a long-running stream is at least every
/// 10 s, so that it never looks hung.
#[tokio::test]
async fn sync_off_a_terminal_prints_a_progress_line_every_10_s() {
    let db = TestDb::new().await;
    let now = Utc::now();
    let sim = TakeControlSim::start(
        SECRET,
        generate(5, 20, now - TimeDelta::days(1), now - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    // The first answer takes 12 s.
    sim.faults().push(
        sessionsync_sim::Fault::Delay(std::time::Duration::from_secs(12)),
        1,
    );
    let o = sessionsync(
        &["sync"],
        &config(&sim.base_url(), "timeout = \"30s\""),
        Some(&db.url),
    )
    .await;
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(
        o.stdout.lines().any(
            |l| l.starts_with("takecontrol/acme/sessions: running for 1") && l.contains("requests")
        ),
        "{}",
        o.stdout
    );
}
