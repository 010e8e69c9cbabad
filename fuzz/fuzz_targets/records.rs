//! Fuzzes every record parser with arbitrary bytes: Take Control JSON and XML bodies (then
//! normalization), mluvii detail + routing, SuperOffice entities and messages. None may panic,
//! hang or expand an entity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionsync::sources::{mluvii, superoffice, takecontrol};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let cx = sessionsync::engine::SourceContext::offline(
        "takecontrol",
        "f",
        sessionsync::privacy::Privacy::keep_all(),
    );
    for records in [
        takecontrol::normalize::records_from_json(&text),
        takecontrol::normalize::records_from_xml(&text),
    ]
    .into_iter()
    .flatten()
    {
        for (i, r) in records.into_iter().enumerate() {
            let _ = takecontrol::normalize::normalize(r, &i.to_string(), chrono_tz::Europe::Prague, &cx);
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let (detail, routing) = match &v {
            serde_json::Value::Array(a) if a.len() == 2 => (a[0].clone(), a[1].clone()),
            other => (other.clone(), serde_json::Value::Null),
        };
        let _ = mluvii::normalize::normalize(detail, routing, "f");
        let mut so = v.clone();
        superoffice::normalize::strip_secrets(&mut so);
        let _ = superoffice::normalize::normalize(so, "f", chrono_tz::UTC);
        let _ = superoffice::normalize::message(&v, 1, chrono_tz::UTC);
        let _ = mluvii::list::list_items(&text);
    }
    for part in text.split_whitespace().take(8) {
        let _ = mluvii::durations::parse_iso_duration(part);
    }
});
