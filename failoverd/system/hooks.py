"""The administrator's hooks: ``<hook_dir>/<address>/Test``, ``PreAcq*``, ``PostAcq*``, ``PreRel*``, ``PostRel*``.

This is the original ProcessFailover's customisation (its /Library/IPFailover),
with a configurable directory. docs/hooks.md is the administrator's manual;
keep the two in step.

Rules of this module:

- A hook runs as :mod:`failoverd.system.trustedrun` runs a program: only if
  only root can change what runs (its path from ``/``, the file, a script's
  interpreter), from the descriptor that was checked, in its own session as
  the subreaper of what it starts, its whole tree killed on timeout or
  cancellation, its output read through a pipe and capped at
  :data:`OUTPUT_LIMIT` bytes for the log (the log says how much more there
  was). A script's ``$0`` is ``/proc/self/fd/N``; ``FAILOVER_HOOK`` names the
  hook. Anything refused is logged with the reason.
- ``Test`` is the only hook whose verdict counts: missing or exit 0 = go ahead;
  anything else (non-zero, killed, timed out, refused, cannot start) =
  notification only, because the administrator put a Test there to be asked.
  The other hooks' failures are logged and do not stop the address change.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import trio

from failoverd.cli.config import DEFAULT_HOOK_DIR, DEFAULT_HOOK_TIMEOUT
from failoverd.core.addresses import Triplet
from failoverd.system.trusted import Untrusted, open_trusted
from failoverd.system.trustedrun import (  # noqa: F401 (DEFAULT_KILL_GRACE, OUTPUT_LIMIT: this module's settings too)
    DEFAULT_KILL_GRACE,
    OUTPUT_LIMIT,
    Refused,
    RunResult,
    open_program,
    run_trusted,
)

log = logging.getLogger(__name__)

Event = Literal["acquire", "release"]
Phase = Literal["PreAcq", "PostAcq", "PreRel", "PostRel"]

TEST = "Test"
HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

HookResult = RunResult
"""What one hook did (a hook's run is a trusted program's run)."""


class HookRunner:
    """Finds and runs the hooks for one address and one event.

    Resource handling: when a hook times out or the caller is cancelled,
    every process of the hook's tree has exited before the method returns
    (the clean-up is shielded and bounded by about ``2 * kill_grace``
    seconds); what a hook leaves running when it exits by itself is left
    alone. The daemon's only children are the hooks it started: it is not a
    subreaper, so no orphan is ever its to reap.

    Error handling: nothing a hook does raises here; results and log lines say
    what happened.
    """

    def __init__(
        self,
        hook_dir: Path | str = DEFAULT_HOOK_DIR,
        timeout: float = DEFAULT_HOOK_TIMEOUT,
        kill_grace: float = DEFAULT_KILL_GRACE,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"hook timeout must be positive, not {timeout}")
        if kill_grace <= 0:
            raise ValueError(f"kill grace must be positive, not {kill_grace}")
        self.hook_dir = Path(hook_dir)
        self.timeout = timeout
        self.kill_grace = kill_grace

    def address_dir(self, triplet: Triplet) -> Path:
        return self.hook_dir / str(triplet.address)

    def _trusted_dir(self, triplet: Triplet) -> Path | None:
        """The address directory if it exists and can be trusted, else None (refusals logged)."""
        directory = self.address_dir(triplet)
        try:
            fd, _ = open_trusted(directory, "directory")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except Untrusted as error:
            log.error("refusing hooks for %s: %s %s is %s", triplet.address, error.what, error.component, error.reason)
            return None
        except OSError as error:
            log.error("refusing hooks for %s: cannot open %s: %s", triplet.address, error.filename, error.strerror)
            return None
        os.close(fd)
        return directory

    def hooks(self, triplet: Triplet, phase: Phase) -> list[Path]:
        """The runnable ``phase`` hooks for the triplet's address, in name order (refusals logged).

        Each is checked again when it runs: this is the list of what to try.
        """
        directory = self._trusted_dir(triplet)
        if directory is None:
            return []
        try:
            names = sorted(os.listdir(directory))
        except OSError as error:
            log.error("cannot list hooks in %s: %s", directory, error.strerror or error)
            return []
        runnable = []
        for name in names:
            if not name.startswith(phase):
                continue
            path = directory / name
            try:
                os.close(open_program(path))
            except Refused as reason:
                log.error("refusing hook %s: %s", path, reason)
            else:
                runnable.append(path)
        return runnable

    def names(self, triplet: Triplet) -> list[str] | None:
        """The names in the address's directory, unchecked ([] without one; None when it cannot be listed).

        What an early add looks at (:meth:`~failoverd.system.takeover.Takeover.add_early`): whether
        a hook could have to run before the add. Nothing here is trusted or run.
        """
        try:
            return os.listdir(self.address_dir(triplet))
        except FileNotFoundError:
            return []
        except OSError:
            return None

    async def test(self, event: Event, triplet: Triplet, triplets: Iterable[Triplet] = ()) -> bool:
        """Ask the address's Test hook: True = go ahead, False = notification only."""
        path = self.address_dir(triplet) / TEST
        if not os.path.lexists(path):  # noqa: ASYNC240 - one lstat of a local path
            return True
        if self._trusted_dir(triplet) is None:
            log.warning("%s: Test hook cannot be trusted; notification only, %s not changed", triplet, triplet.address)
            return False
        result = await self._run(path, TEST, event, triplet, triplets)
        if result.succeeded:
            return True
        log.warning("%s: Test hook %s; notification only, %s not changed", triplet, result.describe(), triplet.address)
        return False

    async def run_phase(
        self, phase: Phase, event: Event, triplet: Triplet, triplets: Iterable[Triplet] = ()
    ) -> list[HookResult]:
        """Run every ``phase`` hook for the address, one after another, in name order."""
        everything = tuple(triplets)
        results = []
        for path in self.hooks(triplet, phase):
            results.append(await self._run(path, phase, event, triplet, everything))
        return results

    def environment(
        self, phase: str, event: Event, triplet: Triplet, triplets: Iterable[Triplet], hook: Path | None = None
    ) -> dict[str, str]:
        everything = sorted(set(triplets) | {triplet})
        env = {
            "PATH": HOOK_PATH,
            "LANG": "C",
            "FAILOVER_EVENT": event,
            "FAILOVER_PHASE": phase,
            "FAILOVER_TRIPLET": str(triplet),
            "FAILOVER_INTERFACE": triplet.interface,
            "FAILOVER_ADDRESS": str(triplet.address),
            "FAILOVER_PREFIXLEN": str(triplet.effective_prefixlen),
            "FAILOVER_TRIPLETS": " ".join(map(str, everything)),
            "FAILOVER_HOOK_DIR": str(self.hook_dir),
        }
        if hook is not None:
            env["FAILOVER_HOOK"] = str(hook)
        return env

    async def _run(
        self, path: Path, phase: str, event: Event, triplet: Triplet, triplets: Iterable[Triplet]
    ) -> HookResult:
        argv: Sequence[str] = [str(path), event, str(triplet)]
        env = self.environment(phase, event, triplet, triplets, hook=path)
        log.info("running %s %s %s", path, event, triplet)
        result = await run_trusted(
            path, argv, env=env, cwd=path.parent, timeout=self.timeout, kill_grace=self.kill_grace, what="hook"
        )
        if result.refused:
            log.error("refusing hook %s: %s", path, result.refused)
            return result
        level = logging.INFO if result.succeeded else logging.ERROR
        shown = f"; output: {result.output!r}" if result.output else ""
        if result.dropped:
            shown += f" ({result.dropped} more bytes not logged)"
        log.log(level, "hook %s %s%s", path, result.describe(), shown)
        return result


HookObserver = Callable[[str, list[str], float], None]
"""Told after one address's hooks of one phase ran: the phase, each hook's outcome, the seconds taken."""


class ObservedHooks:
    """A :class:`HookRunner` that also tells ``observer`` what each run did (the metrics count hooks so).

    Outcomes: ``ok``/``refused`` for a Test hook, ``ok``, ``failed``,
    ``timeout`` or ``error`` for the others. A missing Test hook ("go ahead",
    nothing run) and a phase without hooks are not reported.
    """

    def __init__(self, runner: HookRunner, observer: HookObserver) -> None:
        self.runner = runner
        self._observer = observer

    async def test(self, event: Event, triplet: Triplet, triplets: Iterable[Triplet] = ()) -> bool:
        present = os.path.lexists(self.runner.address_dir(triplet) / TEST)  # noqa: ASYNC240 - one lstat
        start = trio.current_time()
        verdict = await self.runner.test(event, triplet, triplets)
        if present:
            self._observer(TEST, ["ok" if verdict else "refused"], trio.current_time() - start)
        return verdict

    async def run_phase(
        self, phase: Phase, event: Event, triplet: Triplet, triplets: Iterable[Triplet] = ()
    ) -> list[HookResult]:
        start = trio.current_time()
        results = await self.runner.run_phase(phase, event, triplet, triplets)
        if results:
            self._observer(phase, [_outcome(r) for r in results], trio.current_time() - start)
        return results


def _outcome(result: HookResult) -> str:
    if result.error:
        return "error"
    if result.timed_out:
        return "timeout"
    return "ok" if result.succeeded else "failed"
