-- Per day (UTC, by the request), source, account and channel: conversations offered, answered
-- and abandoned, and the service level: the share of the conversations offered that were
-- answered within `service_level_seconds` (abandoned and still waiting ones count against it).
-- Take Control has no queue, so no service level: NULL.
-- Counts what support_conversations holds: sessions the vendor deleted only with var
-- include_source_deleted.
select (requested_at at time zone 'UTC')::date                              as day,
       source,
       account,
       channel,
       count(*)                                                              as offered,
       count(*) filter (where started_at is not null)                        as answered,
       count(*) filter (where abandoned)                                     as abandoned,
       case when source = 'takecontrol' then null
            else round(100.0 * count(*) filter (where answered_within_service_level) / count(*), 1)
       end                                                                   as service_level_pct
  from {{ ref('support_conversations') }}
 where requested_at is not null
 group by 1, 2, 3, 4
