"""The administrator's hooks: ``<hook_dir>/<address>/Test``, ``PreAcq*``, ``PostAcq*``, ``PreRel*``, ``PostRel*``.

This is the original ProcessFailover's customisation (its /Library/IPFailover),
with a configurable directory. docs/hooks.md is the administrator's manual;
keep the two in step.

Rules of this module:

- A hook runs only if it and the directories above it (the hook directory and
  the address directory) are owned by root and not writable by group or
  others; anything else is refused with a log line saying why.
- Every hook runs in its own session (process group) with stdin from
  /dev/null, output to a temporary file that is logged afterwards, a clean
  environment, and a timeout. On timeout or cancellation the whole process
  group gets SIGTERM, then SIGKILL after ``kill_grace`` seconds, so a
  hanging hook neither hangs the caller nor leaves processes behind.
- ``Test`` is the only hook whose verdict counts: missing or exit 0 = go ahead;
  anything else (non-zero, killed, timed out, refused, cannot start) =
  notification only, because the administrator put a Test there to be asked.
  The other hooks' failures are logged and do not stop the address change.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import trio

from failoverd.addresses import Triplet
from failoverd.config import DEFAULT_HOOK_DIR, DEFAULT_HOOK_TIMEOUT

log = logging.getLogger(__name__)

Event = Literal["acquire", "release"]
Phase = Literal["PreAcq", "PostAcq", "PreRel", "PostRel"]

DEFAULT_KILL_GRACE = 2.0
TEST = "Test"
PHASES: tuple[Phase, ...] = ("PreAcq", "PostAcq", "PreRel", "PostRel")
HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_OUTPUT_LIMIT = 4096  # bytes of a hook's output that reach the log


@dataclass(frozen=True)
class HookResult:
    path: Path
    returncode: int | None  # None: it never ran to completion (see ``timed_out`` / ``error``)
    timed_out: bool = False
    error: str = ""
    output: str = ""

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        if self.error:
            return f"could not run: {self.error}"
        if self.timed_out:
            return "timed out and was killed"
        assert self.returncode is not None
        if self.returncode < 0:
            return f"killed by signal {signal.Signals(-self.returncode).name}"
        return f"exited {self.returncode}"


def insecurity(path: Path) -> str | None:
    """Why ``path`` may not be trusted as (part of) a hook, or None if it may."""
    try:
        info = os.stat(path)
    except OSError as error:
        return f"cannot stat: {error.strerror}"
    if info.st_uid != 0:
        return f"owned by uid {info.st_uid}, not root"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


class HookRunner:
    """Finds and runs the hooks for one address and one event.

    Resource handling: every child process is reaped before a method returns,
    also when the caller is cancelled (the clean-up is shielded and bounded by
    ``2 * kill_grace`` seconds).

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
        if not directory.is_dir():
            return None
        for part in (self.hook_dir, directory):
            reason = insecurity(part)
            if reason is not None:
                log.error("refusing hooks for %s: directory %s is %s", triplet.address, part, reason)
                return None
        return directory

    def _refusal(self, path: Path) -> str | None:
        if not path.is_file():
            return "not a regular file"
        reason = insecurity(path)
        if reason is not None:
            return reason
        if not os.access(path, os.X_OK):
            return "not executable"
        return None

    def hooks(self, triplet: Triplet, phase: Phase) -> list[Path]:
        """The runnable ``phase`` hooks for the triplet's address, in name order (refusals logged)."""
        directory = self._trusted_dir(triplet)
        if directory is None:
            return []
        try:
            entries = sorted(directory.iterdir(), key=lambda p: p.name)
        except OSError as error:
            log.error("cannot list hooks in %s: %s", directory, error.strerror or error)
            return []
        runnable = []
        for path in entries:
            if not path.name.startswith(phase):
                continue
            reason = self._refusal(path)
            if reason is None:
                runnable.append(path)
            else:
                log.error("refusing hook %s: %s", path, reason)
        return runnable

    async def test(self, event: Event, triplet: Triplet, triplets: Iterable[Triplet] = ()) -> bool:
        """Ask the address's Test hook: True = go ahead, False = notification only."""
        path = self.address_dir(triplet) / TEST
        if not os.path.lexists(path):
            return True
        if self._trusted_dir(triplet) is None:
            log.warning("%s: Test hook cannot be trusted; notification only, %s not changed", triplet, triplet.address)
            return False
        reason = self._refusal(path)
        if reason is not None:
            log.error("refusing hook %s: %s; notification only, %s not changed", path, reason, triplet.address)
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

    def environment(self, phase: str, event: Event, triplet: Triplet, triplets: Iterable[Triplet]) -> dict[str, str]:
        everything = sorted(set(triplets) | {triplet})
        return {
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

    async def _run(
        self, path: Path, phase: str, event: Event, triplet: Triplet, triplets: Iterable[Triplet]
    ) -> HookResult:
        argv: Sequence[str] = [str(path), event, str(triplet)]
        env = self.environment(phase, event, triplet, triplets)
        log.info("running %s %s %s", path, event, triplet)
        with tempfile.TemporaryFile() as output:
            try:
                process = await trio.lowlevel.open_process(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=path.parent,
                    start_new_session=True,
                )
            except OSError as error:
                result = HookResult(path, None, error=error.strerror or str(error))
                log.error("hook %s %s", path, result.describe())
                return result
            timed_out = False
            try:
                with trio.move_on_after(self.timeout) as deadline:
                    await process.wait()
                timed_out = deadline.cancelled_caught
            finally:
                if process.returncode is None:  # timed out, or the caller is being cancelled
                    with trio.CancelScope(shield=True):
                        await self._stop(process, path)
            output.seek(0)
            text = output.read(_OUTPUT_LIMIT).decode("utf-8", "replace").strip()
        result = HookResult(path, None if timed_out else process.returncode, timed_out=timed_out, output=text)
        level = logging.INFO if result.succeeded else logging.ERROR
        log.log(level, "hook %s %s%s", path, result.describe(), f"; output: {text!r}" if text else "")
        return result

    async def _stop(self, process: trio.Process, path: Path) -> None:
        """SIGTERM the hook's process group, SIGKILL what is left after the grace period, reap."""
        _signal_group(process.pid, signal.SIGTERM)
        with trio.move_on_after(self.kill_grace):
            await process.wait()
        # Also when the leader obeyed: children that ignore SIGTERM are still in the group.
        _signal_group(process.pid, signal.SIGKILL)
        with trio.move_on_after(self.kill_grace):
            await process.wait()
        if process.returncode is None:
            log.critical("hook %s (pid %d) survived SIGKILL (stuck in the kernel?)", path, process.pid)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass  # the whole group is gone already
