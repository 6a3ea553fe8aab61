"""The certification rules and their values: pure functions of a facts snapshot.

Standard library only (the architecture test enforces it): no database, broker or clock.
"""
