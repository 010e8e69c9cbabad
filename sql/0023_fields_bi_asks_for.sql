-- Fields BI teams ask for that the vendors already send (warehouse.md): SuperOffice's topic names
-- and who closed a chat, mluvii's feedback scale, termination reason, whether the guest left,
-- chatbot involvement and the operators' notes. Columns derived from what sessionsync already
-- stores reach the rows stored before this migration through `sessionsync renormalize` (no vendor
-- request), which this migration says is due (table renormalize_due).

ALTER TABLE superoffice_chat_sessions ADD COLUMN closed_by text;
COMMENT ON COLUMN superoffice_chat_sessions.closed_by IS 'Who closed the chat, from its messages'' SpecialType (SuperOffice''s ChatMessageSpecialType ClosedByUser, ClosedByCustomer, ClosedByIdle): user, customer or idle; NULL while no such message is stored';

CREATE TABLE superoffice_chat_topics (
    account     text        NOT NULL,
    topic_id    int         NOT NULL,
    name        text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, topic_id)
);
COMMENT ON TABLE superoffice_chat_topics IS 'SuperOffice chat topics (the queues chats arrive in), refreshed daily from ChatTopicsForUser; join superoffice_chat_sessions on (account, topic_id)';
COMMENT ON COLUMN superoffice_chat_topics.account IS 'Configured account name';
COMMENT ON COLUMN superoffice_chat_topics.topic_id IS 'ChatTopicId (superoffice_chat_sessions.topic_id)';
COMMENT ON COLUMN superoffice_chat_topics.name IS 'The topic''s name';
COMMENT ON COLUMN superoffice_chat_topics.updated_at IS 'When sessionsync last read it (daily)';

ALTER TABLE mluvii_sessions
    ADD COLUMN guest_feedback_scale text,
    ADD COLUMN termination_reason text,
    ADD COLUMN guest_left boolean,
    ADD COLUMN chatbot boolean;
COMMENT ON COLUMN mluvii_sessions.guest_feedback_scale IS 'The scale guest_feedback_stars is on (GuestFeedbackScale): likert or nps, in lower case; stars of the two never average together';
COMMENT ON COLUMN mluvii_sessions.termination_reason IS 'Why the session ended, as mluvii names it (its TerminationReason)';
COMMENT ON COLUMN mluvii_sessions.guest_left IS 'The guest left the session (mluvii''s GuestLeft)';
COMMENT ON COLUMN mluvii_sessions.chatbot IS 'A chatbot took part in the session';

ALTER TABLE mluvii_session_operators ADD COLUMN note text;
COMMENT ON COLUMN mluvii_session_operators.note IS 'The operator''s note on the session (free text: personal data, class free_text)';

-- support_sessions gains what BI filters and groups by across systems, at its end.
CREATE OR REPLACE VIEW support_sessions AS
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
       CASE WHEN t.ended_at IS NULL THEN 'open' ELSE 'ended' END AS status,
       t.source_deleted_at,
       NULL::text                    AS topic,
       NULL::text                    AS closed_by,
       NULL::int                     AS feedback_stars,
       NULL::text                    AS feedback_scale,
       NULL::boolean                 AS chatbot
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
       s.status,
       s.source_deleted_at,
       (SELECT c.name FROM superoffice_chat_topics c
         WHERE c.account = s.account AND c.topic_id = s.topic_id),
       s.closed_by,
       s.rating,
       NULL::text,
       s.chatbot_is_active
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
       m.status,
       m.source_deleted_at,
       NULL::text,
       NULL::text,
       m.guest_feedback_stars,
       m.guest_feedback_scale,
       m.chatbot
  FROM mluvii_sessions m
  LEFT JOIN mluvii_session_durations d USING (account, session_id);

COMMENT ON COLUMN support_sessions.topic IS 'The chat topic''s name (SuperOffice); NULL elsewhere';
COMMENT ON COLUMN support_sessions.closed_by IS 'Who closed the chat: user, customer or idle (SuperOffice); NULL elsewhere or while unknown';
COMMENT ON COLUMN support_sessions.feedback_stars IS 'The customer''s rating: SuperOffice Rating, mluvii guestFeedbackStars (on feedback_scale)';
COMMENT ON COLUMN support_sessions.feedback_scale IS 'The scale of feedback_stars where the system says: likert or nps (mluvii); never average across scales';
COMMENT ON COLUMN support_sessions.chatbot IS 'A chatbot took part (mluvii) or was active (SuperOffice ChatbotIsActive)';

-- What a renormalize must bring to the rows stored before a migration (`sessionsync renormalize`
-- clears a source's row once it has rebuilt every account's rows).
CREATE TABLE renormalize_due (
    source     text        PRIMARY KEY,
    migration  text        NOT NULL,
    reason     text        NOT NULL,
    since      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE renormalize_due IS 'Sources whose stored rows a migration gave new derived columns: `sessionsync renormalize --source S` rebuilds them from the stored raw, with no vendor request, and removes the row';
COMMENT ON COLUMN renormalize_due.source IS 'Source system';
COMMENT ON COLUMN renormalize_due.migration IS 'The migration that added the columns';
COMMENT ON COLUMN renormalize_due.reason IS 'What the rebuild brings to stored rows';
COMMENT ON COLUMN renormalize_due.since IS 'When the migration ran';

INSERT INTO renormalize_due (source, migration, reason)
SELECT 'mluvii', '0023', 'guest_feedback_scale, termination_reason, guest_left, chatbot and the operators'' note, from the stored SessionModels'
 WHERE EXISTS (SELECT 1 FROM mluvii_sessions);
INSERT INTO renormalize_due (source, migration, reason)
SELECT 'superoffice', '0023', 'closed_by, from the stored messages'
 WHERE EXISTS (SELECT 1 FROM superoffice_chat_sessions);
