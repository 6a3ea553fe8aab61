"""One place that remembers everything the benchmark started, so that a failed phase, Ctrl-C,
SIGTERM or an uncaught exception still leaves nothing running (processes, broker, PostgreSQL,
temporary folders)."""

from __future__ import annotations

import atexit
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

_lock = threading.Lock()
_actions: list[tuple[str, Callable[[], None]]] = []


def register(name: str, action: Callable[[], None]) -> Callable[[], None]:
    """Remember ``action`` (idempotent is best) to run at exit; returns a function that forgets
    it again (call it once the thing is stopped the ordinary way)."""
    entry = (name, action)
    with _lock:
        _actions.append(entry)

    def forget() -> None:
        with _lock:
            if entry in _actions:
                _actions.remove(entry)

    return forget


def run_all() -> None:
    """Run every remembered action, newest first; one failing does not stop the others."""
    while True:
        with _lock:
            if not _actions:
                return
            name, action = _actions.pop()
        try:
            action()
        except Exception as exc:  # cleanup must go on whatever one step does
            print(f"bench: cleanup of {name} failed: {exc}", file=sys.stderr)


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    # Raise in the main thread so every try/finally runs, then atexit.
    raise SystemExit(128 + signum)


def install() -> None:
    """Run the actions at interpreter exit and turn SIGTERM/SIGHUP into SystemExit."""
    atexit.register(run_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
