//! mluvii's rows rebuilt from the stored SessionModel and routing history (`raw`,
//! `routing_raw`; `sessionsync renormalize`): operators, routing events and durations with them.
//! A session whose fingerprint is the stored one is left out of the batch (unchanged).

use super::normalize::{self, Normalized};
use super::source::Mluvii;
use crate::engine::{Batch, Rebuild, SessionTable, StoredRecord};

impl Rebuild for Mluvii {
    fn table(&self) -> SessionTable {
        super::personal::INVENTORY.table()
    }

    fn documents(&self) -> Vec<String> {
        vec![
            "t.raw".into(),
            "t.routing_raw".into(),
            "to_jsonb(t.content_hash)".into(),
        ]
    }

    fn rebuild(&self, records: Vec<StoredRecord>) -> Batch {
        let (mut sessions, mut rejected, mut nulled) = (Vec::new(), Vec::new(), Vec::new());
        for r in records {
            let mut docs = r.documents.into_iter();
            let (detail, routing, stored) = (
                docs.next().unwrap_or_default(),
                docs.next().unwrap_or_default(),
                docs.next().unwrap_or_default(),
            );
            match normalize::normalize(detail, routing, r.vetted, &r.id.to_string()) {
                // The same fingerprint: its row and children would not change; not sent.
                Normalized::Session(s, _) if stored.as_str() == Some(s.content_hash.as_str()) => {}
                Normalized::Session(s, n) => {
                    nulled.extend(n);
                    sessions.push(*s);
                }
                Normalized::Rejected(x) => rejected.push(x),
            }
        }
        Batch::new(super::store::SessionRows(sessions))
            .with_rejected(rejected)
            .with_nulled(nulled)
    }
}
