-- One row per session of the three systems. Wait, handle and after-work seconds are the ones
-- sessionsync computed (the view support_sessions); the first response comes from the
-- transcripts where there are any. Sessions the vendor deleted are left out (so that counts
-- match the vendor's own dashboard) unless var include_source_deleted is true.
select s.source,
       s.account,
       s.session_id,
       s.channel,
       s.agent,
       s.customer_email,
       s.requested_at,
       s.started_at,
       s.ended_at,
       s.wait_seconds,
       f.first_response_seconds,
       s.handle_seconds,
       s.after_work_seconds,
       s.status,
       s.topic,
       s.closed_by,
       s.feedback_stars,
       s.feedback_scale,
       s.chatbot,
       s.source_deleted_at,
       -- Ended without an agent ever taking it.
       (s.started_at is null and s.ended_at is not null)                         as abandoned,
       (s.wait_seconds is not null
        and s.wait_seconds <= {{ var('service_level_seconds') }})                as answered_within_service_level
  from {{ source('sessionsync', 'support_sessions') }} s
  left join {{ ref('stg_first_responses') }} f
    on f.source = s.source and f.account = s.account and f.session_id = s.session_id
{% if not var('include_source_deleted') %}
 where s.source_deleted_at is null
{% endif %}
