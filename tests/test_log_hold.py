"""A daemon's log lines wait in the handler while its Trio loop has work, and go when the loop waits.

Queueing a line wakes the log listener thread, which then takes the GIL at
the loop's next system call: in a failback that was the master's add
waiting 6 - 8 ms (docs/benchmarks.md). Real pipeline (``logsetup.configure``
with the terminal target, captured), real Trio loop through
``lifecycle.run_daemon``; no timing asserted.
"""

from __future__ import annotations

import logging

import pytest
import trio
import trio.lowlevel

from failoverd.cli import logsetup
from failoverd.runtime import lifecycle

log = logging.getLogger("failoverd.test_log_hold")


def test_the_loops_lines_are_held_until_it_waits_and_then_reach_the_log(capfd: pytest.CaptureFixture[str]) -> None:
    logsetup.configure("heartbeatd", "debug", "daemon")
    seen: dict[str, int] = {}

    async def serve(config: object) -> int:
        log.info("first line, while the loop works")
        log.info("second line, while the loop works")
        seen["held while working"] = logsetup.held_lines()
        await trio.lowlevel.checkpoint()  # other tasks may run: the loop does not wait yet
        seen["held after a checkpoint"] = logsetup.held_lines()
        await trio.sleep(0.01)  # the loop waits for the deadline
        seen["held after a wait"] = logsetup.held_lines()
        return 7

    try:
        assert lifecycle.run_daemon(serve, None) == 7
        assert seen == {"held while working": 2, "held after a checkpoint": 2, "held after a wait": 0}
        assert logsetup.flush()
    finally:
        logsetup.shutdown()
    err = capfd.readouterr().err
    assert err.index("first line, while the loop works") < err.index("second line, while the loop works")


def test_other_threads_lines_are_not_held(capfd: pytest.CaptureFixture[str]) -> None:
    logsetup.configure("heartbeatd", "debug", "daemon")
    seen: dict[str, int] = {}

    async def serve(config: object) -> int:
        await trio.to_thread.run_sync(log.info, "from a worker thread")
        seen["held"] = logsetup.held_lines()
        return 0

    try:
        lifecycle.run_daemon(serve, None)
        assert logsetup.flush()
    finally:
        logsetup.shutdown()
    assert seen == {"held": 0}
    assert "from a worker thread" in capfd.readouterr().err


def test_held_lines_are_bounded_and_keep_their_order(capfd: pytest.CaptureFixture[str]) -> None:
    logsetup.configure("heartbeatd", "debug", "daemon")
    lines = logsetup.HELD_LINES * 2 + 5
    most: list[int] = []

    async def serve(config: object) -> int:
        for n in range(lines):
            log.info("line %04d", n)
            most.append(logsetup.held_lines())
        return 0

    try:
        lifecycle.run_daemon(serve, None)
        assert logsetup.flush()
    finally:
        logsetup.shutdown()
    assert max(most) == logsetup.HELD_LINES
    err = capfd.readouterr().err
    positions = [err.index(f"line {n:04d}") for n in range(lines)]
    assert positions == sorted(positions)


def test_lines_still_held_at_shutdown_are_written(capfd: pytest.CaptureFixture[str]) -> None:
    logsetup.configure("heartbeatd", "debug", "daemon")
    logsetup.hold_lines()
    log.info("held when the program ends")
    assert logsetup.held_lines() == 1
    logsetup.shutdown()
    assert "held when the program ends" in capfd.readouterr().err
