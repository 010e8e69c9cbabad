-- The window size the engine settled on for a stream whose windows it sizes (Take Control), so
-- that the next run, in this process or another, starts there.

ALTER TABLE sync_state ADD COLUMN window_seconds int;
COMMENT ON COLUMN sync_state.window_seconds IS 'Window size in seconds the engine last used for this stream (adaptive sizing); NULL for streams whose source plans its own windows';
