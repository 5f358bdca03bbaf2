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

Only a system that can watch its wire offers ``conflict_watcher`` (the
host's does); an in-memory system in tests has no wire, so nothing is watched.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from failoverd.core.actions import Action, Addresses, StateChanged
from failoverd.system.arpwatch import ConflictWatcher, Report


class ConflictFeed:
    """Keeps ``watcher`` on what the core claims (``claimed()``).

    Pass :meth:`follow` as the shell's ``on_action``; run :meth:`run` in the
    daemon's nursery (with ``nursery.start``).
    """

    def __init__(self, watcher: ConflictWatcher, claimed: Callable[[], Addresses]) -> None:
        self.watcher = watcher
        self._claimed = claimed

    def follow(self, now: float, action: Action) -> None:
        if isinstance(action, StateChanged):
            self.watcher.watch(self._claimed())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch until cancelled; started once what the core claims now is watched."""
        self.watcher.watch(self._claimed())
        await self.watcher.run(task_status=task_status)


def conflict_feed(system: object, report: Report, claimed: Callable[[], Addresses]) -> ConflictFeed | None:
    """The feed for ``system``'s wire, or None if the system cannot watch one."""
    make: Callable[[Report], ConflictWatcher] | None = getattr(system, "conflict_watcher", None)
    if make is None:
        return None
    return ConflictFeed(make(report), claimed)
