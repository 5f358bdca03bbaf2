"""Running a program only root can change: checked, run from the descriptor that was checked, output
capped, its whole process tree killed on timeout.

The administrator's hooks (:mod:`failoverd.system.hooks`) and the health
checks (:mod:`failoverd.system.checks`) run this way; docs/hooks.md
("Permissions", "Time limit") is the administrator's account of the rules.

- A program runs only if only root can change what runs: every component of
  its path from ``/`` (directories, symbolic links, the file they lead to)
  passes :mod:`failoverd.system.trusted`'s rules, and the file is a regular,
  executable file not writable by group or others. It is opened once,
  checked on that descriptor, and executed through it (``/proc/self/fd/N``),
  so the file that was checked is the file that runs, whatever is renamed
  or relinked meanwhile. A script's interpreter (its ``#!`` line, to
  :data:`_INTERPRETER_DEPTH` levels) is checked the same way, and gets that
  descriptor's path as its script (``$0`` is ``/proc/self/fd/N``).
  Anything else is :class:`Refused`, with the reason.
- Every run is in its own session with stdin from /dev/null, the caller's
  (clean) environment and a timeout, and as the subreaper of what it starts
  (:mod:`failoverd.system.processtree` says why). On timeout or cancellation
  its whole tree gets SIGTERM, then SIGKILL after ``kill_grace`` seconds
  (frozen first, so nothing forks meanwhile), a grandchild that left the
  session with ``setsid`` included; the call returns only once every one of
  them has exited.
- Output (stdout and stderr) comes through a pipe read here: the first
  ``output_limit`` bytes are kept, the rest is read and dropped (and
  counted), so a program printing without end neither fills a disk nor
  blocks on a full pipe. Reading stops when the program exits: what a
  process it leaves running writes later is not collected.

Resource handling: when a run times out or the caller is cancelled, every
process of its tree has exited before :func:`run_trusted` returns (the
clean-up is shielded and bounded by about ``2 * kill_grace`` seconds); what
a program leaves running when it exits by itself is left alone. The daemon
is not a subreaper, so no orphan is ever its to reap. Every descriptor
opened here is closed before the function returns.

Error handling: nothing the program does raises here; a refusal, a failure
to start, a timeout and an exit status are all in the :class:`RunResult`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from failoverd.system.processtree import ProcessTree, become_subreaper
from failoverd.system.trusted import Untrusted, open_trusted, writable_by_others

log = logging.getLogger(__name__)

DEFAULT_KILL_GRACE = 2.0
OUTPUT_LIMIT = 4096  # bytes of a program's output kept for the log
_SIGNAL_ROUNDS = 64  # looks for processes forked meanwhile, per signal: a fork bomb is not waited out
_READ_SIZE = 64 * 1024
_INTERPRETER_DEPTH = 4  # nested "#!" interpreters the kernel follows (BINPRM_MAX_RECURSION)
_SHEBANG_LIMIT = 256  # the kernel reads no more of a "#!" line (BINPRM_BUF_SIZE)


@dataclass(frozen=True)
class RunResult:
    path: Path
    returncode: int | None  # None: it never ran to completion (see ``timed_out`` / ``error``)
    timed_out: bool = False
    error: str = ""
    output: str = ""
    dropped: int = 0  # bytes of output beyond the limit, read and thrown away
    refused: str = ""  # why the trust rules refused it (it never started); also in ``error``

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
    """A program that may not run; the message is the reason."""


def open_program(path: Path) -> int:
    """An ``O_PATH`` descriptor of the program at ``path``, checked, or :class:`Refused`.

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
    """The interpreter a ``#!`` line in the file ``fd`` names (relative: to the program's directory), or None."""
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
    """A program's output from the pipe's read end ``fd``: the first ``limit`` bytes kept, the rest counted."""

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
        """Read until end of file (every writer gone); the caller cancels it once the program is over."""
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
        """Take what is in the pipe now, at most its capacity: all that an exited program wrote fits in
        it, and a process the program left writing cannot keep this going."""
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


async def run_trusted(
    path: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
    kill_grace: float = DEFAULT_KILL_GRACE,
    output_limit: int = OUTPUT_LIMIT,
    what: str = "program",
) -> RunResult:
    """Check the program at ``path`` and run it from the checked descriptor with ``argv``.

    ``argv[0]`` is what the program sees as its name; ``what`` names it in
    the log lines written here (a refusal's reason is in the result, and
    the caller logs it as it sees fit).
    """
    try:
        program_fd = open_program(path)
    except Refused as reason:
        return RunResult(path, None, error=f"refused: {reason}", refused=str(reason))
    try:
        read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        os.close(program_fd)
        raise
    try:
        try:
            os.set_blocking(write_end, True)  # the program's end: an ordinary blocking stdout
            process = await trio.lowlevel.open_process(
                list(argv),
                # The checked descriptor, not the name: the file that was checked is the file that
                # runs. Not close-on-exec, since a script's interpreter opens it as its script.
                executable=f"/proc/self/fd/{program_fd}",
                pass_fds=(program_fd,),
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=write_end,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                preexec_fn=become_subreaper,
            )
        except (OSError, subprocess.SubprocessError) as error:
            message = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            return RunResult(path, None, error=message)
        finally:
            os.close(write_end)
            os.close(program_fd)
        output = _Output(read_end, output_limit)
        timed_out = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(output.pump)
            try:
                with trio.move_on_after(timeout) as deadline:
                    await process.wait()
                timed_out = deadline.cancelled_caught
            finally:
                if process.returncode is None:  # timed out, or the caller is being cancelled
                    with trio.CancelScope(shield=True):
                        await _stop(process, kill_grace, f"{what} {path}")
                nursery.cancel_scope.cancel()
        output.drain()
    finally:
        os.close(read_end)
    return RunResult(
        path, None if timed_out else process.returncode, timed_out=timed_out, output=output.text(),
        dropped=output.dropped,
    )


async def _stop(process: trio.Process, kill_grace: float, name: str) -> None:
    """SIGTERM the program's tree, SIGKILL what is left after the grace period, wait until all have exited."""
    with ProcessTree(process.pid) as tree:
        for _ in range(_SIGNAL_ROUNDS):
            new = tree.collect()
            if not new:
                break
            tree.signal(signal.SIGTERM, new)
        with trio.move_on_after(kill_grace):
            await process.wait()
        # Also when the program obeyed: what it started may ignore SIGTERM, or have left its session.
        if not tree.freeze(_SIGNAL_ROUNDS):
            log.error("%s keeps forking; killing the %d processes found", name, len(tree.running()))
        tree.signal(signal.SIGKILL)
        with trio.move_on_after(kill_grace):
            await tree.wait_exited()
            await process.wait()
        survivors = tree.running()
        if survivors:
            log.critical("%s: pids %s survived SIGKILL (stuck in the kernel?)", name, survivors)
