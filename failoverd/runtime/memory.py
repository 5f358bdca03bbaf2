"""The ports in memory: a host, a wire and an administrator that are only lists.

What the tests run the real shells and daemons on where the host's
addresses, ARP and mail do not matter (see :mod:`failoverd.runtime.ports`
for the real ones). Each records what it was asked, in order, and can be
held at a gate to show what happens while an action is slow.

Resource handling: nothing is opened; :class:`MemoryNotifications` starts no
task (a notification is only recorded).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import trio

from failoverd.core.actions import AcquireDone, Addresses, Alarm, Notify, ProbeDone, ReleaseDone
from failoverd.core.addresses import Triplet
from failoverd.runtime.ports import ConflictReport, ConflictWatch, HookObserver, LinkReport
from failoverd.system.takeover import EarlyAdd


class MemorySystem:
    """A host whose address changes always succeed and are only logged.

    ``log`` holds ``(kind, addresses)`` for every probe, change and PostRel
    step, in order; ``answered`` are the addresses a probe finds taken;
    ``held`` what :meth:`present` reports at start. ``gate`` holds each change,
    ``probe_gate`` each probe and ``post_release_gate`` the PostRel hooks,
    until set. No wire (no conflict watcher) and no hooks; an early add
    (``adds_early``) is logged as ``add-early`` with the first address, and the
    acquire that goes on from it as ``acquire-after-early``. ``links``: each
    interface's link (absent: up); :meth:`set_link` changes one and reports
    it to the link watchers running.
    """

    def __init__(self) -> None:
        self.log: list[tuple[str, frozenset]] = []
        self.active = 0
        self.max_active = 0
        self.gate: trio.Event | None = None
        self.post_release_gate: trio.Event | None = None  # stands for slow PostRel hooks
        self.probe_gate: trio.Event | None = None
        self.answered: Addresses = frozenset()
        self.held: frozenset[Triplet] = frozenset()
        self.links: dict[str, bool] = {}
        self._link_watches: list[MemoryLinkWatch] = []
        self.adds_early = False
        """Whether :meth:`add_early` adds (as a host without hooks does); off, it declines, as one with a Test hook."""
        self.early_threads: list[str] = []
        """The thread of each early add."""
        self.early_gate: threading.Event | None = None
        """Holds each early add until set (a kernel slow to answer)."""
        self.early_error: Exception | None = None
        """Raised by each early add (a failure nothing expected)."""

    async def _change(self, kind: str, addresses: Addresses) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            self.log.append((kind, frozenset(addresses)))
            if self.gate is not None:
                await self.gate.wait()
            await trio.sleep(0.01)
        finally:
            self.active -= 1

    async def probe(self, addresses: Addresses) -> ProbeDone:
        self.log.append(("probe", frozenset(addresses)))
        if self.probe_gate is not None:
            await self.probe_gate.wait()
        return ProbeDone(answered=self.answered & addresses)

    def add_early(self, addresses: Addresses) -> EarlyAdd | None:
        if not self.adds_early or not addresses:
            return None
        first = min(addresses)
        self.early_threads.append(threading.current_thread().name)
        if self.early_gate is not None:
            self.early_gate.wait()
        if self.early_error is not None:
            raise self.early_error
        self.log.append(("add-early", frozenset({first})))
        return EarlyAdd(first, True)

    async def acquire(self, addresses: Addresses, early: EarlyAdd | None = None) -> AcquireDone:
        await self._change("acquire" if early is None else "acquire-after-early", addresses)
        return AcquireDone(acquired=frozenset(addresses))

    async def release(self, addresses: Addresses, on_removed: Callable[[ReleaseDone], None] | None = None) -> ReleaseDone:
        await self._change("release", addresses)
        result = ReleaseDone(released=frozenset(addresses))
        if on_removed is not None:
            on_removed(result)
        if self.post_release_gate is not None:
            await self.post_release_gate.wait()
        self.log.append(("post-release", frozenset(addresses)))
        return result

    async def announce(self, addresses: Addresses) -> None:
        await self._change("announce", addresses)

    async def present(self, addresses: Iterable[Triplet]) -> frozenset[Triplet]:
        return self.held & frozenset(addresses)

    def conflict_watcher(self, report: ConflictReport) -> ConflictWatch | None:
        return None

    def link_watcher(self, interfaces: Iterable[str], report: LinkReport) -> MemoryLinkWatch:
        watch = MemoryLinkWatch(self, frozenset(interfaces), report)
        self._link_watches.append(watch)
        return watch

    def set_link(self, interface: str, up: bool) -> None:
        """The link of ``interface`` goes down or comes up: every running watch of it reports it."""
        self.links[interface] = up
        for watch in self._link_watches:
            if watch.running and interface in watch.interfaces:
                watch.report(interface, up)

    def observe_hooks(self, observer: HookObserver) -> None:
        pass  # runs no hooks

    def kinds(self) -> list[str]:
        """The kinds of what was asked, in order (PostRel steps left out)."""
        return [kind for kind, _ in self.log if kind != "post-release"]


class MemoryLinkWatch:
    """A link watch of a :class:`MemorySystem`: reports its links at start, then each :meth:`MemorySystem.set_link`."""

    def __init__(self, system: MemorySystem, interfaces: frozenset[str], report: LinkReport) -> None:
        self.system = system
        self.interfaces = interfaces
        self.report = report
        self.running = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        for interface in sorted(self.interfaces):
            self.report(interface, self.system.links.get(interface, True))
        self.running = True
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self.running = False


class MemoryTransport:
    """A wire that keeps every datagram sent: ``sent`` holds ``(payload, targets)``."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, ...]]] = []

    def send_nowait(self, payload: bytes, targets: tuple[str, ...]) -> None:
        self.sent.append((payload, targets))


class MemoryNotifications:
    """An administrator who only collects: ``started`` holds every notification and mailed alarm."""

    def __init__(self) -> None:
        self.started: list[Notify | Alarm] = []

    def start_soon(self, nursery: trio.Nursery, action: Notify | Alarm) -> None:
        self.started.append(action)
