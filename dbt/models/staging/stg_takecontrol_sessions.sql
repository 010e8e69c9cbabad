-- Take Control sessions, in the names the marts use.
select account,
       session_id::text        as session_id,
       coalesce(tech_name, tech_username) as agent,
       customer_email,
       started_at,
       ended_at,
       duration_seconds        as handle_seconds,
       has_videos,
       source_deleted_at,
       last_synced_at
  from {{ source('sessionsync', 'takecontrol_sessions') }}
