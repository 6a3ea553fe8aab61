"""What every `cert-consumer` subcommand does first: settings from the environment, overridden
by its flags, then logging set up from them."""

from __future__ import annotations

import argparse
import os
from typing import Any

from consumer.config import Settings, load_settings
from consumer.observability import logs


def command_settings(
    args: argparse.Namespace, *, require_database: bool = True, **overrides: Any
) -> Settings:
    """Settings for one command; ``--database-url`` / ``--bootstrap-servers`` flags win."""
    settings = load_settings(
        os.environ,
        require_database=require_database,
        database_url=getattr(args, "database_url", None),
        bootstrap_servers=getattr(args, "bootstrap_servers", None),
        **overrides,
    )
    logs.configure(settings.log_level, settings.log_format)  # type: ignore[arg-type]
    return settings
