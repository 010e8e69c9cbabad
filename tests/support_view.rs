//! The cross-system view `support_sessions` over all three connectors at once.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use sessionsync::engine::Outcome;
use sessionsync::sim::{mluvii, superoffice, takecontrol};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn support_sessions_has_one_row_per_session_of_every_system() {
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
            .run_once(&**s, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(r.outcome, Outcome::Succeeded, "{}: {:?}", r.key, r.error);
    }
    let c = db.client().await;
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
