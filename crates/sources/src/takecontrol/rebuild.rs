//! Take Control's rows rebuilt from the stored `raw` (`sessionsync renormalize`): the record as it
//! was stored (under its row's policy, so the policy is not applied twice) read again, its chat
//! lines and video links with it. Where the policy hashed or dropped the transcript in `raw` (the
//! chat lines were scrubbed one by one when they were read), the stored chat lines and links are
//! kept as they are.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::normalize::{self, Normalized};
use super::personal;
use super::source::TakeControl;
use super::transcript::ChatMessage;
use crate::engine::{Batch, Rebuild, SessionTable, StoredRecord};
use crate::privacy::Policy;

/// The stored chat lines and links of session `t`, as JSON (each through its session's key).
const STORED_CHILDREN: &str = "jsonb_build_object(
  'messages', (SELECT coalesce(jsonb_agg(jsonb_build_array(m.sent_at, m.author, m.author_type, m.message) ORDER BY m.seq), '[]')
                 FROM takecontrol_chat_messages m WHERE m.account = t.account AND m.session_id = t.session_id),
  'videos', (SELECT coalesce(jsonb_agg(v.url ORDER BY v.seq), '[]')
               FROM takecontrol_video_links v WHERE v.account = t.account AND v.session_id = t.session_id))";

impl TakeControl {
    /// Whether `raw` holds the transcript and links as received: the policy keeps them whole.
    fn raw_holds_transcripts(&self) -> bool {
        let p = &self.cx.privacy.policies;
        personal::RECORD
            .iter()
            .filter(|f| f.path == "chat_info" || f.path == "video_links")
            .all(|f| p.strictest(f.classes) == Policy::Keep)
    }
}

impl Rebuild for TakeControl {
    fn table(&self) -> SessionTable {
        personal::INVENTORY.table()
    }

    fn documents(&self) -> Vec<String> {
        match self.raw_holds_transcripts() {
            true => vec!["t.raw".into()],
            false => vec!["t.raw".into(), STORED_CHILDREN.into()],
        }
    }

    fn rebuild(&self, records: Vec<StoredRecord>) -> Batch {
        let tz = self.settings.timezone;
        let from_raw = self.raw_holds_transcripts();
        let (mut sessions, mut rejected, mut nulled) = (Vec::new(), Vec::new(), Vec::new());
        let mut index: HashMap<i64, usize> = HashMap::new();
        for r in records {
            let mut docs = r.documents.into_iter();
            let Some(Value::Object(raw)) = docs.next() else {
                continue;
            };
            let key = r.id.to_string();
            // The transcript in `raw` is a hash (or gone): the record is read without it, its
            // fingerprint stays that of the stored record, and its children are the stored ones.
            let (read, stored) = match from_raw {
                true => (Value::Object(raw), None),
                false => {
                    let mut without = raw.clone();
                    without.remove("chat_info");
                    without.remove("video_links");
                    (
                        Value::Object(without),
                        Some((raw, docs.next().unwrap_or_default())),
                    )
                }
            };
            match normalize::read(read, None, None, r.vetted, &key, tz) {
                Normalized::Session(mut s, n) => {
                    if let Some((raw, children)) = stored {
                        s.raw = Value::Object(raw).to_string();
                        s.content_hash = normalize::content_hash(&s.raw, tz);
                        s.messages = stored_messages(&children["messages"]);
                        s.videos = children["videos"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|v| v.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default();
                    }
                    nulled.extend(n);
                    match index.get(&s.session_id) {
                        Some(&at) => sessions[at] = *s,
                        None => {
                            index.insert(s.session_id, sessions.len());
                            sessions.push(*s);
                        }
                    }
                }
                Normalized::Rejected(x) => rejected.push(x),
            }
        }
        Batch::new(super::store::SessionRows(sessions))
            .with_rejected(rejected)
            .with_nulled(nulled)
    }
}

/// The stored chat lines (`[sent_at, author, author_type, message]` each).
fn stored_messages(v: &Value) -> Vec<ChatMessage> {
    let text = |v: &Value| v.as_str().map(String::from);
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|m| ChatMessage {
                    sent_at: m[0]
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&Utc)),
                    author: text(&m[1]),
                    author_type: text(&m[2]),
                    message: text(&m[3]),
                })
                .collect()
        })
        .unwrap_or_default()
}
