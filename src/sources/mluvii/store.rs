//! Writes mluvii sessions: one set-based upsert that rewrites only sessions whose fingerprint
//! (`content_hash`: detail, routing history and how they are read) changed, then the operators, routing events and durations of exactly those
//! sessions are replaced.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;

use super::normalize::Session;
use crate::engine::{Rows, WriteCounts};
use crate::warehouse::delete_children;

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

const UPSERT: &str = "
INSERT INTO mluvii_sessions AS t (
    account, session_id, company_id, department_id, channel, source, status, direct_call_number,
    phone_callback_number, widget, url, created_at, guest_joined_at, started_at, ended_at,
    waited_seconds, length_seconds, guest_feedback_stars, tags, raw, routing_raw, content_hash)
SELECT $1, u.* FROM unnest(
    $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[],
    $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[],
    $14::timestamptz[], $15::timestamptz[], $16::float8[], $17::float8[], $18::int[], $19::jsonb[],
    $20::jsonb[], $21::jsonb[], $22::text[]) AS u
ON CONFLICT (account, session_id) DO UPDATE SET
    company_id = EXCLUDED.company_id, department_id = EXCLUDED.department_id,
    channel = EXCLUDED.channel, source = EXCLUDED.source, status = EXCLUDED.status,
    direct_call_number = EXCLUDED.direct_call_number,
    phone_callback_number = EXCLUDED.phone_callback_number, widget = EXCLUDED.widget,
    url = EXCLUDED.url, created_at = EXCLUDED.created_at, guest_joined_at = EXCLUDED.guest_joined_at,
    started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at,
    waited_seconds = EXCLUDED.waited_seconds, length_seconds = EXCLUDED.length_seconds,
    guest_feedback_stars = EXCLUDED.guest_feedback_stars, tags = EXCLUDED.tags, raw = EXCLUDED.raw,
    routing_raw = EXCLUDED.routing_raw, content_hash = EXCLUDED.content_hash,
    last_synced_at = now(),
    privacy_policy = DEFAULT
WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash
   OR t.privacy_policy IS DISTINCT FROM EXCLUDED.privacy_policy
RETURNING session_id, (xmax = 0) AS inserted";

fn col<'a, T>(s: &'a [Session], f: impl Fn(&'a Session) -> T) -> Vec<T> {
    s.iter().map(f).collect()
}

#[async_trait]
impl Rows for SessionRows {
    fn len(&self) -> usize {
        self.0.len()
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
        let text = |f: fn(&Session) -> &Option<String>| {
            s.iter().map(|x| f(x).as_deref()).collect::<Vec<_>>()
        };
        let time = |f: fn(&Session) -> Option<DateTime<Utc>>| col(s, f);
        let returned: Vec<(i64, bool)> = tx
            .query(
                UPSERT,
                &[
                    &account,
                    &col(s, |x| x.session_id),
                    &col(s, |x| x.company_id),
                    &col(s, |x| x.department_id),
                    &text(|x| &x.channel),
                    &text(|x| &x.source),
                    &text(|x| &x.status),
                    &text(|x| &x.direct_call_number),
                    &text(|x| &x.phone_callback_number),
                    &text(|x| &x.widget),
                    &text(|x| &x.url),
                    &time(|x| x.created_at),
                    &time(|x| x.guest_joined_at),
                    &time(|x| x.started_at),
                    &time(|x| x.ended_at),
                    &col(s, |x| x.waited_seconds),
                    &col(s, |x| x.length_seconds),
                    &col(s, |x| x.guest_feedback_stars),
                    &col(s, |x| x.tags.as_ref()),
                    &col(s, |x| &x.raw),
                    &col(s, |x| &x.routing_raw),
                    &col(s, |x| x.content_hash.as_str()),
                ],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        // A freshly inserted session has no children to delete (`xmax = 0`: no prior version).
        let updated: Vec<i64> = returned.iter().filter(|r| !r.1).map(|r| r.0).collect();
        let changed: Vec<i64> = returned.iter().map(|r| r.0).collect();
        if !changed.is_empty() {
            self.replace_children(tx, account, &changed, &updated)
                .await?;
        }
        Ok(WriteCounts {
            written: changed.len() as u64,
            unchanged: (s.len() - changed.len()) as u64,
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
    ) -> Result<(), tokio_postgres::Error> {
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

        let ops: Vec<(i64, &super::normalize::Operator)> = sessions
            .iter()
            .flat_map(|s| s.operators.iter().map(move |o| (s.session_id, o)))
            .collect();
        if !ops.is_empty() {
            let c = |f: fn(&super::normalize::Operator) -> Option<DateTime<Utc>>| {
                ops.iter().map(|(_, o)| f(o)).collect::<Vec<_>>()
            };
            let t = |f: fn(&super::normalize::Operator) -> &Option<String>| {
                ops.iter().map(|(_, o)| f(o).as_deref()).collect::<Vec<_>>()
            };
            tx.execute(
                "INSERT INTO mluvii_session_operators (account, session_id, user_id, user_name,
                    first_name, last_name, joined_at, left_at, concluded_at, queue_seconds, acw_seconds)
                 SELECT $1, u.* FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[],
                    $6::text[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[],
                    $10::float8[], $11::float8[]) AS u",
                &[
                    &account,
                    &ops.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                    &ops.iter().map(|(_, o)| o.user_id).collect::<Vec<_>>(),
                    &t(|o| &o.user_name),
                    &t(|o| &o.first_name),
                    &t(|o| &o.last_name),
                    &c(|o| o.joined_at),
                    &c(|o| o.left_at),
                    &c(|o| o.concluded_at),
                    &ops.iter().map(|(_, o)| o.queue_seconds).collect::<Vec<_>>(),
                    &ops.iter().map(|(_, o)| o.acw_seconds).collect::<Vec<_>>(),
                ],
            )
            .await?;
        }

        let evs: Vec<(i64, i32, &super::normalize::RoutingEvent)> = sessions
            .iter()
            .flat_map(|s| {
                s.events
                    .iter()
                    .enumerate()
                    .map(move |(i, e)| (s.session_id, i as i32, e))
            })
            .collect();
        if !evs.is_empty() {
            let t = |f: fn(&super::normalize::RoutingEvent) -> &Option<String>| {
                evs.iter()
                    .map(|(_, _, e)| f(e).as_deref())
                    .collect::<Vec<_>>()
            };
            let n = |f: fn(&super::normalize::RoutingEvent) -> Option<i64>| {
                evs.iter().map(|(_, _, e)| f(e)).collect::<Vec<_>>()
            };
            tx.execute(
                "INSERT INTO mluvii_routing_events (account, session_id, seq, routing_request_id,
                    occurred_at, activity_type, group_id, group_name, operator_user_id, phone_number)
                 SELECT $1, u.* FROM unnest($2::bigint[], $3::int[], $4::bigint[],
                    $5::timestamptz[], $6::text[], $7::bigint[], $8::text[], $9::bigint[],
                    $10::text[]) AS u",
                &[
                    &account,
                    &evs.iter().map(|(id, _, _)| *id).collect::<Vec<_>>(),
                    &evs.iter().map(|(_, i, _)| *i).collect::<Vec<_>>(),
                    &n(|e| e.routing_request_id),
                    &evs.iter().map(|(_, _, e)| e.occurred_at).collect::<Vec<_>>(),
                    &t(|e| &e.activity_type),
                    &n(|e| e.group_id),
                    &t(|e| &e.group_name),
                    &n(|e| e.operator_user_id),
                    &t(|e| &e.phone_number),
                ],
            )
            .await?;
        }

        let d = |f: fn(&Session) -> Option<f64>| sessions.iter().map(|s| f(s)).collect::<Vec<_>>();
        tx.execute(
            "INSERT INTO mluvii_session_durations (account, session_id, created_seconds,
                in_queue_seconds, waiting_seconds, bcw_seconds, active_seconds, acw_seconds,
                ring_seconds, pbx_wait_seconds)
             SELECT $1, u.* FROM unnest($2::bigint[], $3::float8[], $4::float8[], $5::float8[],
                $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::float8[]) AS u",
            &[
                &account,
                &sessions.iter().map(|s| s.session_id).collect::<Vec<_>>(),
                &d(|s| s.durations.created),
                &d(|s| s.durations.in_queue),
                &d(|s| s.durations.waiting),
                &d(|s| s.durations.bcw),
                &d(|s| s.durations.active),
                &d(|s| s.durations.acw),
                &d(|s| s.durations.ring),
                &d(|s| s.durations.pbx_wait),
            ],
        )
        .await?;
        Ok(())
    }
}
