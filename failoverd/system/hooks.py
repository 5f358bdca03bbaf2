"""The administrator's hooks: ``<hook_dir>/<address>/Test``, ``PreAcq*``, ``PostAcq*``, ``PreRel*``, ``PostRel*``.

This is the original ProcessFailover's customisation (its /Library/IPFailover),
with a configurable directory. docs/hooks.md is the administrator's manual;
keep the two in step.

Rules of this module:

- A hook runs only if only root can change what runs: every component of
  its path from ``/`` (directories, symbolic links, the file they lead to)
  passes :mod:`failoverd.system.trusted`'s rules, and the file is a regular,
  executable file not writable by group or others. The hook is opened once,
  checked on that descriptor, and executed through it (``/proc/self/fd/N``),
  so the file that was checked is the file that runs, whatever is renamed
  or relinked meanwhile. A script's interpreter gets that descriptor's path
  as its script (``$0`` is ``/proc/self/fd/N``; ``FAILOVER_HOOK`` names the
  hook). Anything else is refused with a log line saying why.
- Every hook runs in its own session with stdin from /dev/null, a clean
  environment and a timeout, and as the subreaper of what it starts
  (:mod:`failoverd.system.processtree` says why). On timeout or cancellation
  its whole tree gets SIGTERM, then SIGKILL after ``kill_grace`` seconds
  (frozen first, so nothing forks meanwhile), a grandchild that left the
  session with ``setsid`` included; the call returns only once every one of
  them has exited.
- Output (stdout and stderr) comes through a pipe read here: the first
  :data:`OUTPUT_LIMIT` bytes are kept for the log, the rest is read and
  dropped (the log says how much), so a hook printing without end neither
  fills a disk nor blocks on a full pipe. Reading stops when the hook
  exits: what a process it leaves running writes later is not collected.
- ``Test`` is the only hook whose verdict counts: missing or exit 0 = go ahead;
  anything else (non-zero, killed, timed out, refused, cannot start) =
  notification only, because the administrator put a Test there to be asked.
  The other hooks' failures are logged and do not stop the address change.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import stat
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import trio

from failoverd.addresses import Triplet
from failoverd.config import DEFAULT_HOOK_DIR, DEFAULT_HOOK_TIMEOUT
from failoverd.system.processtree import ProcessTree, become_subreaper
from failoverd.system.trusted import Untrusted, open_trusted, writable_by_others

log = logging.getLogger(__name__)

Event = Literal["acquire", "release"]
Phase = Literal["PreAcq", "PostAcq", "PreRel", "PostRel"]

DEFAULT_KILL_GRACE = 2.0
TEST = "Test"
PHASES: tuple[Phase, ...] = ("PreAcq", "PostAcq", "PreRel", "PostRel")
HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_LIMIT = 4096  # bytes of a hook's output that reach the log
_SIGNAL_ROUNDS = 64  # looks for processes forked meanwhile, per signal: a fork bomb is not waited out
_READ_SIZE = 64 * 1024
_INTERPRETER_DEPTH = 4  # nested "#!" interpreters the kernel follows (BINPRM_MAX_RECURSION)
_SHEBANG_LIMIT = 256  # the kernel reads no more of a "#!" line (BINPRM_BUF_SIZE)


@dataclass(frozen=True)
class HookResult:
    path: Path
    returncode: int | None  # None: it never ran to completion (see ``timed_out`` / ``error``)
    timed_out: bool = False
    error: str = ""
    output: str = ""
    dropped: int = 0  # bytes of output beyond OUTPUT_LIMIT, read and thrown away

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


class Refused(Exception):
    """A hook that may not run; the message is the reason."""


def open_hook(path: Path) -> int:
    """An ``O_PATH`` descriptor of the hook at ``path``, checked, or :class:`Refused`.

    Everything is checked on the descriptor: the walk of
    :func:`failoverd.system.trusted.open_trusted` (owners, directories,
    links, a regular file), then the file's mode; for a script, the same
    for the interpreter its ``#!`` line names (the kernel finds that one by
    its name, which a trusted path keeps to the file checked).
    """
    fd = _open_executable(path)
    current, depth = fd, 0
    try:
        while (interpreter := _interpreter(current, path.parent)) is not None:
            depth += 1
            if depth > _INTERPRETER_DEPTH:
                raise Refused(f"more than {_INTERPRETER_DEPTH} nested interpreters")
            try:
                following = _open_executable(interpreter)
            except Refused as reason:
                raise Refused(f"interpreter {interpreter}: {reason}") from None
            if current != fd:
                os.close(current)
            current = following
    except BaseException:
        os.close(fd)
        raise
    finally:
        if current != fd:
            os.close(current)
    return fd


def _open_executable(path: Path) -> int:
    try:
        fd, info = open_trusted(path, "file")
    except Untrusted as error:
        raise Refused(error.explanation) from None
    except OSError as error:
        raise Refused(f"cannot open {error.filename or path}: {error.strerror or error}") from None
    reason = writable_by_others(info)
    if reason is None and not info.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
        reason = "not executable"
    if reason is not None:
        os.close(fd)
        raise Refused(reason)
    return fd


def _interpreter(fd: int, directory: Path) -> Path | None:
    """The interpreter a ``#!`` line in the file ``fd`` names (relative: to the hook's directory), or None."""
    try:
        reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise Refused(f"cannot read: {error.strerror or error}") from None
    try:
        head = os.pread(reader, _SHEBANG_LIMIT, 0)
    finally:
        os.close(reader)
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    if not words:
        return None  # the kernel refuses it (ENOEXEC); the run says so
    return directory / os.fsdecode(words[0])


class _Output:
    """A hook's output from the pipe's read end ``fd``: the first ``limit`` bytes kept, the rest counted."""

    def __init__(self, fd: int, limit: int) -> None:
        self.fd = fd
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0

    def _take(self, chunk: bytes) -> None:
        room = max(0, self.limit - len(self.kept))
        self.kept += chunk[:room]
        self.dropped += max(0, len(chunk) - room)

    async def pump(self) -> None:
        """Read until end of file (every writer gone); the caller cancels it once the hook is over."""
        while True:
            await trio.lowlevel.wait_readable(self.fd)
            try:
                chunk = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                continue
            if not chunk:
                return
            self._take(chunk)

    def drain(self) -> None:
        """Take what is in the pipe now, at most its capacity: all that an exited hook wrote fits in
        it, and a process the hook left writing cannot keep this going."""
        left = fcntl.fcntl(self.fd, fcntl.F_GETPIPE_SZ)
        while left > 0:
            try:
                chunk = os.read(self.fd, min(left, _READ_SIZE))
            except BlockingIOError:
                return
            if not chunk:
                return
            left -= len(chunk)
            self._take(chunk)

    def text(self) -> str:
        return self.kept.decode("utf-8", "replace").strip()


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
                os.close(open_hook(path))
            except Refused as reason:
                log.error("refusing hook %s: %s", path, reason)
            else:
                runnable.append(path)
        return runnable

    async def test(self, event: Event, triplet: Triplet, triplets: Iterable[Triplet] = ()) -> bool:
        """Ask the address's Test hook: True = go ahead, False = notification only."""
        path = self.address_dir(triplet) / TEST
        if not os.path.lexists(path):
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
        try:
            hook_fd = open_hook(path)
        except Refused as reason:
            log.error("refusing hook %s: %s", path, reason)
            return HookResult(path, None, error=f"refused: {reason}")
        argv: Sequence[str] = [str(path), event, str(triplet)]
        env = self.environment(phase, event, triplet, triplets, hook=path)
        log.info("running %s %s %s", path, event, triplet)
        try:
            read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            os.close(hook_fd)
            raise
        try:
            try:
                os.set_blocking(write_end, True)  # the hook's end: an ordinary blocking stdout
                process = await trio.lowlevel.open_process(
                    argv,
                    # The checked descriptor, not the name: the file that was checked is the file that
                    # runs. Not close-on-exec, since a script's interpreter opens it as its script.
                    executable=f"/proc/self/fd/{hook_fd}",
                    pass_fds=(hook_fd,),
                    stdin=subprocess.DEVNULL,
                    stdout=write_end,
                    stderr=write_end,
                    env=env,
                    cwd=path.parent,
                    start_new_session=True,
                    preexec_fn=become_subreaper,
                )
            except (OSError, subprocess.SubprocessError) as error:
                message = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
                result = HookResult(path, None, error=message)
                log.error("hook %s %s", path, result.describe())
                return result
            finally:
                os.close(write_end)
                os.close(hook_fd)
            output = _Output(read_end, OUTPUT_LIMIT)
            timed_out = False
            async with trio.open_nursery() as nursery:
                nursery.start_soon(output.pump)
                try:
                    with trio.move_on_after(self.timeout) as deadline:
                        await process.wait()
                    timed_out = deadline.cancelled_caught
                finally:
                    if process.returncode is None:  # timed out, or the caller is being cancelled
                        with trio.CancelScope(shield=True):
                            await self._stop(process, path)
                    nursery.cancel_scope.cancel()
            output.drain()
        finally:
            os.close(read_end)
        text = output.text()
        result = HookResult(
            path, None if timed_out else process.returncode, timed_out=timed_out, output=text, dropped=output.dropped
        )
        level = logging.INFO if result.succeeded else logging.ERROR
        shown = f"; output: {text!r}" if text else ""
        if output.dropped:
            shown += f" ({output.dropped} more bytes not logged)"
        log.log(level, "hook %s %s%s", path, result.describe(), shown)
        return result

    async def _stop(self, process: trio.Process, path: Path) -> None:
        """SIGTERM the hook's tree, SIGKILL what is left after the grace period, wait until all have exited."""
        with ProcessTree(process.pid) as tree:
            for _ in range(_SIGNAL_ROUNDS):
                new = tree.collect()
                if not new:
                    break
                tree.signal(signal.SIGTERM, new)
            with trio.move_on_after(self.kill_grace):
                await process.wait()
            # Also when the hook obeyed: what it started may ignore SIGTERM, or have left its session.
            if not tree.freeze(_SIGNAL_ROUNDS):
                log.error("hook %s keeps forking; killing the %d processes found", path, len(tree.running()))
            tree.signal(signal.SIGKILL)
            with trio.move_on_after(self.kill_grace):
                await tree.wait_exited()
                await process.wait()
            survivors = tree.running()
            if survivors:
                log.critical("hook %s: pids %s survived SIGKILL (stuck in the kernel?)", path, survivors)
