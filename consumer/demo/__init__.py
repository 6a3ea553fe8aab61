"""`cert-consumer demo`: the service end to end on embedded PostgreSQL and Kafka.

Only the CLI imports it, lazily, so the product runs without the demo's extras.
"""
