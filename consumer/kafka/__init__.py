"""librdkafka: client configurations, produce-and-wait, dead-letter copies that fit.

No database and no loops.
"""
