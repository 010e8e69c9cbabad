-- The first response of each session that has a transcript: seconds from the customer's
-- request to the first line an agent wrote (Take Control: `type` tech; SuperOffice:
-- `ToCustomer`). mluvii keeps no transcript table (its chat is in `raw`, under the privacy
-- policy), so its sessions have none.
with tc as (
    select 'takecontrol'::text as source, s.account, s.session_id::text as session_id,
           extract(epoch from min(m.sent_at) - s.started_at) as first_response_seconds
      from {{ source('sessionsync', 'takecontrol_sessions') }} s
      join {{ source('sessionsync', 'takecontrol_chat_messages') }} m using (account, session_id)
     where lower(m.author_type) in ('tech', 'technician') and m.sent_at >= s.started_at
     group by s.account, s.session_id, s.started_at
),
so as (
    select 'superoffice'::text as source, s.account, s.chat_session_id::text as session_id,
           extract(epoch from min(m.posted_at) - s.requested_at) as first_response_seconds
      from {{ source('sessionsync', 'superoffice_chat_sessions') }} s
      join {{ source('sessionsync', 'superoffice_chat_messages') }} m
        on m.account = s.account and m.chat_session_id = s.chat_session_id
     where m.type = 'ToCustomer' and m.posted_at >= s.requested_at
     group by s.account, s.chat_session_id, s.requested_at
)
select * from tc
union all
select * from so
