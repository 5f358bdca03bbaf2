"""The health checks of a live daemon: each command run every interval, verdicts to the core.

One task per check runs it, waits for it to end (a hung run is killed at
``--check-timeout``), hands the result to the checks' hysteresis
(:class:`failoverd.core.health.Health`), and sleeps until its next turn, so
at most one run of each check exists at any time and a slow one delays only
its own next run. Runs are due every interval from the first; a run that
overran its turn is followed by the next one at once. Only a change of the
combined verdict reaches the core (``report``), through the shell like any
other input, so the core never waits for a check.

Start-up: :meth:`HealthMonitor.first_round` runs every check once, together,
before the daemon sends or acts on anything; the daemon feeds its verdict to
the core when it is unhealthy (a core starts healthy), so a master whose
service is down at start says ``leaving`` in its first heartbeat, and a
backup whose service is down never takes over on its first deadline.

Logging: a check's own verdict changing is logged (with what the failure
said); a failure that has not yet made a passing check fail is logged too,
so a flapping service shows in the log before it counts. Passes are not
logged: a check runs every few seconds for months.

Resource handling: :meth:`HealthMonitor.run` owns its tasks; cancelling it
kills a run in progress and every process it started (see
:mod:`failoverd.system.checks`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import trio

from failoverd.cli.config import CheckCommand, HealthChecks
from failoverd.core.health import Health, Verdict
from failoverd.system.checks import CheckResult, CheckRunner
from failoverd.system.trustedrun import DEFAULT_KILL_GRACE

log = logging.getLogger(__name__)


class HealthMonitor:
    """Runs ``settings.commands`` for a daemon of ``role``; verdict changes go to ``report``."""

    def __init__(
        self,
        settings: HealthChecks,
        role: str,
        report: Callable[[Verdict], None],
    ) -> None:
        if not settings.commands:
            raise ValueError("a health monitor needs at least one check")
        self.settings = settings
        self.commands: Sequence[CheckCommand] = settings.commands
        self.report = report
        # A check's kill grace is its timeout, at most the hooks' grace: a
        # check is small, and its next turn should not wait long for it.
        timeout = settings.effective_timeout
        self.runner = CheckRunner(role, timeout, kill_grace=min(DEFAULT_KILL_GRACE, timeout))
        self.health = Health([c.text for c in self.commands], settings.rise, settings.fall)
        self.runs = [0] * len(self.commands)
        self._started_at: float | None = None

    async def first_round(self) -> Verdict:
        """Run every check once, together; the first combined verdict (not reported: the caller feeds it)."""
        self._started_at = trio.current_time()
        results: list[CheckResult | None] = [None] * len(self.commands)

        async def one(index: int) -> None:
            results[index] = await self.runner.run(self.commands[index])

        async with trio.open_nursery() as nursery:
            for index in range(len(self.commands)):
                nursery.start_soon(one, index)
        verdict: Verdict | None = None
        for index, result in enumerate(results):
            assert result is not None
            verdict = self._record(index, result) or verdict
        assert verdict is not None, "every check has a verdict after its first result"
        if verdict.healthy:
            log.info("health checks pass: %s", ", ".join(repr(c.text) for c in self.commands))
        return verdict

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every check every interval until cancelled (after :meth:`first_round`)."""
        if self._started_at is None:
            raise RuntimeError("run the first round before the periodic checks")
        async with trio.open_nursery() as nursery:
            for index in range(len(self.commands)):
                nursery.start_soon(self._repeat, index, self._started_at + self.settings.interval)
            task_status.started()

    async def _repeat(self, index: int, due: float) -> None:
        command = self.commands[index]
        while True:
            await trio.sleep_until(due)
            result = await self.runner.run(command)
            verdict = self._record(index, result)
            if verdict is not None:
                self.report(verdict)
            due = max(due + self.settings.interval, trio.current_time())

    def _record(self, index: int, result: CheckResult) -> Verdict | None:
        self.runs[index] += 1
        check = self.health.checks[index]
        before = check.verdict
        verdict = self.health.record(trio.current_time(), index, result.passed, result.detail)
        text = self.commands[index].text
        if check.verdict != before:
            if check.verdict:
                log.info("check %r passes%s", text, " again" if before is False else "")
            else:
                log.error("check %r fails: %s%s", text, result.detail, _more_output(result))
        elif not result.passed and check.verdict:
            log.warning("check %r failed (%d of %d in a row before it counts as failing): %s",
                        text, check.streak, check.fall, result.detail)
        return verdict

    def snapshot(self) -> list[dict[str, Any]]:
        checks = self.health.snapshot(trio.current_time())
        for entry, runs in zip(checks, self.runs):
            entry["runs"] = runs
        return checks


def _more_output(result: CheckResult) -> str:
    """The output beyond the detail's first line, for the log line of a check that starts failing."""
    rest = result.run.output.splitlines()[1:]
    shown = f"; more output: {' / '.join(rest)!r}" if rest else ""
    if result.run.dropped:
        shown += f" ({result.run.dropped} more bytes not logged)"
    return shown
