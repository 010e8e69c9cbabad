//! Writes SuperOffice chat sessions and messages: set-based upserts that rewrite only rows
//! whose content changed (sessions: their `content_hash`, as every source; messages, which carry
//! no fingerprint of their own and are never re-read once stored, by their columns).
//! Messages are keyed by their own id and only ever added or updated.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;

use super::normalize::{Message, Session};
use crate::engine::{Rows, WriteCounts};

pub struct ChatRows {
    pub sessions: Vec<Session>,
    pub messages: Vec<Message>,
    /// Sessions seen in this window and found unchanged before the write (their fingerprint,
    /// or their archive row, as the stream remembers it): not sent, counted as unchanged.
    pub unchanged: u64,
}

const SESSIONS: &str = "
INSERT INTO superoffice_chat_sessions AS t (
    account, chat_session_id, topic_id, user_associate_id, person_id, contact_id, project_id,
    sale_id, ticket_id, transfer_to_associate_id, customer_alias, customer_host, customer_name,
    customer_email, customer_phone, customer_company_name, customer_consented, chatbot_is_active,
    status, flags, first_message, last_message, requested_at, started_at, ended_at, idle_at,
    fetched_at, initial_queue_pos, alert_level, rank, rating, queue_seconds, handle_seconds,
    total_seconds, raw, content_hash)
SELECT $1, u.* FROM unnest(
    $2::int[], $3::int[], $4::int[], $5::int[], $6::int[], $7::int[], $8::int[], $9::int[],
    $10::int[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
    $17::boolean[], $18::boolean[], $19::text[], $20::text[], $21::text[], $22::text[],
    $23::timestamptz[], $24::timestamptz[], $25::timestamptz[], $26::timestamptz[],
    $27::timestamptz[], $28::int[], $29::int[], $30::int[], $31::int[], $32::float8[],
    $33::float8[], $34::float8[], $35::jsonb[], $36::text[]) AS u
ON CONFLICT (account, chat_session_id) DO UPDATE SET
    topic_id = EXCLUDED.topic_id, user_associate_id = EXCLUDED.user_associate_id,
    person_id = EXCLUDED.person_id, contact_id = EXCLUDED.contact_id,
    project_id = EXCLUDED.project_id, sale_id = EXCLUDED.sale_id, ticket_id = EXCLUDED.ticket_id,
    transfer_to_associate_id = EXCLUDED.transfer_to_associate_id,
    customer_alias = EXCLUDED.customer_alias, customer_host = EXCLUDED.customer_host,
    customer_name = EXCLUDED.customer_name, customer_email = EXCLUDED.customer_email,
    customer_phone = EXCLUDED.customer_phone, customer_company_name = EXCLUDED.customer_company_name,
    customer_consented = EXCLUDED.customer_consented, chatbot_is_active = EXCLUDED.chatbot_is_active,
    status = EXCLUDED.status, flags = EXCLUDED.flags, first_message = EXCLUDED.first_message,
    last_message = EXCLUDED.last_message, requested_at = EXCLUDED.requested_at,
    started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at, idle_at = EXCLUDED.idle_at,
    fetched_at = EXCLUDED.fetched_at, initial_queue_pos = EXCLUDED.initial_queue_pos,
    alert_level = EXCLUDED.alert_level, rank = EXCLUDED.rank, rating = EXCLUDED.rating,
    queue_seconds = EXCLUDED.queue_seconds, handle_seconds = EXCLUDED.handle_seconds,
    total_seconds = EXCLUDED.total_seconds, raw = EXCLUDED.raw,
    content_hash = EXCLUDED.content_hash, last_synced_at = now(),
    privacy_policy = DEFAULT
WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash
   OR t.privacy_policy IS DISTINCT FROM EXCLUDED.privacy_policy
RETURNING chat_session_id";

const MESSAGES: &str = "
INSERT INTO superoffice_chat_messages AS t (
    account, chat_message_id, chat_session_id, type, special_type, special_param, author,
    message, read_by_customer, posted_at)
SELECT $1, u.* FROM unnest($2::int[], $3::int[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::text[], $9::integer[], $10::timestamptz[]) AS u
ON CONFLICT (account, chat_message_id) DO UPDATE SET
    chat_session_id = EXCLUDED.chat_session_id, type = EXCLUDED.type,
    special_type = EXCLUDED.special_type, special_param = EXCLUDED.special_param,
    author = EXCLUDED.author, message = EXCLUDED.message,
    read_by_customer = EXCLUDED.read_by_customer, posted_at = EXCLUDED.posted_at,
    last_synced_at = now()
WHERE (t.chat_session_id, t.type, t.special_type, t.special_param, t.author, t.message,
       t.read_by_customer, t.posted_at)
  IS DISTINCT FROM
      (EXCLUDED.chat_session_id, EXCLUDED.type, EXCLUDED.special_type, EXCLUDED.special_param,
       EXCLUDED.author, EXCLUDED.message, EXCLUDED.read_by_customer, EXCLUDED.posted_at)";

#[async_trait]
impl Rows for ChatRows {
    fn len(&self) -> usize {
        self.sessions.len()
    }

    fn keys(&self) -> Vec<String> {
        self.sessions
            .iter()
            .map(|s| s.chat_session_id.to_string())
            .collect()
    }

    fn newest(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.sessions.iter().filter_map(|s| s.requested_at).max()
    }

    async fn write(
        &self,
        tx: &Transaction<'_>,
        account: &str,
    ) -> Result<WriteCounts, tokio_postgres::Error> {
        let s = &self.sessions;
        let mut written = 0;
        if !s.is_empty() {
            let int = |f: fn(&Session) -> Option<i32>| s.iter().map(f).collect::<Vec<_>>();
            let text = |f: fn(&Session) -> &Option<String>| {
                s.iter().map(|x| f(x).as_deref()).collect::<Vec<_>>()
            };
            let time =
                |f: fn(&Session) -> Option<DateTime<Utc>>| s.iter().map(f).collect::<Vec<_>>();
            let boolean = |f: fn(&Session) -> Option<bool>| s.iter().map(f).collect::<Vec<_>>();
            let float = |f: fn(&Session) -> Option<f64>| s.iter().map(f).collect::<Vec<_>>();
            written = tx
                .query(
                    SESSIONS,
                    &[
                        &account,
                        &s.iter().map(|x| x.chat_session_id).collect::<Vec<_>>(),
                        &int(|x| x.topic_id),
                        &int(|x| x.user_associate_id),
                        &int(|x| x.person_id),
                        &int(|x| x.contact_id),
                        &int(|x| x.project_id),
                        &int(|x| x.sale_id),
                        &int(|x| x.ticket_id),
                        &int(|x| x.transfer_to_associate_id),
                        &text(|x| &x.customer_alias),
                        &text(|x| &x.customer_host),
                        &text(|x| &x.customer_name),
                        &text(|x| &x.customer_email),
                        &text(|x| &x.customer_phone),
                        &text(|x| &x.customer_company_name),
                        &boolean(|x| x.customer_consented),
                        &boolean(|x| x.chatbot_is_active),
                        &text(|x| &x.status),
                        &text(|x| &x.flags),
                        &text(|x| &x.first_message),
                        &text(|x| &x.last_message),
                        &time(|x| x.requested_at),
                        &time(|x| x.started_at),
                        &time(|x| x.ended_at),
                        &time(|x| x.idle_at),
                        &time(|x| x.fetched_at),
                        &int(|x| x.initial_queue_pos),
                        &int(|x| x.alert_level),
                        &int(|x| x.rank),
                        &int(|x| x.rating),
                        &float(|x| x.queue_seconds),
                        &float(|x| x.handle_seconds),
                        &float(|x| x.total_seconds),
                        &s.iter().map(|x| &x.raw).collect::<Vec<_>>(),
                        &s.iter()
                            .map(|x| x.content_hash.as_str())
                            .collect::<Vec<_>>(),
                    ],
                )
                .await?
                .len() as u64;
        }
        let m = &self.messages;
        if !m.is_empty() {
            let text = |f: fn(&Message) -> &Option<String>| {
                m.iter().map(|x| f(x).as_deref()).collect::<Vec<_>>()
            };
            tx.execute(
                MESSAGES,
                &[
                    &account,
                    &m.iter().map(|x| x.chat_message_id).collect::<Vec<_>>(),
                    &m.iter().map(|x| x.chat_session_id).collect::<Vec<_>>(),
                    &text(|x| &x.kind),
                    &text(|x| &x.special_type),
                    &text(|x| &x.special_param),
                    &text(|x| &x.author),
                    &text(|x| &x.message),
                    &m.iter().map(|x| x.read_by_customer).collect::<Vec<_>>(),
                    &m.iter().map(|x| x.posted_at).collect::<Vec<_>>(),
                ],
            )
            .await?;
        }
        Ok(WriteCounts {
            written,
            unchanged: s.len() as u64 - written + self.unchanged,
        })
    }
}
