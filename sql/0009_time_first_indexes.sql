-- Every per-window statement must cost O(the window) whatever the planner knows (a new
-- account, an ANALYZE taken before an account's rows arrived, autovacuum off during a
-- backfill). A secondary index that starts with `account` lets the planner, when its statistics
-- say an account has no rows, probe a key through that index with `account = $1` as the only
-- index condition and the id as a filter: every probe (and every foreign-key check of a child
-- row) then reads all of the account's rows, and a backfill turns quadratic. With the time
-- column first, the only index that `account` alone can enter is the primary key, whose
-- conditions are then the whole key. BI's per-account time ranges still use these indexes: a
-- range scan on the time column with the account checked inside the index.

DROP INDEX takecontrol_sessions_started_idx;
CREATE INDEX takecontrol_sessions_started_idx ON takecontrol_sessions (started_at, account);

DROP INDEX mluvii_sessions_created_idx;
CREATE INDEX mluvii_sessions_created_idx ON mluvii_sessions (created_at, account);

DROP INDEX superoffice_chat_sessions_requested_idx;
CREATE INDEX superoffice_chat_sessions_requested_idx ON superoffice_chat_sessions (requested_at, account);
