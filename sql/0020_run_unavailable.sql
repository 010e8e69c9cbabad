-- A run that ends because the vendor reports the tenant not running (SuperOffice's state API:
-- OfflineMaintenance during an upgrade, a weekly window ...) has a status of its own,
-- 'unavailable': it moved no watermark and is not a failure (operations.md, sources.md section 2).
ALTER TABLE sync_runs DROP CONSTRAINT sync_runs_status_check;
ALTER TABLE sync_runs ADD CONSTRAINT sync_runs_status_check
    CHECK (status IN ('running', 'succeeded', 'partial', 'failed', 'unavailable')) NOT VALID;
ALTER TABLE sync_runs VALIDATE CONSTRAINT sync_runs_status_check;
COMMENT ON COLUMN sync_runs.status IS 'running, succeeded, partial (progress kept, but records rejected or a window failed), failed, or unavailable (the vendor reported the tenant not running: nothing lost, not a failure)';
