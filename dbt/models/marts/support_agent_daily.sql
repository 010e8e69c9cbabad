-- Per agent and day (UTC, by the request), source and account: sessions, those handled, and
-- the median and p90 of handle time, median first response and after-call work.
-- Counts what support_conversations holds: sessions the vendor deleted only with var
-- include_source_deleted.
select (requested_at at time zone 'UTC')::date                              as day,
       source,
       account,
       coalesce(agent, '(none)')                                             as agent,
       count(*)                                                              as sessions,
       count(*) filter (where started_at is not null)                        as sessions_handled,
       {{ percentile('handle_seconds', 0.5) }}                               as handle_p50_seconds,
       {{ percentile('handle_seconds', 0.9) }}                               as handle_p90_seconds,
       {{ percentile('first_response_seconds', 0.5) }}                       as first_response_p50_seconds,
       {{ percentile('after_work_seconds', 0.5) }}                           as after_work_p50_seconds
  from {{ ref('support_conversations') }}
 where requested_at is not null
 group by 1, 2, 3, 4
