-- SuperOffice's CustomerCompanyName is customer_identity (privacy.md section 1): until now it had no
-- class and was stored in clear under every policy, so a row labelled with a customer_identity of
-- `hash` or `drop` held it in clear. SQL has no key, so this migration only records the conversion
-- as pending; sessionsync performs it at its next start with the configured keys
-- (personal::conversions): under `hash` the value is hashed with the key the row's label names, under
-- `drop` it is removed, in the column and in `raw`; then the labels tell the truth again.
CREATE TABLE conversions (
    name text PRIMARY KEY,
    done_at timestamptz
);
COMMENT ON TABLE conversions IS 'Conversions of stored rows that need the hash keys, done by sessionsync at start (a class given to a field that had none)';
COMMENT ON COLUMN conversions.name IS 'Which conversion';
COMMENT ON COLUMN conversions.done_at IS 'When it finished (NULL: still to do)';
INSERT INTO conversions (name) VALUES ('superoffice_company_name');
