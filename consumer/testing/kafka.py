"""Kafka embedded in the process: librdkafka's mock cluster, for the demo.

Consumer groups (range and cooperative-sticky), committed offsets and list_offsets work on it;
describe groups, transactions and CreateTopics do not, so the runtime depends on none of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import Producer

from consumer.errors import FatalError

# librdkafka writes its logs straight to the process's stderr, through the live view; real
# errors still reach the clients' error callbacks and the service's structured logs.
QUIET_KAFKA = {"log_level": "3", "log.connection.close": "false"}


class EmbeddedKafka:
    """librdkafka's mock cluster, alive as long as its holder client is.

    The Python client has no accessor for the mock cluster's address, but the holder's own
    metadata names its broker, and any client can bootstrap from there.
    """

    def __init__(self) -> None:
        config = {"test.mock.num.brokers": 1, "client.id": "demo-kafka", **QUIET_KAFKA}
        self._holder = Producer(config)
        brokers = self._holder.list_topics(timeout=10).brokers.values()
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers)

    def create_topics(self, names: Sequence[str]) -> dict[str, int]:
        """Create topics by naming them in a metadata request (the mock cluster auto-creates
        them; it does not support CreateTopics); return each one's partition count."""
        found = {}
        for name in names:
            topic = self._holder.list_topics(topic=name, timeout=10).topics[name]
            if topic.error is not None:
                raise FatalError(f"embedded Kafka could not create {name}: {topic.error}")
            found[name] = len(topic.partitions)
        return found

    def close(self) -> None:
        self._holder.close()
