"""The CLI's error path on exceptions as libraries chain them."""

from __future__ import annotations

import sqlalchemy as sa

from consumer.cli.failures import ExitCode, explain


def _raised_while_interrupted() -> BaseException:
    """What SQLAlchemy raises when Ctrl-C lands in its pool's pre-ping: the clean-up fails on
    the interrupted connection, with the interrupt as the context of that failure."""
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            try:
                raise RuntimeError("can't change 'autocommit' now")
            except RuntimeError as cleanup:
                raise sa.exc.ProgrammingError("SELECT 1", None, cleanup) from cleanup
    except sa.exc.ProgrammingError as exc:
        assert isinstance(exc.__cause__.__context__, KeyboardInterrupt)  # type: ignore[union-attr]
        return exc
    raise AssertionError("unreachable")


def test_an_error_raised_while_a_ctrl_c_unwound_is_the_interrupt() -> None:
    assert explain(_raised_while_interrupted()) == (ExitCode.INTERRUPTED, ["interrupted"])


def test_an_interrupt_in_the_context_behind_an_explicit_cause_is_found() -> None:
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise sa.exc.OperationalError("SELECT 1", None, RuntimeError("x")) from ValueError()
    except sa.exc.OperationalError as exc:
        assert explain(exc) == (ExitCode.INTERRUPTED, ["interrupted"])


def test_an_error_without_an_interrupt_behind_it_is_not_one() -> None:
    try:
        raise sa.exc.ProgrammingError("SELECT 1", None, RuntimeError("syntax"))
    except sa.exc.ProgrammingError as exc:
        assert explain(exc) is None  # a bug: Python's traceback


def test_a_chain_that_loops_ends() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__context__, second.__context__ = second, first
    assert explain(first) is None
