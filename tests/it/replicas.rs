//! Replicas as Kubernetes runs them (deploy/kubernetes): two `sessionsync run` processes with
//! the same config on one warehouse, three simulators, twelve accounts at the default 5
//! requests/s. Every stream runs once per cron instant across both, no window is fetched twice,
//! and after `kill -9` of one mid-run the other finishes its streams from the committed
//! watermarks at the next instant. Also: the manifests' config is a valid sessionsync config.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use crate::helpers::*;
use chrono::{DateTime, TimeDelta, Utc};
use sessionsync_sim::Fault;
use sessionsync_sim::superoffice::SimCredentials;
use sessionsync_sim::{mluvii, superoffice, takecontrol};

/// The schedule period, seconds: long enough for the first backfill at 5 requests/s.
const PERIOD: i64 = 20;
const ML_CLIENT: (&str, &str) = ("replica-api-user", "replica-secret");

/// The twelve accounts: four per source, all on their source's simulator, default rate limits.
fn config(tc: &str, so: &str, ml: &str, start: DateTime<Utc>) -> String {
    let schedule = format!("schedule = \"*/{PERIOD} * * * * *\"");
    let mut s =
        "[warehouse]\nurl = \"${DATABASE_URL}\"\n[server]\nlisten = \"127.0.0.1:0\"\n".to_string();
    for i in 0..4 {
        s.push_str(&format!(
            "\n[[takecontrol]]\naccount = \"tc{i}\"\nbase_url = \"{tc}\"\napi_key = \"k\"\nstart = \"{}\"\nwindow = \"1d\"\nlookback = \"1m\"\n{schedule}\n",
            start.to_rfc3339()
        ));
        s.push_str(&so_account_toml(so, &format!("so{i}"), &schedule));
        s.push_str(&ml_account_toml(
            ml,
            &format!("ml{i}"),
            ML_CLIENT,
            start,
            &format!("lookback = \"1m\"\n{schedule}"),
        ));
    }
    s
}

/// The run ids a daemon's JSON log names (every line of a run carries its `run_id`).
fn run_ids(log: &Path) -> BTreeSet<i64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.split("\"run_id\":")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// `(run_id, account, started_at, status)` of every run (none before the daemons migrated).
async fn runs(c: &tokio_postgres::Client) -> Vec<(i64, String, DateTime<Utc>, String)> {
    c.query(
        "SELECT run_id, account, started_at, status FROM sync_runs ORDER BY run_id",
        &[],
    )
    .await
    .unwrap_or_default()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// The cron instant a run started at belongs to.
fn instant_of(t: DateTime<Utc>) -> i64 {
    t.timestamp() - t.timestamp().rem_euclid(PERIOD)
}

/// Polls until `done` holds of the runs, for at most `limit`.
async fn wait_runs(
    c: &tokio_postgres::Client,
    limit: Duration,
    done: impl Fn(&[(i64, String, DateTime<Utc>, String)]) -> bool,
) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if done(&runs(c).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn per_account(c: &tokio_postgres::Client, table: &str) -> HashMap<String, i64> {
    c.query(
        &format!("SELECT account, count(*) FROM {table} GROUP BY account"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test]
async fn two_daemons_share_the_streams_and_one_finishes_after_the_other_is_killed() {
    let now = Utc::now();
    let start = now - TimeDelta::days(2);
    let tc = takecontrol::TakeControlSim::start(
        "k",
        takecontrol::generate(5, 200, start, now - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    let so = superoffice::SuperOfficeSim::start(
        SimCredentials {
            ticket: SO_TICKET.into(),
            app_token: SO_APP_TOKEN.into(),
            bearer: "unused".into(),
        },
        superoffice::generate(13, 8, start, now - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    let ml = mluvii::MluviiSim::start(
        ML_CLIENT.0,
        ML_CLIENT.1,
        mluvii::generate(11, 10, start, now - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    let db = TestDb::new().await;
    let cfg = TempConfig::new(&config(
        &tc.base_url(),
        &so.base_url(),
        &ml.base_url(),
        start,
    ));
    let file = cfg.path();
    let logs = [
        file.with_file_name("replica-a.log"),
        file.with_file_name("replica-b.log"),
    ];
    let env = [("DATABASE_URL", Some(db.url.as_str()))];
    let mut daemons = [
        spawn_daemon(&["run"], &file, &env, &logs[0]),
        spawn_daemon(&["run"], &file, &env, &logs[1]),
    ];
    let c = db.client().await;

    // The first instant: every account's backfill, each run by one of the two.
    assert!(
        wait_runs(&c, Duration::from_secs(2 * PERIOD as u64), |r| {
            r.iter().filter(|r| r.3 == "succeeded").count() >= 12
        })
        .await,
        "the first instant's runs did not all succeed: {:?}\n{}",
        runs(&c).await,
        std::fs::read_to_string(&logs[0]).unwrap_or_default()
    );
    let first = runs(&c).await;
    let i1 = instant_of(first[0].2);
    assert_eq!(first.len(), 12, "a stream ran twice: {first:?}");
    assert!(first.iter().all(|r| instant_of(r.2) == i1));
    // No window fetched twice: each simulator answered exactly the requests the runs recorded.
    let requests: HashMap<String, i64> = c
        .query(
            "SELECT source, sum(requests)::bigint FROM sync_runs GROUP BY source",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(requests["takecontrol"] as usize, tc.log().len());
    assert_eq!(requests["superoffice"] as usize, so.log().len());
    assert_eq!(requests["mluvii"] as usize, ml.log().len());
    let ids = [run_ids(&logs[0]), run_ids(&logs[1])];
    let split: Vec<usize> = ids
        .iter()
        .map(|ids| first.iter().filter(|r| ids.contains(&r.0)).count())
        .collect();
    assert_eq!(split[0] + split[1], 12, "runs not found in either log");
    eprintln!(
        "first instant: replica A ran {} streams, replica B {}",
        split[0], split[1]
    );

    // New data for the second instant, and a vendor slow enough that its runs are caught
    // mid-way.
    // Sessions after the first instant's watermarks.
    let recent = Utc::now() - TimeDelta::seconds(12);
    for n in 0..20 {
        let at = (recent + TimeDelta::milliseconds(n * 500)).naive_utc();
        tc.upsert(takecontrol::SimSession::new(
            900_000 + n,
            at,
            Some(at + TimeDelta::seconds(1)),
        ));
    }
    for n in 0..4 {
        ml.upsert(ml_session_in_acw(
            800_000 + n,
            recent + TimeDelta::seconds(n * 2),
            TimeDelta::seconds(9),
            "00:04:58",
        ));
    }
    for sim in [tc.faults(), so.faults(), ml.faults()] {
        sim.push(Fault::Delay(Duration::from_millis(1500)), 10_000);
    }
    let i2 = i1 + PERIOD;
    let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
    let wait_until = (at(i2) + TimeDelta::milliseconds(2500) - Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait_until).await;
    let running: Vec<i64> = runs(&c)
        .await
        .into_iter()
        .filter(|r| r.3 == "running" && instant_of(r.2) == i2)
        .map(|r| r.0)
        .collect();
    let ids = [run_ids(&logs[0]), run_ids(&logs[1])];
    let holds: Vec<usize> = ids
        .iter()
        .map(|ids| running.iter().filter(|r| ids.contains(r)).count())
        .collect();
    let victim = if holds[0] >= holds[1] { 0 } else { 1 };
    let survivor = 1 - victim;
    assert!(
        holds[victim] > 0,
        "no run in progress to kill at the second instant: {running:?}"
    );
    let killed_accounts: BTreeSet<String> = runs(&c)
        .await
        .into_iter()
        .filter(|r| running.contains(&r.0) && ids[victim].contains(&r.0))
        .map(|r| r.1)
        .collect();
    std::process::Command::new("kill")
        .args(["-9", &daemons[victim].id().unwrap().to_string()])
        .status()
        .unwrap();
    daemons[victim].wait().await.unwrap();
    let killed_at = Utc::now();
    for sim in [tc.faults(), so.faults(), ml.faults()] {
        sim.clear();
    }
    eprintln!(
        "second instant: killed replica {} with {} runs in progress ({killed_accounts:?})",
        ["A", "B"][victim],
        holds[victim]
    );

    // The survivor finishes them at the next instant, within one period of it.
    let i3 = i2 + PERIOD;
    let finished_by_survivor = wait_runs(
        &c,
        (at(i3 + PERIOD) - Utc::now()).to_std().unwrap_or_default(),
        |r| {
            let theirs = run_ids(&logs[survivor]);
            killed_accounts.iter().all(|a| {
                r.iter().any(|r| {
                    &r.1 == a
                        && r.3 == "succeeded"
                        && instant_of(r.2) == i3
                        && theirs.contains(&r.0)
                })
            })
        },
    )
    .await;
    assert!(
        finished_by_survivor,
        "the survivor did not finish the killed replica's streams within one period: {:?}\n{}",
        runs(&c).await,
        std::fs::read_to_string(&logs[survivor]).unwrap_or_default()
    );
    assert!(Utc::now() - killed_at < TimeDelta::seconds(2 * PERIOD));
    // Let the other streams of that instant finish too.
    assert!(
        wait_runs(&c, Duration::from_secs(PERIOD as u64), |r| {
            r.iter()
                .filter(|r| instant_of(r.2) == i3 && r.3 == "succeeded")
                .count()
                == 12
        })
        .await,
        "{:?}",
        runs(&c).await
    );
    // Every stream ran once per instant across both replicas (the killed runs included). One
    // exception: a run the kill cut short (failed) may be followed in the same instant by the
    // survivor's, when the survivor was already waiting for that stream's claim; that is the
    // recovery of one cut-short run, not a second sync.
    let all = runs(&c).await;
    let mut per_instant: BTreeMap<(i64, String), Vec<&str>> = BTreeMap::new();
    for r in &all {
        per_instant
            .entry((instant_of(r.2), r.1.clone()))
            .or_default()
            .push(r.3.as_str());
    }
    for instant in [i1, i2, i3] {
        for acct in all.iter().map(|r| &r.1).collect::<BTreeSet<_>>() {
            let statuses = per_instant
                .get(&(instant, acct.clone()))
                .cloned()
                .unwrap_or_default();
            let recovered = instant == i2
                && killed_accounts.contains(acct)
                && statuses == ["failed", "succeeded"];
            assert!(
                statuses.len() == 1 || recovered,
                "{acct} at {}: {statuses:?} in {all:?}",
                at(instant)
            );
        }
    }
    // Nothing lost: every account holds every session its vendor has.
    let tc_rows = per_account(&c, "takecontrol_sessions").await;
    let so_rows = per_account(&c, "superoffice_chat_sessions").await;
    let ml_rows = per_account(&c, "mluvii_sessions").await;
    for i in 0..4 {
        assert_eq!(
            tc_rows[&format!("tc{i}")],
            tc.visible_sessions().len() as i64
        );
        assert_eq!(so_rows[&format!("so{i}")], so.chats().len() as i64);
        assert_eq!(ml_rows[&format!("ml{i}")], ml.sessions().len() as i64);
    }
    let theirs = run_ids(&logs[survivor]);
    eprintln!(
        "third instant: the survivor ran {} of 12 streams",
        all.iter()
            .filter(|r| instant_of(r.2) == i3 && theirs.contains(&r.0))
            .count()
    );
}

/// The config the Kubernetes manifests ship (base and example overlay) is one sessionsync
/// accepts, with every `${VAR}` the example Secret provides.
#[test]
fn the_kubernetes_configs_are_valid_sessionsync_configs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let secret = std::fs::read_to_string(root.join("overlays/example/secret.yaml")).unwrap();
    let keys: BTreeSet<String> = secret
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim().to_string()))
        .filter(|k| k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(keys.contains("DATABASE_URL") && keys.len() >= 8, "{keys:?}");
    for file in ["base/sessionsync.toml", "overlays/example/sessionsync.toml"] {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let lookup = |name: &str| {
            keys.contains(name).then(|| match name {
                "DATABASE_URL" => "postgres://u@db.example:5432/w".to_string(),
                "SESSIONSYNC_HASH_KEY" => "0123456789abcdef".repeat(4),
                // A real key (the simulator's test key): the config reader parses it.
                "SO_PRIVATE_KEY" => {
                    sessionsync_sim::superoffice_online::APPLICATION_KEY_PEM.to_string()
                }
                _ => "placeholder-value".to_string(),
            })
        };
        let settings = sessionsync::config::Settings::from_toml(
            &path,
            &text,
            &lookup,
            &sessionsync::sources::configs(),
        )
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(settings.server.listen.port(), 9898, "{file}");
        assert_eq!(
            settings.webhooks.as_ref().map(|w| w.listen.port()),
            Some(8080),
            "{file}"
        );
        assert_eq!(settings.enabled().count(), 3, "{file}");
    }
}
