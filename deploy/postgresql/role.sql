-- The certificate-consumer's own PostgreSQL role, with the least it needs on the Torus database.
--
-- Run once, as the database's owner or a superuser, connected to the Torus database:
--   psql "$TORUS_DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/postgresql/role.sql
-- then give the role its password out of band (it is never in a file of this repository):
--   psql "$TORUS_DATABASE_URL" -c '\password cert_consumer'
-- and run `cert-consumer db upgrade` as cert_consumer: its tables go into its own schema.
--
-- What it may do, and why (README, "Security"):
--   * LOGIN, nothing else at the cluster level (no CREATEDB, no CREATEROLE, no REPLICATION;
--     the Debezium connector, if used, has a role of its own).
--   * Own the schema cert_consumer: its queue, outbox and migrations, created by `db upgrade`.
--   * SELECT on the Torus tables a decision reads, and on users for the events' names and
--     emails.
--   * SELECT, INSERT, UPDATE on granted_certificates (and the sequence of its ids): the one
--     Torus table it writes. No DELETE anywhere in public.
-- The tests (tests/security) apply this file as it is and run the service as this role.

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cert_consumer') THEN
    CREATE ROLE cert_consumer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
  END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS cert_consumer AUTHORIZATION cert_consumer;

GRANT USAGE ON SCHEMA public TO cert_consumer;
GRANT SELECT ON
  public.users,
  public.sections,
  public.enrollments,
  public.enrollments_context_roles,
  public.certificates,
  public.resource_accesses,
  public.section_resources,
  public.posts
TO cert_consumer;
GRANT SELECT, INSERT, UPDATE ON public.granted_certificates TO cert_consumer;
GRANT USAGE ON SEQUENCE public.granted_certificates_id_seq TO cert_consumer;
