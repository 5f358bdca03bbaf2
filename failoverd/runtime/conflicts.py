"""RFC 5227 conflict detection around a live core: the wire watched while we claim addresses.

While the core claims addresses (holds them, or is adding them) a
:class:`~failoverd.system.arpwatch.ConflictWatcher` listens on their
interfaces; every ARP packet from another host that claims one of them is an
input to the core (``conflict_seen``), fed through the shell like a datagram
(and recorded in the trace like one). The core decides: the backup yields
what it holds, a holding master announces its addresses again.

What is watched follows the core. It is re-read whenever the core reports a
state change, which is when what a core claims changes (both cores claim by
state: the detector in ``acquiring``/``failed_over``/``recovering``, the
master in ``acquiring``/``holding``/``releasing``), and once at start, when
a core that adopted addresses begins in a claiming state. Watching from
``acquiring`` on means the socket is open before the address is added.

A system that cannot watch a wire says so: its ``conflict_watcher`` returns
``None`` (the in-memory system's does; the host's gives a
:class:`~failoverd.system.arpwatch.ConflictWatcher`), and nothing is watched.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from failoverd.core.actions import Action, Addresses, StateChanged
from failoverd.runtime.ports import ConflictReport, ConflictWatch, System


class ConflictFeed:
    """Keeps ``watcher`` on what the core claims (``claimed()``).

    Pass :meth:`follow` as the shell's ``on_action``; run :meth:`run` in the
    daemon's nursery (with ``nursery.start``).
    """

    def __init__(self, watcher: ConflictWatch, claimed: Callable[[], Addresses]) -> None:
        self.watcher = watcher
        self._claimed = claimed

    def follow(self, now: float, action: Action) -> None:
        if isinstance(action, StateChanged):
            self.watcher.watch(self._claimed())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch until cancelled; started once what the core claims now is watched."""
        self.watcher.watch(self._claimed())
        await self.watcher.run(task_status=task_status)


def conflict_feed(system: System, report: ConflictReport, claimed: Callable[[], Addresses]) -> ConflictFeed | None:
    """The feed for ``system``'s wire, or None if the system has none."""
    watcher = system.conflict_watcher(report)
    return None if watcher is None else ConflictFeed(watcher, claimed)
