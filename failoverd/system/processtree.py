"""A hook's whole process tree, found through /proc, signalled and waited for through pidfds.

A hook that times out must take everything it started with it, also a
grandchild that called ``setsid()`` and so left the hook's session and
process group (``killpg`` misses it). Two ways were open: a cgroup per hook,
or a *child subreaper*. Each hook is made its own subreaper
(``PR_SET_CHILD_SUBREAPER``, set in the child before ``exec`` by
:func:`become_subreaper` and kept across it): while the hook runs, an orphan
anywhere below it is reparented to the hook, not to init, so "descendants of
the hook" is a complete answer that /proc can give. We chose this over a
cgroup because it needs no writable, delegated cgroup hierarchy (systemd
owns that, our units make it read-only with ``ProtectControlGroups=yes``,
and many containers have none), and over making the
*daemon* the subreaper because then every orphan of every child would become
the daemon's child: it would have to reap them, and it cannot tell an
adopted orphan from a child Trio (or the mail sender) is about to reap
itself; stealing such a child's exit status makes its ``wait`` report a
wrong one. With the hook as the subreaper the daemon's children are exactly
the ones it started; when a hook exits normally, what it leaves running is
reparented past it as before (docs/hooks.md: not touched).

:class:`ProcessTree` records every member it finds with a pidfd, checked
against the start time /proc showed, so a pid reused by an unrelated process
is never signalled. Members are looked for again after each signal round (a
member may have forked meanwhile), also below members already recorded when
the hook itself has exited. Before SIGKILL the tree is frozen (SIGSTOP until
a look finds nobody new), so nothing forks while it is killed. What can
still escape: a child forked during the SIGTERM grace period whose parent
and the hook both exit before that grace period ends (it is then init's).

Resource handling: :meth:`ProcessTree.close` closes every pidfd.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
from dataclasses import dataclass

import trio

PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def become_subreaper() -> None:
    """Make the calling process its descendants' reaper (a ``preexec_fn``; kept across ``exec``).

    It runs in the forked child before ``exec``. Python warns that a
    ``preexec_fn`` is unsafe in a threaded program: the child has only the
    forking thread, and Python code that needs a lock another thread held
    at the fork waits forever. This one needs none: one system call through
    a ctypes function prepared at import time. The price of any
    ``preexec_fn`` is a ``fork`` of the daemon where ``vfork`` was used
    before (measured here: a few milliseconds per hook).
    """
    if _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))


@dataclass(frozen=True)
class _Stat:
    ppid: int
    start: int  # clock ticks after boot; with the pid, names one process for good
    state: str


def _read_stat(pid: int) -> _Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = text[text.rindex(b")") + 2 :].split()
    return _Stat(ppid=int(fields[1]), start=int(fields[19]), state=fields[0].decode())


def _all_processes() -> dict[int, _Stat]:
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _read_stat(int(name))
            if info is not None:
                table[int(name)] = info
    return table


class ProcessTree:
    """The processes at and below ``root`` (a running, not yet reaped child of ours).

    Members are recorded with :meth:`collect`; :meth:`signal` and
    :meth:`wait_exited` act on the recorded ones only.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self._members: dict[int, tuple[int, int]] = {}  # pid -> (start time, pidfd)

    def _add(self, pid: int, info: _Stat) -> bool:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        # The pidfd pins whatever process has this pid now; it is the one found only if it started then.
        again = _read_stat(pid)
        if again is None or again.start != info.start:
            os.close(pidfd)
            return False
        self._members[pid] = (info.start, pidfd)
        return True

    def collect(self) -> list[int]:
        """Record the members not recorded yet, and return their pids.

        A member is the root, or a process whose parent is a member (the same
        process its pidfd was opened on, by start time), to a fixed point.
        """
        table = _all_processes()
        new = []
        if self.root not in self._members and self.root in table and self._add(self.root, table[self.root]):
            new.append(self.root)
        children: dict[int, list[int]] = {}
        for pid, info in table.items():
            children.setdefault(info.ppid, []).append(pid)
        frontier = [pid for pid, (start, _) in self._members.items() if pid in table and table[pid].start == start]
        while frontier:
            for pid in children.get(frontier.pop(), ()):
                if pid not in self._members and self._add(pid, table[pid]):
                    new.append(pid)
                    frontier.append(pid)
        return new

    def signal(self, signum: signal.Signals, pids: list[int] | None = None) -> None:
        """Send ``signum`` to the recorded members ``pids`` (default: all) that are still there."""
        for pid in self._members if pids is None else pids:
            try:
                signal.pidfd_send_signal(self._members[pid][1], signum)
            except ProcessLookupError:
                pass  # exited and reaped already

    def freeze(self, rounds: int) -> bool:
        """SIGSTOP every member, finding new ones until none appear; False if ``rounds`` did not suffice.

        A process with SIGSTOP pending cannot complete a fork (the kernel
        restarts it), so once a look after the last round finds nobody new,
        the recorded members are all there is, and none can add to them.
        """
        self.collect()
        self.signal(signal.SIGSTOP)
        for _ in range(rounds):
            new = self.collect()
            if not new:
                return True
            self.signal(signal.SIGSTOP, new)
        return False

    async def wait_exited(self) -> None:
        """Return once every recorded member has exited (a zombie waiting for its parent counts)."""
        for _, pidfd in self._members.values():
            await trio.lowlevel.wait_readable(pidfd)

    def running(self) -> list[int]:
        """The recorded members that have not exited."""
        return sorted(pid for pid, (_, pidfd) in self._members.items() if not select.select([pidfd], [], [], 0)[0])

    def close(self) -> None:
        for _, pidfd in self._members.values():
            os.close(pidfd)
        self._members.clear()

    def __enter__(self) -> ProcessTree:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
