-- mluvii's guest.callParams hold a caller's phone number or e-mail address as a parameter value
-- (privacy.md section 3): `erase --phone` and `--email` find them, in clear or hashed. Under `hash`
-- each value is now hashed on its own (normalized as a phone number when it looks like one, as text
-- otherwise: sources/mluvii/personal.rs, privacy::fields::param_kind), and this index holds every
-- session's parameter values normalized the same way, so that erase finds them by one probe.
-- Sessions hashed before keep their call parameters hashed as one value until they are read again.
-- (Builtins only in the body: PostgreSQL inlines it wherever it plans a query on the table, also
-- in a BI session whose search_path does not name this schema.)
CREATE FUNCTION sessionsync_call_params(raw jsonb) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT coalesce(array_agg(CASE
            WHEN btrim(x.v) ~ '^[0-9a-f]{64}$' THEN btrim(x.v)
            WHEN x.v NOT LIKE '%@%' AND btrim(x.v) ~ '^[+0-9 ().\-/]+$'
                 AND length(regexp_replace(x.v, '[^0-9]', '', 'g')) >= 6
                THEN regexp_replace(btrim(x.v), '[^+0-9]', '', 'g')
            ELSE lower(regexp_replace(btrim(x.v), '\s+', ' ', 'g')) END), '{}') FROM (
        SELECT e.v FROM jsonb_each_text(CASE WHEN jsonb_typeof(raw -> 'guest' -> 'callParams') = 'object'
                                             THEN raw -> 'guest' -> 'callParams' ELSE '{}' END) AS e(k, v)
        UNION ALL
        SELECT a.v FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(raw -> 'guest' -> 'callParams') = 'array'
                                                       THEN raw -> 'guest' -> 'callParams' ELSE '[]' END) AS a(v)
        UNION ALL
        SELECT raw -> 'guest' ->> 'callParams' WHERE jsonb_typeof(raw -> 'guest' -> 'callParams') = 'string'
    ) AS x WHERE x.v IS NOT NULL AND btrim(x.v) <> '' $$;
COMMENT ON FUNCTION sessionsync_call_params(jsonb) IS 'The values of a mluvii session''s guest.callParams, each normalized as a phone number or as text (as privacy::fields::param_kind), for erase';
CREATE INDEX mluvii_sessions_call_params_idx ON mluvii_sessions USING gin (sessionsync_call_params(raw));
