-- Warns on a day whose latest complete audit still found fewer sessions stored than the vendor
-- lists (a listed session could not be stored: see rejected_records and the audit's run in
-- sync_runs).
{{ config(severity='warn') }}
select day, source, account, listed, stored
  from {{ ref('audit_completeness') }}
 where complete and stored < listed
