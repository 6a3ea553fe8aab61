"""Entry point of `python -m bench.e2e` (what `bench/run` calls)."""

from bench.e2e.cli import main

raise SystemExit(main())
