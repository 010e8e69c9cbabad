-- Per day (UTC, by the request), source, account and feedback scale: the sessions the customer
-- rated and their average and distribution. Each scale has a row of its own, so stars of a
-- Likert scale and an NPS scale never average together (mluvii says which scale its stars are
-- on; SuperOffice's Rating has no named scale: `rating`). Counts what support_conversations
-- holds: sessions the vendor deleted only with var include_source_deleted.
select (requested_at at time zone 'UTC')::date                              as day,
       source,
       account,
       coalesce(feedback_scale, 'rating')                                    as scale,
       count(*)                                                              as rated,
       round(avg(feedback_stars), 2)                                         as average,
       min(feedback_stars)                                                   as lowest,
       max(feedback_stars)                                                   as highest
  from {{ ref('support_conversations') }}
 where requested_at is not null
   and feedback_stars is not null
 group by 1, 2, 3, 4
