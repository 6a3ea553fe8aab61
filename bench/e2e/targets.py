"""The targets the report compares against. They are reported, never asserted: a missed
target is a finding, not a failed benchmark."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PEAK_RSS_MB = 200.0
FULL_PENDING_KEYS = 1_000_000
FULL_EVAL_KEYS = 20_000


@dataclass(frozen=True)
class Target:
    name: str
    figure: float | None
    target: float
    unit: str
    higher_is_better: bool
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """>= 1 means met: figure/target for at-least targets, target/figure for at-most
        (None for a figure of 0 under an at-most target: met, by any ratio)."""
        if self.figure is None or self.figure <= 0:
            return None
        return self.figure / self.target if self.higher_is_better else self.target / self.figure

    @property
    def verdict(self) -> str:
        if self.figure is None:
            return "n/a"
        if self.ratio is None:
            return "MISSED" if self.higher_is_better else "MET"
        return "MET" if self.ratio >= 1 else "MISSED"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "figure": self.figure,
            "target": self.target,
            "unit": self.unit,
            "ratio": self.ratio,
            "verdict": self.verdict,
            "note": self.note,
        }


def _ingest(r: dict[str, Any]) -> list[Target]:
    return [
        Target(
            "Ingest rate incl. committed offsets / consume+decode ceiling",
            r["ratio_committed_to_decode_ceiling"],
            0.9,
            "x",
            True,
            f"{r['service_events_per_s_committed']:,.0f} vs "
            f"{r['ceiling_consume_decode']['events_per_s']:,.0f} events/s",
        )
    ]


def _evaluation(r: dict[str, Any]) -> list[Target]:
    note = "" if r["keys"] >= FULL_EVAL_KEYS else f"only {r['keys']:,} keys (quick mode)"
    return [
        Target(
            f"Evaluation rate, {r['keys']:,} keys due at once",
            r["service_keys_per_s"],
            10_000,
            "keys/s",
            True,
            note,
        ),
        Target(
            "Evaluation rate / one key per call",
            r["ratio_to_one_key_per_call"],
            30,
            "x",
            True,
            f"{r['service_keys_per_s']:,.0f} vs {r['one_key_per_call']['keys_per_s']:,.0f} keys/s",
        ),
    ]


def _paced(r: dict[str, Any], quiet: float) -> list[Target]:
    rows = []
    for rate, entry in sorted(r["rates"].items(), key=lambda kv: int(kv[0])):
        if "baseline_to_service_ratio" in entry:
            svc = entry["service"]["statements_per_event"]
            base = entry["baseline"]["statements_per_event"]
            rows.append(
                Target(
                    f"Statements per event, baseline / service at {rate} ev/s",
                    entry["baseline_to_service_ratio"],
                    20,
                    "x",
                    True,
                    f"service {svc:.3f}, baseline {base:.2f} statements/event",
                )
            )
    for rate, entry in sorted(r["rates"].items(), key=lambda kv: int(kv[0])):
        latency = entry["service"]["latency_s"]
        if int(rate) in (400, 2000) and latency:
            rows.append(
                Target(
                    f"p99 latency last trigger -> delivered at {rate} ev/s",
                    latency["p99"],
                    quiet + 0.3,
                    "s",
                    False,
                    f"quiet window {quiet:g} s + 0.3 s",
                )
            )
    return rows


def _idle(r: dict[str, Any]) -> list[Target]:
    how = "worst of: each role alone, all roles / 3" if r["per_role"] else "all roles / 3"
    return [
        Target(
            "Idle statements per second per loop",
            r["worst_loop_statements_per_s"],
            1.0,
            "statements/s",
            False,
            how,
        )
    ]


def _memory(r: dict[str, Any]) -> list[Target]:
    note = "" if r["keys"] >= FULL_PENDING_KEYS else f"only {r['keys']:,} keys (quick mode)"
    return [
        Target(
            f"Peak RSS with {r['keys']:,} pending keys",
            r["peak_rss_bytes"] / 2**20,
            PEAK_RSS_MB,
            "MB",
            False,
            note,
        )
    ]


def evaluate(results: dict[str, Any], quiet_window_s: float) -> list[Target]:
    """Every target whose phase ran (and did not fail)."""
    rows: list[Target] = []
    ok = {name: r for name, r in results.items() if isinstance(r, dict) and "error" not in r}
    if "ingest" in ok:
        rows += _ingest(ok["ingest"])
    if "evaluation" in ok:
        rows += _evaluation(ok["evaluation"])
    if "paced" in ok:
        rows += _paced(ok["paced"], quiet_window_s)
    if "idle" in ok:
        rows += _idle(ok["idle"])
    if "memory" in ok:
        rows += _memory(ok["memory"])
    return rows
