"""RFC 5227 ongoing conflict detection: who else claims the addresses we hold?

Theory of operation: while a daemon holds (or is adding) an address, any ARP
packet on that address's interface whose sender IP is the address and whose
sender MAC is not one of this host's is another host using the address
(RFC 5227 section 2.4): a gratuitous ARP or announcement, an ARP request it
sent, or its reply to someone's request. The watcher reports such addresses
to a callback, which hands them to the core (``conflict_seen``); the core
decides what to do. ARP probes (sender IP 0.0.0.0) claim nothing yet and are
ignored, as are frames this host sent (``PACKET_OUTGOING``) and frames whose
sender MAC belongs to any interface of this host.

One raw AF_PACKET socket (see :class:`~failoverd.system.arp.ArpSocket`,
opened in a namespace exactly as the prober's and the announcer's are) per
interface that carries a watched address, opened when the first such address
is watched and closed when the last one goes: a host that holds nothing reads
no ARP at all. The watched set is replaced at run time with :meth:`ConflictWatcher.watch`
and takes effect for the next packet on an interface already open.

IPv6 addresses are watched the same way through Neighbour Discovery
(:mod:`failoverd.system.ndp`): a Neighbour Advertisement for a held address,
or a Solicitation sent from it, by a MAC that is not ours claims it (DAD
probes, from ``::``, claim nothing yet). An interface that carries watched
addresses of both families has one socket for each, each opened only while
an address of its family is watched.

Every wait is on a socket or an event (no polling); the only timer is the
pause before reopening an interface that could not be opened or went down.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
from collections.abc import Callable, Iterable

import trio

from failoverd.core.addresses import Triplet
from failoverd.system import ndp
from failoverd.system.arp import (
    ARP_REPLY,
    ArpPacket,
    ArpSocket,
    _bound_socket,
    mac_text,
)
from failoverd.system.namespace import in_netns
from failoverd.system.netlink import InterfaceMissing
from failoverd.system.rtnetlink import RouteSocket

log = logging.getLogger(__name__)

REOPEN_DELAY = 1.0
"""Seconds before an interface that could not be opened, or went down, is tried again."""

LOG_EVERY = 1.0
"""At most one log line per address in this many seconds (a flood of foreign ARP must not flood the log)."""

Report = Callable[[frozenset[Triplet]], None]


class ConflictWatcher:
    """Reports the watched addresses another host claims on the wire.

    ``report(triplets)`` is called synchronously, from the watcher's task, for
    every ARP packet that claims one or more watched triplets; it must not
    block. ``netns`` names a network namespace (``/run/netns/NAME``) to watch
    in instead of our own. ``own_macs`` are further MACs that count as this
    host's (every interface's MAC in the namespace always does).

    Resource handling: :meth:`run` owns every socket; they are closed when it
    returns or is cancelled.

    Error handling: an interface that cannot be opened (missing) or goes down
    is logged and retried every :data:`REOPEN_DELAY` seconds while one of its
    addresses is watched; the watcher never raises for it. Other errors
    propagate (they are bugs).
    """

    def __init__(self, report: Report, *, netns: str | None = None, own_macs: Iterable[bytes] = ()) -> None:
        self._report = report
        self.netns = netns
        self.own_macs = frozenset(own_macs)
        self._watched: frozenset[Triplet] = frozenset()
        self._changed = trio.Event()
        self._listeners: dict[tuple[str, int], trio.CancelScope] = {}
        self._last_logged: dict[Triplet, float] = {}
        self.seen = 0
        """Packets reported so far (for status and tests)."""

    @property
    def watched(self) -> frozenset[Triplet]:
        return self._watched

    @property
    def interfaces(self) -> frozenset[str]:
        """The interfaces with a listener right now (open, or waiting to reopen)."""
        return frozenset(interface for interface, _version in self._listeners)

    def watch(self, triplets: Iterable[Triplet]) -> None:
        """Watch exactly ``triplets`` from now on (an empty set stops all listening)."""
        wanted = frozenset(triplets)
        if wanted != self._watched:
            self._watched = wanted
            self._changed.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep one listener per watched interface until cancelled.

        ``task_status.started()`` once a listener is open (or has failed and
        is waiting to retry) on every interface watched at that moment.
        """
        async with trio.open_nursery() as nursery:
            started = False
            while True:
                self._changed = trio.Event()
                wanted = {(t.interface, t.version) for t in self._watched}
                for link in sorted(set(self._listeners) - wanted):
                    self._listeners.pop(link).cancel()
                for link in sorted(wanted - set(self._listeners)):
                    self._listeners[link] = await nursery.start(self._listen, *link)
                if not started:
                    started = True
                    task_status.started()
                await self._changed.wait()

    # --- one interface ---------------------------------------------------------

    async def _listen(self, interface: str, version: int, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        """Listen on ``interface`` (for IP ``version``'s addresses) until cancelled, reopening it after a failure."""
        with trio.CancelScope() as scope:
            first = True
            # Ends only by cancellation (the interface is no longer watched, or
            # the daemon stops); each round either receives or sleeps first.
            while True:
                if not first:
                    await trio.sleep(REOPEN_DELAY)
                opened = await self._open(interface, version)
                if first:
                    first = False
                    task_status.started(scope)
                if opened is None:
                    continue
                sock, own = opened
                try:
                    await self._receive(sock, own)
                finally:
                    sock.close()

    async def _open(self, interface: str, version: int) -> tuple[ArpSocket | ndp.NdpSocket, frozenset[bytes]] | None:
        """The interface's ARP (or NDP) socket and every MAC of this host, or None (logged) if it cannot be opened."""

        def make() -> tuple[socket.socket, frozenset[bytes]]:
            raw = ndp.bound_socket(interface) if version == 6 else _bound_socket(interface)
            try:
                return raw, _host_macs()
            except BaseException:
                raw.close()
                raise

        what = "Neighbour Discovery" if version == 6 else "ARP"
        try:
            if self.netns is None:
                # Inline, as ArpSocket.open does: the watcher opens when the
                # core starts claiming, i.e. beside the failback's address
                # add, and a worker thread parsing netlink answers then
                # takes the GIL from it (docs/benchmarks.md).
                await trio.lowlevel.checkpoint()
                raw, macs = make()
            else:
                raw, macs = await trio.to_thread.run_sync(in_netns, self.netns, make)
        except (InterfaceMissing, OSError) as error:
            log.error("cannot watch %s for %s conflicts: %s (retrying every %g s)",
                      interface, what, error, REOPEN_DELAY)
            return None
        # No index: it only serves joining multicast groups, and the watcher hears NAs to all nodes.
        sock: ArpSocket | ndp.NdpSocket = ndp.NdpSocket(interface, raw) if version == 6 else ArpSocket(interface, raw)
        return sock, macs | self.own_macs | {sock.mac}

    async def _receive(self, arp: ArpSocket | ndp.NdpSocket, own: frozenset[bytes]) -> None:
        version = 6 if isinstance(arp, ndp.NdpSocket) else 4
        while True:
            try:
                packet = await arp.receive()
            except OSError as error:
                if error.errno not in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                    raise
                log.warning("%s went down: watching it again in %g s", arp.interface, REOPEN_DELAY)
                return
            if packet is None or packet.is_probe or packet.sender_mac in own:
                continue
            address = packet.claimed if isinstance(packet, ndp.NdpPacket) else packet.sender_ip
            claimed = frozenset(
                t for t in self._watched
                if t.interface == arp.interface and t.version == version and t.address == address
            )
            if claimed:
                self.seen += 1
                self._log(claimed, packet)
                self._report(claimed)

    def _log(self, claimed: frozenset[Triplet], packet: ArpPacket | ndp.NdpPacket) -> None:
        now = trio.current_time()
        due = [t for t in claimed if now >= self._last_logged.get(t, -math.inf) + LOG_EVERY]
        if not due:
            return
        for triplet in due:
            self._last_logged[triplet] = now
        if isinstance(packet, ndp.NdpPacket):
            family, frame = "IPv6", packet.describe()
        else:
            family, frame = "ARP", f"ARP {'reply' if packet.op == ARP_REPLY else 'request'}"
        log.warning("%s conflict: %s is claimed by %s (%s)",
                    family, ", ".join(sorted(map(str, due))), mac_text(packet.sender_mac), frame)


def _host_macs() -> frozenset[bytes]:
    """The MAC of every interface in the calling thread's network namespace."""
    with RouteSocket.open() as rt:
        # One dump, not a request per interface.
        macs = {bytes.fromhex(link.mac.replace(":", "")) for link in rt.link_details().values() if link.mac}
    return frozenset(macs - {b"\x00" * 6})
