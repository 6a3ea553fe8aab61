"""Operator use cases run from the CLI: replay plans and lag, backfill, dead-letter redrive.

No loops: they never import the pipeline.
"""
