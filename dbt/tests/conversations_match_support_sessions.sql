-- The marts count what the SQL views count: per source and account, as many conversations as
-- support_sessions has sessions (those the vendor deleted only with var include_source_deleted).
with v as (select source, account, count(*) as n from {{ source('sessionsync', 'support_sessions') }}
            {% if not var('include_source_deleted') %} where source_deleted_at is null {% endif %}
           group by 1, 2),
     m as (select source, account, count(*) as n from {{ ref('support_conversations') }} group by 1, 2)
select coalesce(v.source, m.source) as source, coalesce(v.account, m.account) as account, v.n as view_sessions, m.n as mart_sessions
  from v full join m on m.source = v.source and m.account = v.account
 where v.n is distinct from m.n
