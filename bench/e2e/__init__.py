"""`bench/run`: one command, one end-to-end benchmark report of `cert-consumer run`.

The service is only ever driven as a separate process (`cert-consumer run`), through its
environment, its input topics, its /metrics endpoint, its logs and its database, so the report
stays true while the service's internals change. See bench/README.md for what each phase
measures and how.
"""
