-- mluvii sessions with their durations (seed 002's formulas, as sessionsync computed them).
select m.account,
       m.session_id::text      as session_id,
       m.channel,
       m.source                as origin,
       m.status,
       m.created_at            as requested_at,
       m.started_at,
       m.ended_at,
       d.in_queue_seconds,
       d.waiting_seconds,
       d.active_seconds,
       d.acw_seconds,
       d.ring_seconds,
       m.guest_feedback_stars,
       m.guest_feedback_scale,
       m.termination_reason,
       m.guest_left,
       m.chatbot,
       m.source_deleted_at,
       m.last_synced_at
  from {{ source('sessionsync', 'mluvii_sessions') }} m
  left join {{ source('sessionsync', 'mluvii_session_durations') }} d using (account, session_id)
