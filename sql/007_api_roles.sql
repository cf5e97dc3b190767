-- Supabase's API roles get nothing, and every function has a fixed
-- search_path (issue 12, item 6).
--
-- Supabase runs, for the roles that create tables in public:
--   ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
-- (and the same ON FUNCTIONS and ON SEQUENCES), so every table the
-- migrations create is granted to the anon and authenticated keys of its
-- Data API. Row-level security hides the rows, but not from TRUNCATE, and
-- schema_migrations was created with RLS off. The service connects as the
-- tables' owner and needs none of these grants.


-- 1. A fixed search_path. A function that looks names up in the caller's
-- search_path can be made to call someone else's function or read someone
-- else's table: SECURITY DEFINER ones (the two triggers of 006 that run as
-- the tables' owner) most of all. Their "SET search_path FROM CURRENT" took
-- whatever the migrating session had, "$user" first. Now: the system
-- catalog, the schema our tables are in, and pg_temp last (listed, so that
-- it is not searched first for tables).
DO $$
DECLARE
    app_schema text := (SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = 'send_logs'::regclass);
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['send_logs_delete_with_mailouts()', 'send_logs_forget_subscribers()',
                              'send_logs_claim_lock()', 'refuse_id_change()']
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %s, pg_temp', fn, app_schema);
    END LOOP;
END
$$;

-- time_ordered_uuid() is send_logs.id's default, called once per row of a
-- million-row snapshot. A function with a SET clause is never inlined, and
-- each call would then pay for setting and restoring the search_path. A
-- column default is stored as a parsed expression (every function already
-- resolved to its OID), so it does not depend on any search_path: the
-- default becomes the function's expression itself, and the function goes.
ALTER TABLE send_logs ALTER COLUMN id SET DEFAULT
    encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(date_part('epoch', clock_timestamp()) * 1000)::bigint)
                                      FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),  -- version 4 (0100) becomes 7 (0111); the variant bits stay
        'hex')::uuid;
DROP FUNCTION time_ordered_uuid();


-- 2. What the API roles may do: nothing, on every table, sequence and
-- function of the schema our tables are in (the service expects that schema
-- to be its own; expose other tables from another schema). A no-op where
-- the roles do not exist. db.upgrade calls this again after every upgrade,
-- so a table or function a later migration adds (or someone adds by hand)
-- loses the grants Supabase's defaults give it too.
-- app_schema: the schema of our tables (its own search_path cannot find them).
CREATE FUNCTION revoke_api_roles(app_schema regnamespace) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    roles text := (SELECT string_agg(quote_ident(rolname), ', ' ORDER BY rolname)
                     FROM pg_roles WHERE rolname IN ('anon', 'authenticated'));
    object record;
BEGIN
    -- Functions are executable by PUBLIC unless revoked, and every role is
    -- a member of PUBLIC: revoked from PUBLIC too, whether or not the API
    -- roles exist. Only the objects the migrating role may change (it owns
    -- them, or is a member of their owner), and none an extension installed.
    FOR object IN
        SELECT 'FUNCTION ' || p.oid::regprocedure::text AS name
          FROM pg_proc p
         WHERE p.pronamespace = app_schema AND pg_has_role(p.proowner, 'USAGE')
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', object.name);
        IF roles IS NOT NULL THEN
            EXECUTE format('REVOKE ALL ON %s FROM %s', object.name, roles);
        END IF;
    END LOOP;
    IF roles IS NULL THEN
        RETURN;
    END IF;
    FOR object IN
        SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || c.oid::regclass::text AS name
          FROM pg_class c
         WHERE c.relnamespace = app_schema AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
           AND pg_has_role(c.relowner, 'USAGE')
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', object.name, roles);
    END LOOP;
    -- Objects the migrating role creates in this schema from now on. (The
    -- grant to PUBLIC of EXECUTE on new functions is global, not per schema,
    -- and is left alone: the call after every upgrade revokes it.)
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %s REVOKE ALL ON TABLES FROM %s', app_schema, roles);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %s REVOKE ALL ON SEQUENCES FROM %s', app_schema, roles);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %s REVOKE ALL ON FUNCTIONS FROM %s', app_schema, roles);
    EXECUTE format('ALTER DEFAULT PRIVILEGES REVOKE ALL ON TABLES FROM %s', roles);
    EXECUTE format('ALTER DEFAULT PRIVILEGES REVOKE ALL ON SEQUENCES FROM %s', roles);
    EXECUTE format('ALTER DEFAULT PRIVILEGES REVOKE ALL ON FUNCTIONS FROM %s', roles);
END
$$;

SELECT revoke_api_roles(relnamespace) FROM pg_class WHERE oid = 'schema_migrations'::regclass;
