"""PostgreSQL: the Torus tables and the service's own, one module per table family.

Every SQL statement on a table family lives in that family's module; nothing else in the
product holds SQL text on the service's tables (a test checks it).
"""
