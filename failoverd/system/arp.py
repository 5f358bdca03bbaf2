"""RFC 5227 ARP probes before taking an address, gratuitous ARP after.

Theory of operation: one raw AF_PACKET socket per interface, bound to
ETH_P_ARP, wrapped as a Trio socket so sending and listening never block the
loop. A *probe* is an ARP request with sender IP 0.0.0.0 and target IP the
address; any other host that holds the address answers it (Linux does, for
every local address). An *announcement* (gratuitous ARP) is an ARP request
with sender IP = target IP = the address, broadcast, so switches and clients
move their caches to our MAC at once.

Conflict rule (RFC 5227 section 2.1.1): during a probe, an address is *answered*
when any ARP packet not sent by us has sender IP == the address, or when an
ARP probe for the address arrives from another MAC (someone else is probing
for it at the same moment).

IPv6 addresses take the same steps on the same schedule with IPv6's
counterparts (:mod:`failoverd.system.ndp`): Duplicate Address Detection in
place of the probe, unsolicited Neighbour Advertisements in place of the
gratuitous ARP. :class:`Prober` and :class:`Announcer` sort a request by
interface and family and run each part with the matching socket, so a mixed
pair of addresses on one interface is probed (and announced) in parallel.

Every operation is bounded: a probe lasts ``(count - 1) * spacing + wait``
seconds, an announcement ``(count - 1) * spacing``; both are cancellable.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import trio

from failoverd.core.addresses import Triplet
from failoverd.system import ndp
from failoverd.system.namespace import in_netns
from failoverd.system.netlink import InterfaceDown, InterfaceMissing
from failoverd.system.packetsocket import PacketSocket, bind_packet_socket

log = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARP_REQUEST = 1
ARP_REPLY = 2
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ZERO_IP = ipaddress.IPv4Address("0.0.0.0")
_MIN_FRAME = 60  # Ethernet minimum without FCS; short frames are padded

_ETHERNET = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")

T = TypeVar("T")


@dataclass(frozen=True)
class ArpPacket:
    op: int
    sender_mac: bytes
    sender_ip: ipaddress.IPv4Address
    target_mac: bytes
    target_ip: ipaddress.IPv4Address

    @property
    def is_probe(self) -> bool:
        return self.op == ARP_REQUEST and self.sender_ip == ZERO_IP


def build_frame(source_mac: bytes, packet: ArpPacket, destination: bytes = BROADCAST) -> bytes:
    """An Ethernet frame carrying an IPv4-over-Ethernet ARP packet."""
    frame = _ETHERNET.pack(destination, source_mac, ETH_P_ARP) + _ARP.pack(
        1, ETH_P_IP, 6, 4, packet.op,
        packet.sender_mac, packet.sender_ip.packed,
        packet.target_mac, packet.target_ip.packed,
    )
    return frame.ljust(_MIN_FRAME, b"\x00")


def parse_frame(frame: bytes) -> ArpPacket | None:
    """The ARP packet in an Ethernet frame, or None if it is not IPv4-over-Ethernet ARP."""
    if len(frame) < _ETHERNET.size + _ARP.size:
        return None
    _dst, _src, ethertype = _ETHERNET.unpack_from(frame)
    if ethertype != ETH_P_ARP:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, _ETHERNET.size)
    if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4) or op not in (ARP_REQUEST, ARP_REPLY):
        return None
    return ArpPacket(op, sha, ipaddress.IPv4Address(spa), tha, ipaddress.IPv4Address(tpa))


def probe_packet(mac: bytes, address: ipaddress.IPv4Address) -> ArpPacket:
    return ArpPacket(ARP_REQUEST, mac, ZERO_IP, ZERO_MAC, address)


def announcement_packet(mac: bytes, address: ipaddress.IPv4Address) -> ArpPacket:
    return ArpPacket(ARP_REQUEST, mac, address, ZERO_MAC, address)


def conflicts(packet: ArpPacket, address: ipaddress.IPv4Address, own_macs: frozenset[bytes]) -> bool:
    """Does ``packet``, seen while probing for ``address``, show that another host claims it?"""
    if packet.sender_mac in own_macs:
        return False
    if packet.sender_ip == address:
        return True
    return packet.is_probe and packet.target_ip == address


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


# --- sockets ----------------------------------------------------------------


class ArpSocket(PacketSocket):
    """A raw ARP socket bound to one interface, usable from Trio.

    Resource handling: an async context manager; the socket is closed on exit.

    Error handling: :func:`open` raises :class:`InterfaceMissing` for an
    unknown interface; sending on a down interface raises :class:`InterfaceDown`.
    """

    @classmethod
    async def open(cls, interface: str, netns: str | None = None) -> ArpSocket:
        if netns is None:
            # Here: one socket() and bind() on the Trio thread, no worker
            # thread to wake (and to contend for the GIL with the address
            # change that is often running beside this). A namespace needs
            # a thread of its own (setns moves only the calling thread).
            await trio.lowlevel.checkpoint()
            return cls(interface, _bound_socket(interface))
        sock = await trio.to_thread.run_sync(in_netns, netns, lambda: _bound_socket(interface))
        return cls(interface, sock)

    async def send(self, packet: ArpPacket, destination: bytes = BROADCAST) -> None:
        await self.send_frame(build_frame(self.mac, packet, destination))

    async def receive(self) -> ArpPacket | None:
        """The next ARP packet another host sent on this interface (None: not ARP or our own)."""
        data = await self.receive_frame()
        return None if data is None else parse_frame(data)


def _bound_socket(interface: str) -> socket.socket:
    return bind_packet_socket(interface, ETH_P_ARP)


def _by_interface(triplets: Iterable[Triplet]) -> dict[tuple[str, int], list[Triplet]]:
    """The triplets by (interface, IP version): each group is one socket's work."""
    grouped: dict[tuple[str, int], list[Triplet]] = {}
    for triplet in sorted(set(triplets)):
        grouped.setdefault((triplet.interface, triplet.version), []).append(triplet)
    return grouped


async def _open(interface: str, version: int, netns: str | None) -> ArpSocket | ndp.NdpSocket:
    if version == 6:
        return await ndp.NdpSocket.open(interface, netns)
    return await ArpSocket.open(interface, netns)


def _check_schedule(count: int, spacing: float) -> None:
    if count < 0:
        raise ValueError(f"count must not be negative, not {count}")
    if spacing < 0:
        raise ValueError(f"spacing must not be negative, not {spacing}")


# --- probing ----------------------------------------------------------------


class Prober:
    """Asks, RFC 5227 style (RFC 4862's DAD for IPv6), whether any other host holds each address.

    ``count`` probes per address, ``spacing`` seconds apart, then ``wait``
    more seconds of listening; ``count=0`` turns probing off (every address
    is reported silent at once). ``own_macs`` are further MACs of this host
    whose ARP never counts as a conflict (the probing interface's own MAC
    never does).

    Error handling: an interface that cannot be probed (missing or down) is
    logged as an error and its addresses reported as silent: adding them will
    fail with the precise reason, and the caller learns it from the acquire.
    """

    def __init__(
        self,
        count: int = 3,
        spacing: float = 0.2,
        wait: float = 0.4,
        netns: str | None = None,
        own_macs: Iterable[bytes] = (),
    ) -> None:
        _check_schedule(count, spacing)
        if wait <= 0:
            raise ValueError(f"wait must be positive, not {wait}")
        self.count = count
        self.spacing = spacing
        self.wait = wait
        self.netns = netns
        self.own_macs = frozenset(own_macs)

    async def probe(self, triplets: Iterable[Triplet]) -> frozenset[Triplet]:
        """The triplets whose address another host answered for."""
        answered: set[Triplet] = set()
        if not self.count:
            return frozenset()
        async with trio.open_nursery() as nursery:
            for (interface, version), group in _by_interface(triplets).items():
                nursery.start_soon(self._probe_interface, interface, version, group, answered)
        return frozenset(answered)

    async def _probe_interface(self, interface: str, version: int, group: list[Triplet], answered: set[Triplet]) -> None:
        try:
            sock = await _open(interface, version, self.netns)
        except (InterfaceMissing, OSError) as error:
            log.error("cannot probe %s: %s", ", ".join(map(str, group)), error)
            return
        async with sock:
            if isinstance(sock, ndp.NdpSocket):
                try:
                    for triplet in group:
                        sock.join(ndp.solicited_node(_v6(triplet.address)))
                except OSError as error:
                    log.error("cannot probe %s: %s", ", ".join(map(str, group)), error)
                    return
            own = self.own_macs | {sock.mac}
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen, sock, group, own, answered)
                try:
                    for round_ in range(self.count):
                        if round_:
                            await trio.sleep(self.spacing)
                        for triplet in group:
                            await _send_probe(sock, triplet.address)
                except (InterfaceDown, OSError) as error:
                    log.error("cannot probe %s: %s", ", ".join(map(str, group)), error)
                    nursery.cancel_scope.cancel()
                    return
                await trio.sleep(self.wait)
                nursery.cancel_scope.cancel()
        what = "DAD" if version == 6 else "ARP probe"
        for triplet in group:
            log.info("%s for %s: %s", what, triplet, "answered" if triplet in answered else "silent")

    @staticmethod
    async def _listen(
        sock: ArpSocket | ndp.NdpSocket, group: list[Triplet], own: frozenset[bytes], answered: set[Triplet]
    ) -> None:
        while True:
            try:
                packet = await sock.receive()
            except OSError as error:
                # The link went down mid-probe (ENETDOWN and friends): that is
                # what probes run into when things fail, and it must end the
                # probe (nobody answered here), not the daemon.
                log.error("probe on %s stopped listening: %s", sock.interface, error)
                return
            if packet is None:
                continue
            for triplet in group:
                if triplet not in answered and _conflicts(packet, triplet, own):
                    answered.add(triplet)
                    log.warning("%s is claimed by %s (%s)", triplet.address, mac_text(packet.sender_mac), _what(packet))


def _conflicts(packet: ArpPacket | ndp.NdpPacket, triplet: Triplet, own: frozenset[bytes]) -> bool:
    if isinstance(packet, ndp.NdpPacket):
        return isinstance(triplet.address, ipaddress.IPv6Address) and ndp.conflicts(packet, triplet.address, own)
    return isinstance(triplet.address, ipaddress.IPv4Address) and conflicts(packet, triplet.address, own)


def _what(packet: ArpPacket | ndp.NdpPacket) -> str:
    """How a log line names the frame that claimed an address."""
    if isinstance(packet, ndp.NdpPacket):
        return packet.describe()
    kind = "probe" if packet.is_probe else ("reply" if packet.op == ARP_REPLY else "request")
    return f"ARP {kind} from {packet.sender_ip}"


# --- announcing -------------------------------------------------------------


class Announcer:
    """Sends ``count`` gratuitous ARP announcements per address, ``spacing`` seconds apart
    (``count=0``: none); for an IPv6 address, as many unsolicited Neighbour
    Advertisements (override flag; router flag if the interface forwards).

    Error handling: failure to announce is logged, never raised: the address
    is held either way, and clients will still find it by ordinary ARP.
    """

    def __init__(self, count: int = 3, spacing: float = 0.2, netns: str | None = None) -> None:
        _check_schedule(count, spacing)
        self.count = count
        self.spacing = spacing
        self.netns = netns

    async def announce(
        self, triplets: Iterable[Triplet], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Announce every address; ``task_status.started()`` once the first round is out."""
        groups = _by_interface(triplets) if self.count else {}
        async with trio.open_nursery() as nursery:
            for (interface, version), group in groups.items():
                await nursery.start(self._announce_interface, interface, version, group)
            task_status.started()

    async def _announce_interface(
        self, interface: str, version: int, group: list[Triplet], *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        names = ", ".join(map(str, group))
        try:
            sock = await _open(interface, version, self.netns)
        except (InterfaceMissing, OSError) as error:
            log.error("cannot announce %s: %s", names, error)
            task_status.started()
            return
        async with sock:
            try:
                for round_ in range(self.count):
                    if round_:
                        await trio.sleep(self.spacing)
                    for triplet in group:
                        if isinstance(sock, ndp.NdpSocket):
                            await sock.send(ndp.announcement_packet(sock.mac, _v6(triplet.address), sock.router))
                        else:
                            await sock.send(announcement_packet(sock.mac, _v4(triplet.address)))
                    if not round_:
                        task_status.started()
            except (InterfaceDown, OSError) as error:
                log.error("cannot announce %s: %s", names, error)
                if not round_:
                    task_status.started()
                return
        what = "unsolicited Neighbour Advertisements" if version == 6 else "gratuitous ARP"
        log.info("announced %s (%d %s each)", names, self.count, what)


def _v4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    """``address`` on an ARP socket: opened by the address's family, so always IPv4."""
    assert isinstance(address, ipaddress.IPv4Address)
    return address


def _v6(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """``address`` on a neighbour discovery socket: opened by the address's family, so always IPv6."""
    assert isinstance(address, ipaddress.IPv6Address)
    return address


async def _send_probe(sock: ArpSocket | ndp.NdpSocket, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """One probe for ``address``: an ARP probe (RFC 5227) or a DAD solicitation (RFC 4862)."""
    if isinstance(sock, ndp.NdpSocket):
        await sock.send(ndp.probe_packet(sock.mac, _v6(address)))
    else:
        await sock.send(probe_packet(sock.mac, _v4(address)))
