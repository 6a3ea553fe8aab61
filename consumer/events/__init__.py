"""The event contracts: the Avro schema catalogue, compatibility, the codec and CloudEvents.

fastavro and the schema-registry client only; no Kafka messages, no database.
"""
