"""The report's PNGs: latency CDF per rate, throughput over time, statements per event by rate
(service vs baseline, log scale). matplotlib's object API only (no pyplot state, no display):
a Figure renders to a file on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from bench.e2e.sampler import Timeline


def latency_cdf(paced: dict[str, Any], quiet: float, path: Path) -> Path | None:
    rates = {r: e["service"]["latencies_s"] for r, e in paced["rates"].items() if "service" in e}
    rates = {r: v for r, v in rates.items() if v}
    if not rates:
        return None
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for rate, values in sorted(rates.items(), key=lambda kv: int(kv[0])):
        n = len(values)
        ax.step(values, [(i + 1) / n for i in range(n)], where="post", label=f"{rate} ev/s")
    ax.axvline(quiet + 0.3, color="grey", linestyle="--", label=f"target p99 {quiet + 0.3:g} s")
    ax.axhline(0.99, color="lightgrey", linestyle=":")
    ax.set_xlabel("last trigger produced -> output event read (s)")
    ax.set_ylabel("fraction of bursts")
    ax.set_title(f"Latency CDF (quiet window {quiet:g} s)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _rates(t: list[float], values: list[float]) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i in range(1, len(t)):
        dt = t[i] - t[i - 1]
        if dt > 0:
            xs.append(t[i])
            ys.append(max(0.0, values[i] - values[i - 1]) / dt)
    return xs, ys


def throughput(timelines: list[Timeline], path: Path) -> Path | None:
    shown = [tl for tl in timelines if len(tl.samples) > 2]
    if not shown:
        return None
    fig = Figure(figsize=(9, 2.3 * len(shown)))
    axes = fig.subplots(len(shown), 1, squeeze=False)
    for ax, tl in zip(axes[:, 0], shown, strict=True):
        t = [s.t for s in tl.samples]
        for name, values in (
            ("events consumed/s", [s.consumed for s in tl.samples]),
            ("evaluations/s", [s.evaluated for s in tl.samples]),
        ):
            xs, ys = _rates(t, values)
            if any(ys):
                ax.plot(xs, ys, label=name)
        ax.set_title(tl.label, fontsize=9)
        ax.set_ylabel("per s", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds since the service started (sampled from /metrics)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def statements_by_rate(paced: dict[str, Any], path: Path) -> Path | None:
    rows = [
        (int(r), e["service"]["statements_per_event"], e["baseline"]["statements_per_event"])
        for r, e in paced["rates"].items()
        if "baseline" in e and e["baseline"]["statements_per_event"]
    ]
    if not rows:
        return None
    rows.sort()
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    rates = [r for r, _, _ in rows]
    ax.plot(rates, [b for _, _, b in rows], marker="o", label="per-event baseline")
    ax.plot(rates, [s for _, s, _ in rows], marker="o", label="cert-consumer run")
    ax.plot(
        rates,
        [b / 20 for _, _, b in rows],
        linestyle="--",
        color="grey",
        label="target: baseline / 20",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(rates, [str(r) for r in rates])
    ax.set_xlabel("input rate (events/s)")
    ax.set_ylabel("SQL statements per event")
    ax.set_title("Statements per event (pg_stat_statements)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
