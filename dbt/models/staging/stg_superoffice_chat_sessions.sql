-- SuperOffice chat sessions, in the names the marts use.
select account,
       chat_session_id::text   as session_id,
       user_associate_id::text as agent,
       customer_email,
       status,
       requested_at,
       started_at,
       ended_at,
       queue_seconds           as wait_seconds,
       handle_seconds,
       total_seconds,
       rating,
       source_deleted_at,
       last_synced_at
  from {{ source('sessionsync', 'superoffice_chat_sessions') }}
