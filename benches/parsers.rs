//! Parser throughput (MB/s): the CHAT_INFO transcript parser alone; Take Control legacy XML
//! with nested chat transcripts; and the REST JSON body, each read into records and normalized
//! (transcripts included).
//! `cargo bench --bench parsers`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sessionsync::sources::takecontrol::normalize;

const SESSIONS: usize = 2000;

fn chat_xml(i: usize) -> String {
    let mut x = String::from("<CHAT>");
    for m in 0..5 {
        x.push_str(&format!(
            "<MESSAGE><DATE>2024-01-05 10:{:02}:{:02}</DATE><FROM>{}</FROM><TYPE>{}</TYPE><TEXT>Message {m} of session {i}: the printer &amp; the &lt;drive&gt; are gone, please help</TEXT></MESSAGE>",
            m,
            i % 60,
            if m % 2 == 0 { "tech@acme.example" } else { "Customer" },
            if m % 2 == 0 { "tech" } else { "customer" },
        ));
    }
    x.push_str("</CHAT>");
    x
}

fn xml_body() -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><response><nrequests>2000</nrequests><requests>",
    );
    for i in 0..SESSIONS {
        x.push_str(&format!(
            "<request><ID>{}</ID><COMPUTER_NAME>PC-{i}</COMPUTER_NAME><TECH_NAME>Tess Tech</TECH_NAME><CUSTOMER_NAME>Customer {i}</CUSTOMER_NAME><CUSTOMER_EMAIL>c{i}@example.com</CUSTOMER_EMAIL><DATE_START>2024-01-05 10:00:00</DATE_START><DATE_END>2024-01-05 10:30:00</DATE_END><HAS_VIDEOS>false</HAS_VIDEOS><CHAT_INFO>{}</CHAT_INFO><VIDEO_LINKS></VIDEO_LINKS></request>",
            100_000 + i,
            chat_xml(i)
        ));
    }
    x.push_str("</requests></response>");
    x
}

fn json_body() -> String {
    let records: Vec<serde_json::Value> = (0..SESSIONS)
        .map(|i| {
            serde_json::json!({
                "id": 100_000 + i, "computer_name": format!("PC-{i}"), "tech_name": "Tess Tech",
                "customer_name": format!("Customer {i}"), "customer_email": format!("c{i}@example.com"),
                "date_start": "2024-01-05 10:00:00", "date_end": "2024-01-05 10:30:00",
                "has_videos": false, "chat_info": chat_xml(i), "video_links": "",
            })
        })
        .collect();
    serde_json::json!({"result": "SUCCESS", "details": {"nrequests": SESSIONS, "requests": records}})
        .to_string()
}

/// Normalizes records; the number that became sessions.
fn sessions(records: Vec<serde_json::Map<String, serde_json::Value>>, tz: chrono_tz::Tz) -> usize {
    let cx = sessionsync::engine::SourceContext::offline(
        "takecontrol",
        "a",
        sessionsync::privacy::Privacy::keep_all(),
    );
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| normalize::normalize(r, &i.to_string(), tz, &cx))
        .filter(|n| matches!(n, normalize::Normalized::Session(..)))
        .count()
}

fn bench(c: &mut Criterion) {
    let tz = chrono_tz::UTC;
    let mut group = c.benchmark_group("takecontrol");
    let transcripts: Vec<String> = (0..SESSIONS).map(chat_xml).collect();
    group.throughput(Throughput::Bytes(
        transcripts.iter().map(|t| t.len() as u64).sum(),
    ));
    group.bench_function("CHAT_INFO transcript → messages", |b| {
        b.iter(|| {
            transcripts
                .iter()
                .map(|t| normalize::transcript(t, tz).unwrap().len())
                .sum::<usize>()
        })
    });
    let xml = xml_body();
    group.throughput(Throughput::Bytes(xml.len() as u64));
    // Reference: quick-xml's reader alone over the same transcripts, doing nothing with the
    // events. The transcript parser cannot be faster than this.
    group.bench_function("CHAT_INFO quick-xml events only (reference)", |b| {
        b.iter(|| {
            let mut events = 0usize;
            for t in &transcripts {
                let mut r = quick_xml::Reader::from_str(t);
                while !matches!(r.read_event().unwrap(), quick_xml::events::Event::Eof) {
                    events += 1;
                }
            }
            events
        })
    });
    group.bench_function("legacy XML with transcripts → sessions", |b| {
        b.iter(|| sessions(normalize::records_from_xml(&xml).unwrap(), tz))
    });
    let json = json_body();
    group.throughput(Throughput::Bytes(json.len() as u64));
    group.bench_function("REST JSON → sessions", |b| {
        b.iter(|| sessions(normalize::records_from_json(&json).unwrap(), tz))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
