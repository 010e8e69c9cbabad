-- One row per session of every system (warehouse.md, "Across systems"), for BI that does not
-- care where a session came from.

CREATE VIEW support_sessions AS
SELECT 'takecontrol'::text           AS source,
       t.account,
       t.session_id::text            AS session_id,
       'remote'::text                AS channel,
       t.customer_name,
       t.customer_email,
       coalesce(t.tech_name, t.tech_username) AS agent,
       t.started_at                  AS requested_at,
       t.started_at,
       t.ended_at,
       NULL::double precision        AS wait_seconds,
       t.duration_seconds            AS handle_seconds,
       NULL::double precision        AS after_work_seconds,
       CASE WHEN t.ended_at IS NULL THEN 'open' ELSE 'ended' END AS status
  FROM takecontrol_sessions t
UNION ALL
SELECT 'superoffice',
       s.account,
       s.chat_session_id::text,
       'chat',
       s.customer_name,
       s.customer_email,
       s.user_associate_id::text,
       s.requested_at,
       s.started_at,
       s.ended_at,
       s.queue_seconds,
       s.handle_seconds,
       NULL::double precision,
       s.status
  FROM superoffice_chat_sessions s
UNION ALL
SELECT 'mluvii',
       m.account,
       m.session_id::text,
       lower(m.channel),
       NULL::text,
       NULL::text,
       (SELECT string_agg(coalesce(nullif(concat_ws(' ', o.first_name, o.last_name), ''), o.user_name, o.user_id::text),
                          ', ' ORDER BY o.joined_at NULLS LAST, o.user_id)
          FROM mluvii_session_operators o
         WHERE o.account = m.account AND o.session_id = m.session_id),
       m.created_at,
       m.started_at,
       m.ended_at,
       coalesce(d.in_queue_seconds + d.waiting_seconds, m.waited_seconds),
       m.length_seconds,
       d.acw_seconds,
       m.status
  FROM mluvii_sessions m
  LEFT JOIN mluvii_session_durations d USING (account, session_id);

COMMENT ON VIEW support_sessions IS 'One row per support session of every system (Take Control, SuperOffice, mluvii)';
COMMENT ON COLUMN support_sessions.source IS 'takecontrol, superoffice or mluvii';
COMMENT ON COLUMN support_sessions.account IS 'Configured account name of the source';
COMMENT ON COLUMN support_sessions.session_id IS 'The session id in its system, as text';
COMMENT ON COLUMN support_sessions.channel IS 'remote (Take Control), chat (SuperOffice), or mluvii''s channel in lower case';
COMMENT ON COLUMN support_sessions.customer_name IS 'Customer''s name where the system has one';
COMMENT ON COLUMN support_sessions.customer_email IS 'Customer''s email where the system has one';
COMMENT ON COLUMN support_sessions.agent IS 'Technician name (Take Control), associate id (SuperOffice), operators in join order (mluvii)';
COMMENT ON COLUMN support_sessions.requested_at IS 'When the customer asked: WhenRequested (SuperOffice), created (mluvii), session start (Take Control)';
COMMENT ON COLUMN support_sessions.started_at IS 'When an agent took the session';
COMMENT ON COLUMN support_sessions.ended_at IS 'When the session ended';
COMMENT ON COLUMN support_sessions.wait_seconds IS 'Customer''s wait: queue_seconds (SuperOffice), IN_QUEUE + WAITING or else waited (mluvii); NULL for Take Control';
COMMENT ON COLUMN support_sessions.handle_seconds IS 'Time agent and customer spent together: duration (Take Control), handle_seconds (SuperOffice), length (mluvii)';
COMMENT ON COLUMN support_sessions.after_work_seconds IS 'After-call work: ACW (mluvii); NULL elsewhere';
COMMENT ON COLUMN support_sessions.status IS 'Status in the system''s own words (Take Control: open or ended)';
