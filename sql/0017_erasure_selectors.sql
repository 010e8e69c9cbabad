-- The erasure list is not a join key (privacy.md section 3). Until now `selector_hash` was
-- HMAC(hash_key, normalized value): exactly what a `hash` policy stores for the same value, so any
-- hashed extract joined to the list of people who asked to be erased. From now on it is derived
-- apart: HMAC(selector key, HMAC(hash_key, normalized value)), the selector key itself derived
-- from hash_key, so it equals no stored hash and cannot be computed without the key.
--
-- SQL has no key, so this migration only marks the rows recorded so far (`derivation = 'hmac'`).
-- sessionsync recomputes them, with the configured hash_key, as soon as it starts with one
-- (warehouse::privacy::separate_selectors, under the erasure lock): the new derivation is a
-- function of the old hash, so no value is needed. Until then each process reads such a row
-- through the same function, so the erasure stays in force. A row recorded under a key that is
-- no longer configured cannot be recomputed and keeps matching nothing (as before: a key change
-- cancelled such erasures; see `previous_hash_keys`).
ALTER TABLE erasures ADD COLUMN derivation text NOT NULL DEFAULT 'hmac';
ALTER TABLE erasures ALTER COLUMN derivation SET DEFAULT 'selector';
COMMENT ON COLUMN erasures.derivation IS 'How selector_hash was derived: selector (HMAC of the policy hash under a key derived for erasures: equal to no stored hash) or hmac (recorded before migration 0017, recomputed at the next start with the key)';
COMMENT ON COLUMN erasures.selector_hash IS 'HMAC-SHA256(selector key, HMAC-SHA256(hash_key, normalized selector)), lower-case hex: never equal to a hash a policy stores';
-- Key rotation (privacy.md section 2): which key an erasure's selector was derived under, as the
-- key's fingerprint (8 hex digits, the one row labels carry). NULL for the rows recorded before;
-- the conversion above sets the key it used.
ALTER TABLE erasures ADD COLUMN key_id text;
COMMENT ON COLUMN erasures.key_id IS 'Fingerprint of the hash key the selector was derived under (NULL: recorded before migration 0017, not yet converted)';
-- The hash keys stored rows were hashed under (their fingerprints), kept as they are written, so
-- that the check at start that no key still in use was removed reads this small table rather than
-- every row's label. Filled here once from the labels stored so far.
CREATE TABLE hash_keys (
    key_id text PRIMARY KEY,
    first_seen timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE hash_keys IS 'Fingerprints of the hash keys stored rows were hashed under (privacy_policy labels), for the check that no key still in use was removed';
COMMENT ON COLUMN hash_keys.key_id IS 'Fingerprint of a hash key (8 hex digits), as labels carry it';
COMMENT ON COLUMN hash_keys.first_seen IS 'When a row was first written under it';
INSERT INTO hash_keys (key_id)
SELECT DISTINCT split_part(privacy_policy, ':', 2) FROM (
    SELECT privacy_policy FROM takecontrol_sessions
    UNION ALL SELECT privacy_policy FROM superoffice_chat_sessions
    UNION ALL SELECT privacy_policy FROM mluvii_sessions) AS labels
WHERE privacy_policy LIKE '%:%'
ON CONFLICT DO NOTHING;
-- The rows still to convert, found without reading the others.
CREATE INDEX erasures_to_convert_idx ON erasures (id) WHERE derivation = 'hmac';
