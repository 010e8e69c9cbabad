//! Writes mluvii sessions: one set-based upsert that rewrites only sessions whose fingerprint
//! (`content_hash`: detail, routing history and how they are read) changed, then the operators, routing events and durations of exactly those
//! sessions are replaced.

use std::collections::HashSet;

use async_trait::async_trait;
use tokio_postgres::Transaction;

use super::normalize::{Operator, RoutingEvent, Session};
use crate::engine::{Rows, WriteCounts};
use crate::warehouse::{Unnest, delete_children, texts as text, values as col};

pub struct SessionRows(pub Vec<Session>);

/// The child tables replaced with their session.
const CHILD_TABLES: [&str; 3] = [
    "mluvii_session_operators",
    "mluvii_routing_events",
    "mluvii_session_durations",
];

/// Every statement of a window's write that reads stored rows, each taking `$1` (account) and
/// `$2` (ids, bigint[]): the plan tests hold each to probing the whole key. (The upsert itself
/// finds conflicts through its arbiter index, which the planner does not choose.)
pub fn reading_statements() -> Vec<String> {
    CHILD_TABLES.iter().map(|t| delete_children(t)).collect()
}

/// What an upsert of a changed session also sets, and when it writes at all: only a session
/// whose fingerprint or policy changed is rewritten.
const ON_CONFLICT_SET: &str = "last_synced_at = now(), privacy_policy = DEFAULT
WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash
   OR t.privacy_policy IS DISTINCT FROM EXCLUDED.privacy_policy
RETURNING session_id, (xmax = 0) AS inserted";

#[async_trait]
impl Rows for SessionRows {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn keys(&self) -> Vec<crate::model::SessionId> {
        self.0.iter().map(|s| s.session_id.into()).collect()
    }

    fn newest(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0.iter().filter_map(|s| s.created_at).max()
    }

    async fn write(
        &self,
        tx: &Transaction<'_>,
        account: &str,
    ) -> Result<WriteCounts, tokio_postgres::Error> {
        let s = &self.0;
        if s.is_empty() {
            return Ok(WriteCounts::default());
        }
        let time = "timestamptz";
        let rows = Unnest::new()
            .column("session_id", "bigint", col(s, |x| x.session_id))
            .column("company_id", "bigint", col(s, |x| x.company_id))
            .column("department_id", "bigint", col(s, |x| x.department_id))
            .column("channel", "text", text(s, |x| &x.channel))
            .column("source", "text", text(s, |x| &x.source))
            .column("status", "text", text(s, |x| &x.status))
            .column(
                "direct_call_number",
                "text",
                text(s, |x| &x.direct_call_number),
            )
            .column(
                "phone_callback_number",
                "text",
                text(s, |x| &x.phone_callback_number),
            )
            .column("widget", "text", text(s, |x| &x.widget))
            .column("url", "text", text(s, |x| &x.url))
            .column("created_at", time, col(s, |x| x.created_at))
            .column("guest_joined_at", time, col(s, |x| x.guest_joined_at))
            .column("started_at", time, col(s, |x| x.started_at))
            .column("ended_at", time, col(s, |x| x.ended_at))
            .column("waited_seconds", "float8", col(s, |x| x.waited_seconds))
            .column("length_seconds", "float8", col(s, |x| x.length_seconds))
            .column(
                "guest_feedback_stars",
                "int",
                col(s, |x| x.guest_feedback_stars),
            )
            .column(
                "guest_feedback_scale",
                "text",
                text(s, |x| &x.guest_feedback_scale),
            )
            .column(
                "termination_reason",
                "text",
                text(s, |x| &x.termination_reason),
            )
            .column("guest_left", "bool", col(s, |x| x.guest_left))
            .column("chatbot", "bool", col(s, |x| x.chatbot))
            .column("tags", "jsonb", col(s, |x| x.tags.as_ref()))
            .column("raw", "jsonb", col(s, |x| &x.raw))
            .column("routing_raw", "jsonb", col(s, |x| &x.routing_raw))
            .column("content_hash", "text", col(s, |x| x.content_hash.as_str()));
        let upsert = rows.insert(
            "mluvii_sessions",
            &format!(
                "ON CONFLICT (account, session_id) DO UPDATE SET {}, {ON_CONFLICT_SET}",
                rows.set_excluded(&["session_id"])
            ),
        );
        let returned: Vec<(i64, bool)> = tx
            .query(&upsert, &rows.params(&account))
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        // A freshly inserted session has no children to delete (`xmax = 0`: no prior version).
        let updated: Vec<i64> = returned.iter().filter(|r| !r.1).map(|r| r.0).collect();
        let changed: Vec<i64> = returned.iter().map(|r| r.0).collect();
        let mut children = Default::default();
        if !changed.is_empty() {
            children = self
                .replace_children(tx, account, &changed, &updated)
                .await?;
        }
        Ok(WriteCounts {
            written: changed.len() as u64,
            unchanged: (s.len() - changed.len()) as u64,
            children,
        })
    }
}

impl SessionRows {
    async fn replace_children(
        &self,
        tx: &Transaction<'_>,
        account: &str,
        changed: &[i64],
        updated: &[i64],
    ) -> Result<std::collections::BTreeMap<&'static str, u64>, tokio_postgres::Error> {
        let mut written = std::collections::BTreeMap::new();
        if !updated.is_empty() {
            for table in CHILD_TABLES {
                tx.execute(&delete_children(table), &[&account, &updated])
                    .await?;
            }
        }
        let changed: HashSet<i64> = changed.iter().copied().collect();
        let sessions: Vec<&Session> = self
            .0
            .iter()
            .filter(|s| changed.contains(&s.session_id))
            .collect();

        let ops: Vec<(i64, &Operator)> = sessions
            .iter()
            .flat_map(|s| s.operators.iter().map(move |o| (s.session_id, o)))
            .collect();
        if !ops.is_empty() {
            let rows = Unnest::new()
                .column("session_id", "bigint", col(&ops, |(id, _)| *id))
                .column("user_id", "bigint", col(&ops, |(_, o)| o.user_id))
                .column("user_name", "text", text(&ops, |(_, o)| &o.user_name))
                .column("first_name", "text", text(&ops, |(_, o)| &o.first_name))
                .column("last_name", "text", text(&ops, |(_, o)| &o.last_name))
                .column("joined_at", "timestamptz", col(&ops, |(_, o)| o.joined_at))
                .column("left_at", "timestamptz", col(&ops, |(_, o)| o.left_at))
                .column(
                    "concluded_at",
                    "timestamptz",
                    col(&ops, |(_, o)| o.concluded_at),
                )
                .column(
                    "queue_seconds",
                    "float8",
                    col(&ops, |(_, o)| o.queue_seconds),
                )
                .column("acw_seconds", "float8", col(&ops, |(_, o)| o.acw_seconds))
                .column("note", "text", text(&ops, |(_, o)| &o.note));
            let n = tx
                .execute(
                    &rows.insert("mluvii_session_operators", ""),
                    &rows.params(&account),
                )
                .await?;
            written.insert("mluvii_session_operators", n);
        }

        let evs: Vec<(i64, i32, &RoutingEvent)> = sessions
            .iter()
            .flat_map(|s| {
                s.events
                    .iter()
                    .enumerate()
                    .map(move |(i, e)| (s.session_id, i as i32, e))
            })
            .collect();
        if !evs.is_empty() {
            let rows = Unnest::new()
                .column("session_id", "bigint", col(&evs, |(id, _, _)| *id))
                .column("seq", "int", col(&evs, |(_, i, _)| *i))
                .column(
                    "routing_request_id",
                    "bigint",
                    col(&evs, |(_, _, e)| e.routing_request_id),
                )
                .column(
                    "occurred_at",
                    "timestamptz",
                    col(&evs, |(_, _, e)| e.occurred_at),
                )
                .column(
                    "activity_type",
                    "text",
                    text(&evs, |(_, _, e)| &e.activity_type),
                )
                .column("group_id", "bigint", col(&evs, |(_, _, e)| e.group_id))
                .column("group_name", "text", text(&evs, |(_, _, e)| &e.group_name))
                .column(
                    "operator_user_id",
                    "bigint",
                    col(&evs, |(_, _, e)| e.operator_user_id),
                )
                .column(
                    "phone_number",
                    "text",
                    text(&evs, |(_, _, e)| &e.phone_number),
                );
            let n = tx
                .execute(
                    &rows.insert("mluvii_routing_events", ""),
                    &rows.params(&account),
                )
                .await?;
            written.insert("mluvii_routing_events", n);
        }

        let d = &sessions;
        let rows = Unnest::new()
            .column("session_id", "bigint", col(d, |s| s.session_id))
            .column("created_seconds", "float8", col(d, |s| s.durations.created))
            .column(
                "in_queue_seconds",
                "float8",
                col(d, |s| s.durations.in_queue),
            )
            .column("waiting_seconds", "float8", col(d, |s| s.durations.waiting))
            .column("bcw_seconds", "float8", col(d, |s| s.durations.bcw))
            .column("active_seconds", "float8", col(d, |s| s.durations.active))
            .column("acw_seconds", "float8", col(d, |s| s.durations.acw))
            .column("ring_seconds", "float8", col(d, |s| s.durations.ring))
            .column(
                "pbx_wait_seconds",
                "float8",
                col(d, |s| s.durations.pbx_wait),
            );
        let n = tx
            .execute(
                &rows.insert("mluvii_session_durations", ""),
                &rows.params(&account),
            )
            .await?;
        written.insert("mluvii_session_durations", n);
        Ok(written)
    }
}
