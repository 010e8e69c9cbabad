-- support_agent_daily measures what support_daily measures, the same way: per day, source,
-- account and agent, the same sessions and the same median handle time (both leave out the
-- sessions the vendor deleted; with var include_source_deleted the mart counts them, and this
-- comparison does not apply).
select coalesce(d.day, a.day) as day, coalesce(d.source, a.source) as source,
       coalesce(d.account, a.account) as account, coalesce(d.agent, a.agent) as agent,
       d.sessions as view_sessions, a.sessions as mart_sessions,
       d.handle_p50_seconds as view_p50, a.handle_p50_seconds as mart_p50
  from {{ source('sessionsync', 'support_daily') }} d
  full join {{ ref('support_agent_daily') }} a
    on a.day = d.day and a.source = d.source and a.account = d.account and a.agent = d.agent
 where (d.sessions is distinct from a.sessions
        or abs(coalesce(d.handle_p50_seconds, -1) - coalesce(a.handle_p50_seconds, -1)) > 1e-6)
{% if var('include_source_deleted') %}   and false{% endif %}
