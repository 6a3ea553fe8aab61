"""Kit for tests, the demo and the benchmarks: embedded PostgreSQL, embedded Kafka, seeding.

The product never imports it.
"""
