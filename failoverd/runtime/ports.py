"""The runtime's ports: everything a daemon's shell asks of the world, declared whole.

The shell (:mod:`failoverd.runtime.shell`) and its executor speak to the
host, the heartbeat wire and the administrator only through these three
protocols, and, in witness mode (spec/witness.md), to the etcd cluster through
a fourth, :class:`Claims` (real: :class:`~failoverd.runtime.claims.WitnessClaims`;
the tests run it against a real cluster, or an endpoint that never answers). Each has one real implementation and one in memory
(:mod:`failoverd.runtime.memory`, what the tests run the daemons on):

=================  ==============================================  =====================================
port               real                                            in memory
=================  ==============================================  =====================================
:class:`System`    :class:`~failoverd.system.takeover.Takeover`    :class:`~failoverd.runtime.memory.MemorySystem`
:class:`Transport` :class:`~failoverd.runtime.udp.HeartbeatSocket` :class:`~failoverd.runtime.memory.MemoryTransport`
:class:`Notifications` :class:`~failoverd.system.mail.Notifier`    :class:`~failoverd.runtime.memory.MemoryNotifications`
=================  ==============================================  =====================================

Every capability is a method of its port, so nothing is found out with
``getattr``: a system that cannot watch a wire says so by returning ``None``
from :meth:`System.conflict_watcher` (and one that has no links from
:meth:`System.link_watcher`); one that runs no hooks never calls the
observer it is given in :meth:`System.observe_hooks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

import trio

from failoverd.core.actions import (
    AcquireDone,
    Addresses,
    Alarm,
    ClaimDone,
    Notify,
    ProbeDone,
    ReachDone,
    ReleaseDone,
    RenewDone,
)
from failoverd.core.addresses import Triplet

if TYPE_CHECKING:
    from failoverd.system.takeover import EarlyAdd

ConflictReport = Callable[[frozenset[Triplet]], None]
"""Called with the addresses another host's ARP claims (the core's ``conflict_seen`` input)."""

LinkReport = Callable[[str, bool], None]
"""Called with an interface's name and whether its link is up (the core's ``link_changed`` input)."""

HookObserver = Callable[[str, list[str], float], None]
"""Called after one address's hooks of one phase ran: the phase (``Test``,
``PreAcq`` ...), each hook's outcome (``ok``, ``failed``, ``timeout``,
``error``; ``ok``/``refused`` for Test) and the seconds they took together."""


class ConflictWatch(Protocol):
    """Listens on the wire for other hosts claiming the addresses it is told to watch."""

    def watch(self, triplets: Iterable[Triplet]) -> None:
        """Watch exactly these from now on (none: stop listening)."""
        ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled, reporting every claim on a watched address."""
        ...


class LinkWatch(Protocol):
    """Follows the links (admin state and carrier) of the interfaces it was made for."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Report every interface's link once, then start; report each change until cancelled."""
        ...


class System(Protocol):
    """The host: its addresses (with hooks and gratuitous ARP), ARP probes, and its wire."""

    async def probe(self, addresses: Addresses) -> ProbeDone:
        """Which of ``addresses`` another host answers for (RFC 5227 probe)."""
        ...

    def add_early(self, addresses: Addresses) -> EarlyAdd | None:
        """The first address's add, now and synchronously (any thread), if no hook must run before it; else None.

        What the frame thread does where the core decides to acquire (see
        :mod:`failoverd.runtime.shell`); the acquire given the result goes on from the add.
        """
        ...

    async def acquire(self, addresses: Addresses, early: EarlyAdd | None = None) -> AcquireDone:
        """Add the addresses: Test, PreAcq hooks, add, gratuitous ARP, PostAcq hooks (``early``: the first's add done)."""
        ...

    async def release(
        self, addresses: Addresses, on_removed: Callable[[ReleaseDone], None] | None = None
    ) -> ReleaseDone:
        """Remove the addresses and run their PostRel hooks; ``on_removed``
        gets the result as soon as the addresses are gone, before the hooks."""
        ...

    async def announce(self, addresses: Addresses) -> None:
        """Gratuitous ARP for addresses already held."""
        ...

    async def present(self, addresses: Iterable[Triplet]) -> frozenset[Triplet]:
        """Which of ``addresses`` are on this host's interfaces now (adopted at start)."""
        ...

    def conflict_watcher(self, report: ConflictReport) -> ConflictWatch | None:
        """A watcher of this host's wire reporting to ``report``; ``None``: this system has no wire."""
        ...

    def link_watcher(self, interfaces: Iterable[str], report: LinkReport) -> LinkWatch | None:
        """A watcher of the links of ``interfaces`` reporting to ``report``; ``None``: this system has no links."""
        ...

    def observe_hooks(self, observer: HookObserver) -> None:
        """From now on, tell ``observer`` what every hook run did (the metrics count them)."""
        ...


class Transport(Protocol):
    """The heartbeat wire, outwards: a datagram to each target, never waiting."""

    def send_nowait(self, payload: bytes, targets: tuple[str, ...]) -> None: ...


class Notifications(Protocol):
    """The administrator: notifications and mailed alarms, sent in the background."""

    def start_soon(self, nursery: trio.Nursery, action: Notify | Alarm) -> None:
        """Queue ``action`` for sending in a task of ``nursery``; return at once."""
        ...


class Claims(Protocol):
    """The etcd witness: this host's claim on its address set (spec/witness.md).

    Every call is bounded and reports failures as its result, never raises."""

    @property
    def renew_period(self) -> float:
        """Seconds between the sendings of two renewals."""
        ...

    async def claim(self) -> ClaimDone:
        """Take the claim (free, or a holder's that stopped renewing); granted: renew it from now on."""
        ...

    async def renew(self) -> RenewDone:
        """One renewal of the granted claim."""
        ...

    async def reach(self) -> ReachDone:
        """One cheap request (a read of the claim's key, one request's deadline): does etcd answer us?"""
        ...

    async def release(self) -> None:
        """Give the claim back (best effort: its lease expires anyway)."""
        ...
