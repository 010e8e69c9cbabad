//! Hostile input for every source: each record lands cleaned or is set aside with its reason,
//! the others land, nothing crashes, and no entity is ever expanded.

use std::time::{Duration, Instant};

use crate::helpers::*;
use chrono::{TimeDelta, Utc};
use serde_json::json;
use sessionsync::engine::Outcome;
use sessionsync_sim::Fault;
use sessionsync_sim::takecontrol::TakeControlSim;

const KEY: &str = "hostile-key";

fn rest_body(records: Vec<serde_json::Value>) -> Vec<u8> {
    json!({"result": "SUCCESS", "details": {"nrequests": records.len(), "requests": records}})
        .to_string()
        .into_bytes()
}

fn rec(id: serde_json::Value, start: &str, end: &str) -> serde_json::Value {
    json!({"id": id, "date_start": start, "date_end": end, "customer_name": "ok",
           "chat_info": null, "video_links": null})
}

async fn harness(extra: &str) -> (TestDb, TakeControlSim, Harness) {
    let db = TestDb::new().await;
    let sim = TakeControlSim::start(KEY, vec![]).await.unwrap();
    // One window: the whole range fits a day.
    let start = Utc::now() - TimeDelta::hours(20);
    let h = Harness::new(&settings(&db, &tc_toml(&sim.base_url(), KEY, start, extra))).await;
    (db, sim, h)
}

fn reasons(rows: &[String]) -> Vec<String> {
    let mut r: Vec<String> = rows
        .iter()
        .map(|x| x.split(':').next().unwrap().to_string())
        .collect();
    r.sort();
    r
}

#[tokio::test]
async fn take_control_json_corpus() {
    let (db, sim, h) = harness("").await;
    let day = (Utc::now() - TimeDelta::hours(2))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let later = (Utc::now() - TimeDelta::hours(1))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let huge = "x".repeat(1_500_000);
    let mut records = vec![
        rec(json!(1), &day, &later),
        // duplicate id in one response: the later one wins
        rec(json!(2), &day, &later),
        json!({"id": 2, "date_start": day, "date_end": later, "customer_name": "second copy"}),
        // wrong types
        json!({"id": {"nested": true}, "date_start": day}),
        json!({"id": 4, "date_start": day, "has_videos": "maybe"}),
        // invalid dates
        json!({"id": 5, "date_start": "2024-13-45 99:99:99"}),
        json!({"id": 6, "date_start": day, "date_end": "yesterday-ish"}),
        // an impossible duration lands with NULL, counted
        rec(json!(7), &later, &day),
        // a string over 1 MB, NUL bytes, an unknown field, a number as a string
        json!({"id": "8", "date_start": day, "notes": huge, "customer_name": "nul\u{0}byte", "brand_new_field": [1, 2]}),
        // no id at all
        json!({"date_start": day}),
        // not an object
        json!("just a string"),
    ];
    records.push(rec(json!(9), &day, &later));
    sim.faults().push(Fault::Raw(rest_body(records)), 1);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Partial, "{:?}", r.error);
    let c = db.client().await;
    let ids = strings(
        &c,
        "SELECT session_id::text FROM takecontrol_sessions ORDER BY session_id",
    )
    .await;
    assert_eq!(ids, vec!["1", "2", "7", "8", "9"]);
    assert_eq!(
        strings(&c, "SELECT customer_name FROM takecontrol_sessions WHERE session_id IN (2, 8) ORDER BY session_id").await,
        vec!["second copy", "nulbyte"]
    );
    assert_eq!(
        count(
            &c,
            "takecontrol_sessions WHERE session_id = 7 AND duration_seconds IS NULL"
        )
        .await,
        1
    );
    assert_eq!(count(&c, "takecontrol_sessions WHERE session_id = 8 AND length(notes) = 1500000 AND raw ? 'brand_new_field'").await, 1);
    let rejected = strings(&c, "SELECT reason FROM rejected_records").await;
    assert_eq!(
        reasons(&rejected),
        // (a bare string is a record without an ID)
        vec![
            "invalid_date_end",
            "invalid_date_start",
            "invalid_has_videos",
            "invalid_id",
            "missing_id",
            "missing_id"
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>(),
        "{rejected:?}"
    );
    assert!(h.metrics.encode().contains("reason=\"negative_duration\""));

    // Invalid UTF-8 in a body: replaced, not fatal.
    let mut bytes = rest_body(vec![rec(json!(10), &day, &later)]);
    let at = bytes.windows(2).position(|w| w == b"ok").unwrap();
    bytes[at] = 0xff;
    sim.faults().push(Fault::Raw(bytes), 1);
    let r = h.sync().await;
    assert_ne!(r.outcome, Outcome::Failed, "{:?}", r.error);
    assert_eq!(
        count(&c, "takecontrol_sessions WHERE session_id = 10").await,
        1
    );
}

#[tokio::test]
async fn take_control_xml_bombs_are_not_expanded() {
    let (db, sim, h) = harness("api = \"legacy\"").await;
    let mut bomb = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        bomb.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    bomb.push_str("]><response><nrequests>1</nrequests><requests><request><ID>1</ID><DATE_START>2020-01-01 00:00:00</DATE_START><NOTES>&lol9;</NOTES></request></requests></response>");
    sim.faults().push(Fault::Raw(bomb.into_bytes()), 1);
    let t = Instant::now();
    let r = h.sync().await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    // Either the record is set aside or its NOTES keep the reference unexpanded: never a
    // billion "lol"s.
    let c = db.client().await;
    let biggest: Option<i32> = c
        .query_one(
            "SELECT max(length(raw::text)) FROM takecontrol_sessions",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(biggest.unwrap_or(0) < 10_000, "{biggest:?} / {:?}", r.error);
    let payloads: Option<i32> = c
        .query_one(
            "SELECT max(length(payload::text)) FROM rejected_records",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(payloads.unwrap_or(0) < 10_000);
    // Malformed XML: the broken record is set aside, the rest land.
    let day = (Utc::now() - TimeDelta::hours(2)).format("%Y-%m-%d %H:%M:%S");
    let xml = format!(
        "<?xml version=\"1.0\"?><response><nrequests>3</nrequests><requests>\
         <request><ID>21</ID><DATE_START>{day}</DATE_START><NOTES>fine &amp; dandy</NOTES></request>\
         <request><ID>22</ID><DATE_START>{day}</DATE_START><NOTES>broken <b>tag</NOTES></request>\
         <request><ID>23</ID><DATE_START>{day}</DATE_START><NOTES><![CDATA[<ok>]]></NOTES></request>\
         </requests></response>"
    );
    sim.faults().push(Fault::Raw(xml.into_bytes()), 1);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Partial, "{:?}", r.error);
    assert_eq!(
        strings(&c, "SELECT notes FROM takecontrol_sessions WHERE session_id IN (21, 23) ORDER BY session_id").await,
        vec!["fine & dandy", "<ok>"]
    );
    assert_eq!(
        count(&c, "rejected_records WHERE record_key = '22'").await,
        1
    );
}

#[tokio::test]
async fn a_fifty_megabyte_body_lands() {
    let (db, sim, h) = harness("").await;
    let day = (Utc::now() - TimeDelta::hours(2))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let later = (Utc::now() - TimeDelta::hours(1))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let notes = "n".repeat(50_000);
    let records: Vec<_> = (0..1000)
        .map(|i| json!({"id": 1000 + i, "date_start": day, "date_end": later, "notes": notes}))
        .collect();
    let body = rest_body(records);
    assert!(body.len() > 50_000_000);
    sim.faults().push(Fault::Raw(body), 1);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let c = db.client().await;
    assert_eq!(count(&c, "takecontrol_sessions").await, 1000);
}

#[tokio::test]
async fn mluvii_and_superoffice_hostile_records_are_set_aside_and_the_rest_land() {
    use sessionsync_sim::{mluvii, superoffice};
    let db = TestDb::new().await;
    let now = Utc::now();
    let start = now - TimeDelta::hours(20);
    let ml = mluvii::MluviiSim::start(
        "u",
        "s",
        mluvii::generate(1, 8, start, now - TimeDelta::hours(2)),
    )
    .await
    .unwrap();
    let so = superoffice::SuperOfficeSim::start(
        superoffice::SimCredentials {
            ticket: "t".into(),
            app_token: "a".into(),
            bearer: "b".into(),
        },
        superoffice::generate(1, 6, start, now - TimeDelta::hours(2)),
    )
    .await
    .unwrap();
    // mluvii: the first detail answered is hostile (the list goes first; its rows are abridged,
    // so each session's detail is read).
    ml.set_abridged_list(true);
    ml.faults().push(Fault::Delay(Duration::ZERO), 1);
    ml.faults().push(
        Fault::Raw(
            json!({"id": 500_000, "created": "not a time", "status": "WHATEVER", "length": "PT-"})
                .to_string()
                .into_bytes(),
        ),
        1,
    );
    // SuperOffice: the two lists (new and changed chats), then one entity with wrong types and
    // a NUL.
    so.faults().push(Fault::Delay(Duration::ZERO), 2);
    so.faults().push(
        Fault::Raw(
            json!({"ChatSessionId": 1000, "TopicId": "seven", "CustomerName": "a\u{0}b", "SessionKey": "sk-hostile"})
                .to_string()
                .into_bytes(),
        ),
        1,
    );
    let toml = format!(
        r#"[warehouse]
url = "${{DATABASE_URL}}"
[[mluvii]]
account = "m"
base_url = "{}"
client_id = "u"
client_secret = "s"
start = "{start}"
concurrency = 1
requests_per_second = 500
[[superoffice]]
account = "so"
base_url = "{}"
ticket = "t"
app_token = "a"
start = "{start}"
concurrency = 1
requests_per_second = 500
"#,
        ml.base_url(),
        so.base_url(),
        start = start.to_rfc3339()
    );
    let h = Harness::new(&settings(&db, &toml)).await;
    for s in &h.sources {
        let r = h
            .engine
            .run_once(s, &tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(r.outcome, Outcome::Partial, "{}: {:?}", r.key, r.error);
    }
    let c = db.client().await;
    assert_eq!(count(&c, "mluvii_sessions").await, 7);
    assert_eq!(count(&c, "superoffice_chat_sessions").await, 5);
    let reasons = strings(
        &c,
        "SELECT source || ':' || split_part(reason, ':', 1) FROM rejected_records ORDER BY 1",
    )
    .await;
    assert_eq!(
        reasons,
        vec!["mluvii:invalid_created", "superoffice:invalid_topicid"]
    );
    assert_eq!(
        count(
            &c,
            "rejected_records WHERE payload::text LIKE '%sk-hostile%'"
        )
        .await,
        0,
        "no SessionKey in rejected payloads"
    );
}
