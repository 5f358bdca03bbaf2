"""The shell's one timer: inputs move its deadline without waking it.

An idle daemon gets one input per interval (a heartbeat on the backup, a
status frame on the master). Waking the timer task for each of them only to
re-arm it was a good part of an idle daemon's CPU (docs/benchmarks.md, idle
cost), so the shell moves the waiting scope's deadline in place instead.
These tests count the timer task's steps with a Trio instrument and run on
the virtual clock, so they assert what runs, not how fast.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from trio.abc import Instrument

from failoverd.core.actions import Action
from failoverd.runtime.memory import MemoryTransport
from failoverd.runtime.shell import CoreShell

SILENCE = 0.3


class SilenceCore:
    """Wants to be woken ``SILENCE`` seconds after the last datagram (a backup's failure timeout)."""

    def __init__(self, now: float) -> None:
        self.last = now
        self.fired: list[float] = []

    def receive_datagram(self, now: float, data: bytes, source: str, path: str) -> list[Action]:
        self.last = now
        return []

    def handle_timer(self, now: float) -> list[Action]:
        self.fired.append(now)
        self.last = now  # fires once per silence
        return []

    def action_done(self, now: float, result: Any) -> list[Action]:
        return []

    def conflict_seen(self, now: float, addresses: Any) -> list[Action]:
        return []

    def next_deadline(self) -> float | None:
        return self.last + SILENCE

    def snapshot(self, now: float) -> dict[str, Any]:
        return {}


class StepCounter(Instrument):
    """Counts the steps of the task running the shell's timer."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("run_timer"):
            self.steps += 1


def _shell(core: SilenceCore) -> CoreShell:
    return CoreShell(core, system=None, transport=MemoryTransport(), notifier=None)  # type: ignore[arg-type]


@pytest.mark.trio
async def test_inputs_do_not_wake_the_timer_task(autojump_clock: trio.testing.MockClock) -> None:
    core = SilenceCore(trio.current_time())
    shell = _shell(core)
    counter = StepCounter()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.run_timer)
            await trio.lowlevel.checkpoint()
            trio.lowlevel.add_instrument(counter)
            try:
                for _ in range(100):
                    shell.datagram(b"heartbeat", "10.9.1.1", "priv0")
                    await trio.sleep(0.1)
            finally:
                trio.lowlevel.remove_instrument(counter)
            nursery.cancel_scope.cancel()
    assert core.fired == [], "the deadline was reached although a datagram came every 0.1 s"
    assert counter.steps == 0, f"the timer task ran {counter.steps} steps for 100 datagrams"


@pytest.mark.trio
async def test_the_moved_deadline_still_fires_once_the_inputs_stop(autojump_clock: trio.testing.MockClock) -> None:
    core = SilenceCore(trio.current_time())
    shell = _shell(core)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.run_timer)
            for _ in range(10):
                shell.datagram(b"heartbeat", "10.9.1.1", "priv0")
                await trio.sleep(0.1)
            last = core.last
            await trio.sleep(SILENCE + 0.05)
            nursery.cancel_scope.cancel()
    assert core.fired == [pytest.approx(last + SILENCE)]
    assert shell.timer_firings == 1
