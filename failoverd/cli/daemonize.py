"""Moving a daemon to the background, and keeping it the only one.

:class:`PidFile` is the single-instance guard. The file is created, locked
with ``flock`` and holds the daemon's pid. The lock, not the pid, decides
whether an instance runs: the kernel drops it when the holder dies however it
dies, so a pid file left by a crashed daemon is stale exactly when nobody holds
its lock (even if its pid was since reused by an unrelated process), and is
then taken over and rewritten. The lock is taken *before* moving to the
background, so "already running" is reported on the terminal, and the locked
descriptor is inherited by the daemon (and marked close-on-exec, so hook
programs never keep it). The file is opened with ``O_NOFOLLOW`` in a
directory only root can write (:func:`failoverd.system.trusted.open_state_file`):
a daemon running as root must neither truncate and write through a link
another user planted nor lock a file another user created first.

:func:`daemonize` uses python-daemon's ``DaemonContext``: double fork and
``setsid`` (no controlling terminal, no zombie: the intermediate parents exit
and the daemon is reparented), stdio on /dev/null, working directory ``/``,
umask 022, every other descriptor closed. Sockets are opened by the runtime
*after* this, so nothing it listens on is lost.

SIGTERM stops the daemon cleanly: the default handler raises ``SystemExit(0)``
so ``finally`` blocks run and the pid file is removed. A runtime that wants to
drain first (Trio's ``open_signal_receiver``) replaces it for its lifetime.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from types import FrameType

import daemon

from failoverd.cli.exitcodes import EX_CONFIG, EX_UNAVAILABLE, ProgramError
from failoverd.system.trusted import Untrusted, open_state_file

_TAKEOVER_ATTEMPTS = 5


class AlreadyRunning(ProgramError):
    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(EX_UNAVAILABLE, f"already running ({who}, holding pid file {path})")
        self.path = path
        self.pid = pid


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


class PidFile:
    """An flock-guarded pid file; usable as python-daemon's ``pidfile``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._owner: int | None = None

    def fileno(self) -> int:
        if self._fd is None:
            raise RuntimeError("pid file not acquired")
        return self._fd

    def acquire(self) -> int | None:
        """Take the pid file or raise :class:`AlreadyRunning`.

        Returns the pid recorded in a stale file that was taken over, if any.

        Error handling: a pid file that is a symbolic link, lies in a
        directory another user can write or below one that is not root's,
        or cannot be opened raises :class:`ProgramError` (78) naming the path
        and why.
        """
        for _ in range(_TAKEOVER_ATTEMPTS):
            try:
                fd = open_state_file(self.path.parent, self.path.name, os.O_RDWR | os.O_CREAT, 0o644)
            except Untrusted as exc:
                raise ProgramError(EX_CONFIG, f"refusing pid file {self.path}: {exc.explanation}") from None
            except OSError as exc:
                raise ProgramError(EX_CONFIG, f"cannot open pid file {self.path}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                pid = _read_pid(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise AlreadyRunning(self.path, pid) from None
                raise ProgramError(EX_CONFIG, f"cannot lock pid file {self.path}: {exc.strerror}") from None
            # A stopping instance unlinks its file before unlocking it; if we
            # locked such an orphan, the name now points elsewhere: try again.
            try:
                same = os.lstat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return _read_pid(fd)
            os.close(fd)
        raise ProgramError(EX_UNAVAILABLE, f"pid file {self.path} keeps changing; another instance is starting")

    def write(self, pid: int) -> None:
        fd = self.fileno()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{pid}\n".encode("ascii"), 0)
        self._owner = pid

    def release(self) -> None:
        """Remove the file and drop the lock; only the process that wrote it does."""
        if self._fd is None or (self._owner is not None and self._owner != os.getpid()):
            return
        try:
            if os.lstat(self.path).st_ino == os.fstat(self._fd).st_ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    # python-daemon enters the pidfile in the daemon process, after detaching.
    def __enter__(self) -> PidFile:
        self.write(os.getpid())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def stop_on_sigterm() -> None:
    """Make SIGTERM a clean exit in a foreground (-d, -x) daemon."""
    signal.signal(signal.SIGTERM, _stop)


def daemonize(pid_file: PidFile, keep_fds: Iterable[int] = ()) -> daemon.DaemonContext:
    """Move to the background; returns only in the daemon process.

    ``pid_file`` must already be acquired; the daemon records its pid in it.
    ``keep_fds`` are descriptors that must survive (all others are closed).
    """
    context = daemon.DaemonContext(
        detach_process=True,
        working_directory="/",
        umask=0o022,
        pidfile=pid_file,
        files_preserve=[pid_file.fileno(), *keep_fds],
        signal_map={
            signal.SIGTERM: _stop,
            signal.SIGTSTP: None,
            signal.SIGTTIN: None,
            signal.SIGTTOU: None,
        },
    )
    context.open()
    return context
