-- The completeness audit, per account and UTC day: the latest audit of each day (`sessionsync
-- audit`, or the daemon's daily one), and whether the warehouse matched the vendor's own list.
select distinct on (source, account, day)
       day,
       source,
       account,
       listed,
       stored,
       missing,
       gone,
       complete,
       (complete and listed = stored)                                        as matches_vendor,
       audited_at,
       run_id,
       error
  from {{ source('sessionsync', 'audits') }}
 order by source, account, day, run_id desc
