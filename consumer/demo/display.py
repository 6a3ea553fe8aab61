"""What the demo shows: the pipeline live, and its outputs as downstream services receive them.

Owns the demo's view of the world: ``OutputWatcher`` reads the output topics the way the mailer
and PDF services would (deduplicating on ce_id, as the README asks of them), and the displays
render immutable ``Snapshot``s: ``rich`` in place on a terminal, plain lines anywhere else so CI
logs stay readable. Nothing here writes to Kafka or the database, so the demo's control flow
and checks do not depend on how, or whether, they are shown.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from consumer.errors import FatalError
from consumer.events.codec import Codec
from consumer.events.envelope import parse_headers
from consumer.kafka.dead_letters import header_list

_SHOWN_OUTPUTS = 8


@dataclass(frozen=True)
class Received:
    """One output event as the mailer or PDF service gets it."""

    event_type: str  # certificate_granted | approval_requested
    ce_id: str
    student: str
    course: str
    label: str
    state: str
    recipients: int

    def describe(self) -> str:
        if self.event_type == "approval_requested":
            return (
                f"mailer asks {self.recipients} instructor(s) to approve {self.student}'s "
                f"{self.label} in {self.course}"
            )
        return f"PDF service renders {self.label} for {self.student} in {self.course}, then emails"


class OutputWatcher:
    """Reads the output topics like a downstream service; ``poll`` never blocks.

    Assigned rather than subscribed, so it reads from the first event without a group join.
    """

    def __init__(self, config: Mapping[str, Any], codec: Codec, partitions: dict[str, int]):
        self._codec = codec
        self._consumer = Consumer({**config, "enable.auto.commit": False})
        self._consumer.assign(
            [
                TopicPartition(t, p, OFFSET_BEGINNING)
                for t, n in partitions.items()
                for p in range(n)
            ]
        )
        self._seen: set[str] = set()
        self.received: list[Received] = []
        self.duplicates = 0

    def poll(self) -> None:
        for msg in self._consumer.consume(500, timeout=0):
            error = msg.error()
            if error is not None:
                raise FatalError(f"output watcher: {error}")
            self._receive(msg)

    def _receive(self, msg: Message) -> None:
        ce_id = parse_headers(header_list(msg)).id or ""
        if ce_id in self._seen:
            self.duplicates += 1
            return
        self._seen.add(ce_id)
        decoded = self._codec.decode(msg.value())
        record = decoded.record
        self.received.append(
            Received(
                event_type=decoded.event_type.value,
                ce_id=ce_id,
                student=record["student"]["name"],
                course=record["course_title"],
                label=record["certificate_label"],
                state=record["state"],
                recipients=len(record.get("recipients", ())),
            )
        )

    def close(self) -> None:
        self._consumer.close()


@dataclass(frozen=True)
class Snapshot:
    """The pipeline at one moment (see ``demo.Pipeline.snapshot`` for the reading order)."""

    phase: str
    phase_number: int
    phases: int
    elapsed: float
    produced: int
    consumed: int
    pending_keys: int
    evaluations: Mapping[str, int]  # by decision kind
    transitions: Mapping[str, int]  # create / upgrade
    earned: int
    pending_approval: int
    with_distinction: int
    outbox_total: int
    outbox_backlog: int
    received: tuple[Received, ...]
    duplicates: int

    def totals(self) -> dict[str, int]:
        """The service's results, named like ``demo_expected.Expected.totals``."""
        types = [event.event_type for event in self.received]
        return {
            "earned": self.earned,
            "pending": self.pending_approval,
            "with_distinction": self.with_distinction,
            "creates": self.transitions["create"],
            "upgrades": self.transitions["upgrade"],
            "granted_events": types.count("certificate_granted"),
            "approval_events": types.count("approval_requested"),
        }

    def settled(self) -> bool:
        """Every event produced is consumed, evaluated, published and received."""
        return (
            self.consumed >= self.produced
            and self.pending_keys == 0
            and self.outbox_backlog == 0
            and len(self.received) >= self.outbox_total
        )


class Display(Protocol):
    def start(self) -> None: ...
    def show(self, snapshot: Snapshot) -> None: ...
    def stop(self) -> None: ...


def make_display() -> Display:
    """Rich live view on a terminal, plain lines when stdout is a pipe or a file."""
    console = Console()
    return LiveDisplay(console) if console.is_terminal else PlainDisplay()


class PlainDisplay:
    """One line per phase and per output event received."""

    def __init__(self) -> None:
        self._phase = ""
        self._printed = 0

    def start(self) -> None:
        return None

    def show(self, snapshot: Snapshot) -> None:
        at = f"[{snapshot.elapsed:5.1f}s]"
        if snapshot.phase != self._phase:
            self._phase = snapshot.phase
            number = f"{snapshot.phase_number}/{snapshot.phases}"
            print(f"{at} phase {number}: {snapshot.phase}", flush=True)
        for event in snapshot.received[self._printed :]:
            print(f"{at}   -> {event.event_type}: {event.describe()}", flush=True)
        self._printed = len(snapshot.received)

    def stop(self) -> None:
        return None


class LiveDisplay:
    """The pipeline's counters and the latest output events, redrawn in place."""

    def __init__(self, console: Console) -> None:
        self._live = Live(console=console, auto_refresh=False)

    def start(self) -> None:
        self._live.start()

    def show(self, snapshot: Snapshot) -> None:
        self._live.update(render(snapshot), refresh=True)

    def stop(self) -> None:
        self._live.stop()


def _stages(snapshot: Snapshot) -> Table:
    table = Table(header_style="bold")
    for name, justify in (("stage", "left"), ("count", "right"), ("detail", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    ev = snapshot.evaluations
    decided = f"{ev['create']} create, {ev['upgrade']} upgrade, {ev['no_change']} no change"
    rows = (
        ("Torus events produced", snapshot.produced, "scores, posts, settings changes"),
        ("consumed by ingest", snapshot.consumed, "upserted into the durable debounce"),
        ("pending keys", snapshot.pending_keys, "waiting for their quiet window"),
        ("evaluations", sum(ev.values()), decided),
        ("certificates earned", snapshot.earned, ""),
        ("pending approval", snapshot.pending_approval, ""),
        ("with distinction", snapshot.with_distinction, ""),
        ("outbox events", snapshot.outbox_total, f"{snapshot.outbox_backlog} not yet published"),
    )
    for name, count, detail in rows:
        table.add_row(name, str(count), detail)
    return table


def render(snapshot: Snapshot) -> Group:
    """The live view: what flows through each stage, then what downstream received."""
    head = Text.assemble(
        ("cert-consumer demo ", "bold"),
        f"{snapshot.elapsed:5.1f}s  phase {snapshot.phase_number}/{snapshot.phases}: ",
        (snapshot.phase, "cyan"),
    )
    outputs = Table(title="output events as the mailer and PDF services receive them")
    for name in ("topic", "student", "course", "certificate", "state"):
        outputs.add_column(name)
    for event in snapshot.received[-_SHOWN_OUTPUTS:]:
        topic = event.event_type.replace("_", "-")
        outputs.add_row(topic, event.student, event.course, event.label, event.state)
    count = Text(f"{len(snapshot.received)} received, {snapshot.duplicates} duplicates skipped")
    return Group(head, _stages(snapshot), outputs, count)


def print_summary(report: Mapping[str, Any]) -> None:
    """Expected (from the plan and the rules) next to actual (from the service), per figure,
    then the whole report as one ``SUMMARY {json}`` line for scripts and tests."""
    expected, actual = report["expected"], report["actual"]
    print(f"\n{'':18}{'expected':>10}{'actual':>10}")
    for name, want in expected.items():
        got = actual.get(name)
        print(f"{name:18}{want:>10}{got!s:>10}  {'ok' if got == want else 'MISMATCH'}")
    print(f"SUMMARY {json.dumps(report, sort_keys=True)}", flush=True)


def print_keep_instructions(data_dir: Path, port: int) -> None:
    """How to look at the kept database: LocalPostgres.stop() stopped its server."""
    start = (
        "from pathlib import Path; from consumer.testing.postgres import LocalPostgres; "
        f"print(LocalPostgres(Path('{data_dir}'), {port}).start())"
    )
    print(f"\nThe database is kept in {data_dir} (server stopped). Start it again with")
    print(f'  .venv/bin/python -c "{start}"')
    print(f"then: psql postgresql://postgres@127.0.0.1:{port}/postgres")
    print("Stop it with LocalPostgres(...).stop(); delete the folder when done.")
