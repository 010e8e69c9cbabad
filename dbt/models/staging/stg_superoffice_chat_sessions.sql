-- SuperOffice chat sessions, in the names the marts use, with their topic's name (topics are
-- refreshed daily) and who closed the chat.
select s.account,
       s.chat_session_id::text   as session_id,
       s.user_associate_id::text as agent,
       s.customer_email,
       s.status,
       s.requested_at,
       s.started_at,
       s.ended_at,
       s.queue_seconds           as wait_seconds,
       s.handle_seconds,
       s.total_seconds,
       s.rating,
       s.topic_id,
       t.name                    as topic,
       s.closed_by,
       s.chatbot_is_active,
       s.source_deleted_at,
       s.last_synced_at
  from {{ source('sessionsync', 'superoffice_chat_sessions') }} s
  left join {{ source('sessionsync', 'superoffice_chat_topics') }} t
    on t.account = s.account and t.topic_id = s.topic_id
