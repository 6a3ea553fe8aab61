"""Who owned which input partition when, from the services' own JSON log lines
(``partitions_assigned`` / ``partitions_revoked`` / ``partitions_lost``) and the moments the
harness saw each process end; and the longest stretch with a partition owned by nobody."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_CHANGES = {"partitions_assigned": 1, "partitions_revoked": -1, "partitions_lost": -1}


@dataclass(frozen=True)
class Change:
    at: float
    owner: str
    partition: str
    delta: int


def changes_in_log(owner: str, path: Path, ended_at: float | None) -> list[Change]:
    """Ownership changes of one process; an ended process owns nothing after ``ended_at``."""
    found: list[Change] = []
    held: set[str] = set()
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        delta = _CHANGES.get(entry.get("event", ""))
        if delta is None:
            continue
        at = datetime.fromisoformat(entry["timestamp"]).timestamp()
        for partition in entry.get("partitions", []):
            if (delta > 0) != (partition in held):
                found.append(Change(at, owner, partition, delta))
                (held.add if delta > 0 else held.discard)(partition)
    if ended_at is not None:
        found += [Change(ended_at, owner, p, -1) for p in sorted(held)]
    return found


def longest_unassigned(changes: list[Change], partitions: set[str], until: float) -> float:
    """The longest stretch, after every partition was first assigned, with some partition of
    ``partitions`` owned by nobody (seconds); a stretch still open at ``until`` counts to it."""
    owners = dict.fromkeys(partitions, 0)
    started = False
    gap_since: float | None = None
    longest = 0.0
    for change in sorted(changes, key=lambda c: (c.at, -c.delta)):
        if change.partition not in owners:
            continue
        owners[change.partition] += change.delta
        covered = all(n > 0 for n in owners.values())
        if covered:
            started = True
            if gap_since is not None:
                longest = max(longest, change.at - gap_since)
                gap_since = None
        elif started and gap_since is None:
            gap_since = change.at
    if gap_since is not None:
        longest = max(longest, until - gap_since)
    return longest
