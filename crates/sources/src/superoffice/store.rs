//! Writes SuperOffice chat sessions and messages: set-based upserts that rewrite only rows
//! whose content changed (sessions: their `content_hash`, as every source; messages, which carry
//! no fingerprint of their own and are never re-read once stored, by their columns).
//! Messages are keyed by their own id and only ever added or updated.

use async_trait::async_trait;
use tokio_postgres::Transaction;

use super::normalize::{Message, Session};
use crate::engine::{Rows, WriteCounts};
use crate::warehouse::{Unnest, texts as text, values as col};

pub struct ChatRows {
    pub sessions: Vec<Session>,
    pub messages: Vec<Message>,
    /// Sessions seen in this window and found unchanged before the write (their fingerprint,
    /// or their archive row, as the stream remembers it): not sent, counted as unchanged.
    pub unchanged: u64,
    /// The account's chat topics, when this window refreshed them (daily).
    pub topics: Vec<Topic>,
}

/// A chat topic (`ChatTopicEntity`: `ChatTopicId`, `Name`).
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    pub topic_id: i32,
    pub name: Option<String>,
}

/// Who closed each of the sessions `$2` (int[]) of account `$1`, from the last of its stored
/// messages whose `SpecialType` says (ChatMessageSpecialType in SuperOffice's official client:
/// ClosedByUser 10, ClosedByCustomer 11, ClosedByIdle 12): each session found by a probe of its
/// key, its messages through their session index (aggregated: a `LIMIT 1` in message order
/// would walk the account's messages backwards); a row is written only when it changes.
pub const CLOSED_BY: &str = "WITH c AS MATERIALIZED (
  SELECT u.id, x.closed_by
    FROM unnest($2::int[]) AS u(id)
    CROSS JOIN LATERAL (
      SELECT (array_agg(CASE WHEN lower(m.special_type) IN ('closedbyuser', '10') THEN 'user'
                             WHEN lower(m.special_type) IN ('closedbycustomer', '11') THEN 'customer'
                             ELSE 'idle' END
                        ORDER BY m.chat_message_id DESC))[1] AS closed_by
        FROM superoffice_chat_messages m
       WHERE m.account = $1 AND m.chat_session_id = u.id
         AND lower(m.special_type) IN ('closedbyuser', 'closedbycustomer', 'closedbyidle', '10', '11', '12')) AS x)
UPDATE superoffice_chat_sessions t SET closed_by = c.closed_by
  FROM c
 WHERE t.ctid = ANY(ARRAY(SELECT x.ctid FROM unnest($2::int[]) AS u(id)
                          CROSS JOIN LATERAL (SELECT s.ctid FROM superoffice_chat_sessions s
                                              WHERE s.account = $1 AND s.chat_session_id = u.id OFFSET 0) AS x))
   AND t.chat_session_id = c.id AND t.closed_by IS DISTINCT FROM c.closed_by
RETURNING t.chat_session_id";

/// Sets `closed_by` of the sessions `ids` of `account` from their stored messages; returns the
/// sessions whose `closed_by` changed.
pub async fn closed_by(
    tx: &impl tokio_postgres::GenericClient,
    account: &str,
    ids: &[i32],
) -> Result<Vec<i32>, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tx
        .query(CLOSED_BY, &[&account, &ids])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// What an upsert of a changed session also sets, and when it writes at all: only a session
/// whose fingerprint or policy changed is rewritten.
const SESSION_CONFLICT: &str = "last_synced_at = now(), privacy_policy = DEFAULT
WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash
   OR t.privacy_policy IS DISTINCT FROM EXCLUDED.privacy_policy
RETURNING chat_session_id";

#[async_trait]
impl Rows for ChatRows {
    fn len(&self) -> usize {
        self.sessions.len()
    }

    fn keys(&self) -> Vec<crate::model::SessionId> {
        self.sessions
            .iter()
            .map(|s| s.chat_session_id.into())
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
        // The sessions of this batch whose row changed: rewritten, or given another closed_by.
        let mut changed = std::collections::BTreeSet::new();
        let mut children = std::collections::BTreeMap::new();
        if !s.is_empty() {
            let (int, time) = ("int", "timestamptz");
            let rows = Unnest::new()
                .column("chat_session_id", int, col(s, |x| x.chat_session_id))
                .column("topic_id", int, col(s, |x| x.topic_id))
                .column("user_associate_id", int, col(s, |x| x.user_associate_id))
                .column("person_id", int, col(s, |x| x.person_id))
                .column("contact_id", int, col(s, |x| x.contact_id))
                .column("project_id", int, col(s, |x| x.project_id))
                .column("sale_id", int, col(s, |x| x.sale_id))
                .column("ticket_id", int, col(s, |x| x.ticket_id))
                .column(
                    "transfer_to_associate_id",
                    int,
                    col(s, |x| x.transfer_to_associate_id),
                )
                .column("customer_alias", "text", text(s, |x| &x.customer_alias))
                .column("customer_host", "text", text(s, |x| &x.customer_host))
                .column("customer_name", "text", text(s, |x| &x.customer_name))
                .column("customer_email", "text", text(s, |x| &x.customer_email))
                .column("customer_phone", "text", text(s, |x| &x.customer_phone))
                .column(
                    "customer_company_name",
                    "text",
                    text(s, |x| &x.customer_company_name),
                )
                .column(
                    "customer_consented",
                    "boolean",
                    col(s, |x| x.customer_consented),
                )
                .column(
                    "chatbot_is_active",
                    "boolean",
                    col(s, |x| x.chatbot_is_active),
                )
                .column("status", "text", text(s, |x| &x.status))
                .column("flags", "text", text(s, |x| &x.flags))
                .column("first_message", "text", text(s, |x| &x.first_message))
                .column("last_message", "text", text(s, |x| &x.last_message))
                .column("requested_at", time, col(s, |x| x.requested_at))
                .column("started_at", time, col(s, |x| x.started_at))
                .column("ended_at", time, col(s, |x| x.ended_at))
                .column("idle_at", time, col(s, |x| x.idle_at))
                .column("fetched_at", time, col(s, |x| x.fetched_at))
                .column("initial_queue_pos", int, col(s, |x| x.initial_queue_pos))
                .column("alert_level", int, col(s, |x| x.alert_level))
                .column("rank", int, col(s, |x| x.rank))
                .column("rating", int, col(s, |x| x.rating))
                .column("queue_seconds", "float8", col(s, |x| x.queue_seconds))
                .column("handle_seconds", "float8", col(s, |x| x.handle_seconds))
                .column("total_seconds", "float8", col(s, |x| x.total_seconds))
                .column("raw", "jsonb", col(s, |x| &x.raw))
                .column("content_hash", "text", col(s, |x| x.content_hash.as_str()));
            let upsert = rows.insert(
                "superoffice_chat_sessions",
                &format!(
                    "ON CONFLICT (account, chat_session_id) DO UPDATE SET {}, {SESSION_CONFLICT}",
                    rows.set_excluded(&["chat_session_id"])
                ),
            );
            changed.extend(
                tx.query(&upsert, &rows.params(&account))
                    .await?
                    .iter()
                    .map(|r| r.get::<_, i32>(0)),
            );
        }
        let m = &self.messages;
        if !m.is_empty() {
            let rows = Unnest::new()
                .column("chat_message_id", "int", col(m, |x| x.chat_message_id))
                .column("chat_session_id", "int", col(m, |x| x.chat_session_id))
                .column("type", "text", text(m, |x| &x.kind))
                .column("special_type", "text", text(m, |x| &x.special_type))
                .column("special_param", "text", text(m, |x| &x.special_param))
                .column("author", "text", text(m, |x| &x.author))
                .column("message", "text", text(m, |x| &x.message))
                .column(
                    "read_by_customer",
                    "integer",
                    col(m, |x| x.read_by_customer),
                )
                .column("posted_at", "timestamptz", col(m, |x| x.posted_at));
            // Messages carry no fingerprint: one is rewritten only when a column changed.
            let key = ["chat_message_id"];
            let upsert = rows.insert(
                "superoffice_chat_messages",
                &format!(
                    "ON CONFLICT (account, chat_message_id) DO UPDATE SET {}, last_synced_at = now() WHERE {}",
                    rows.set_excluded(&key),
                    rows.changed(&key)
                ),
            );
            children.insert(
                "superoffice_chat_messages",
                tx.execute(&upsert, &rows.params(&account)).await?,
            );
        }
        // Who closed them: from the messages as stored now (those just written included).
        let mut touched: Vec<i32> = s
            .iter()
            .map(|x| x.chat_session_id)
            .chain(m.iter().map(|x| x.chat_session_id))
            .collect();
        touched.sort_unstable();
        touched.dedup();
        let own: std::collections::BTreeSet<i32> = s.iter().map(|x| x.chat_session_id).collect();
        changed.extend(
            closed_by(tx, account, &touched)
                .await?
                .into_iter()
                .filter(|id| own.contains(id)),
        );
        let written = changed.len() as u64;
        if !self.topics.is_empty() {
            let t = &self.topics;
            children.insert("superoffice_chat_topics", t.len() as u64);
            let ids: Vec<i32> = t.iter().map(|x| x.topic_id).collect();
            let names: Vec<Option<&str>> = t.iter().map(|x| x.name.as_deref()).collect();
            tx.execute(
                "INSERT INTO superoffice_chat_topics AS t (account, topic_id, name)
                 SELECT $1, * FROM unnest($2::int[], $3::text[])
                 ON CONFLICT (account, topic_id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()",
                &[&account, &ids, &names],
            )
            .await?;
        }
        Ok(WriteCounts {
            written,
            unchanged: s.len() as u64 - written + self.unchanged,
            children,
        })
    }
}
