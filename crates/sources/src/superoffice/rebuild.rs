//! SuperOffice's rows rebuilt from the stored ChatSessionEntity (`raw`; `sessionsync
//! renormalize`); their write sets `closed_by` again from the stored messages.

use super::normalize::{self, Normalized};
use super::source::SuperOffice;
use crate::engine::{Batch, Rebuild, SessionTable, StoredRecord};

impl Rebuild for SuperOffice {
    fn table(&self) -> SessionTable {
        super::personal::INVENTORY.table()
    }

    fn documents(&self) -> Vec<String> {
        vec!["t.raw".into()]
    }

    fn rebuild(&self, records: Vec<StoredRecord>) -> Batch {
        let (mut sessions, mut rejected, mut nulled) = (Vec::new(), Vec::new(), Vec::new());
        for r in records {
            let raw = r.documents.into_iter().next().unwrap_or_default();
            let h = normalize::fingerprint(&raw);
            match normalize::normalize(raw, r.vetted, &r.id.to_string(), self.settings.timezone) {
                Normalized::Session(mut s, n) => {
                    s.content_hash = h;
                    nulled.extend(n);
                    sessions.push(*s);
                }
                Normalized::Rejected(x) => rejected.push(x),
            }
        }
        Batch::new(super::store::ChatRows {
            sessions,
            messages: Vec::new(),
            unchanged: 0,
            topics: Vec::new(),
        })
        .with_rejected(rejected)
        .with_nulled(nulled)
    }
}
