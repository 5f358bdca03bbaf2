"""IPv6's ARP: Neighbour Solicitations and Advertisements (RFC 4861) for
Duplicate Address Detection (RFC 4862) before taking an address, and
unsolicited Advertisements after.

Theory of operation: as :mod:`failoverd.system.arp`, one raw AF_PACKET socket
per interface, here bound to ETH_P_IPV6, wrapped as a Trio socket; every
frame is built and read here with :mod:`struct` (Ethernet, the IPv6 header,
ICMPv6 with its checksum over the pseudo-header), so no packet library is
needed. A classic BPF filter on the socket lets the kernel pass only
Neighbour Solicitations and Advertisements up: an IPv6 LAN carries far more
than ARP, and the daemon must not wake for each frame of it.

- A *probe* (DAD) is a Neighbour Solicitation for the address from the
  unspecified address ``::`` to its solicited-node multicast group
  (``ff02::1:ffXX:XXXX``), hop limit 255, without a source link-layer
  option (RFC 4862 section 5.4.2). A host that holds the address answers
  with an Advertisement to all nodes (Linux does, for every address it has
  that is not itself tentative). The probing socket joins that group's
  Ethernet multicast address, so a NIC that filters multicast still lets
  the answer of a host probing for the same address at once through.
- An *announcement* is an unsolicited Neighbour Advertisement to all nodes
  (``ff02::1``) with the override flag, the router flag when the interface
  forwards, and our MAC as target link-layer address (RFC 4861 section
  7.2.6): neighbours replace their cache entry for the address at once.

Conflict rule, as RFC 5227's for ARP: a frame not sent by us *claims* an
address when it is an Advertisement for it, or a Solicitation sent from it.
During a probe, a Solicitation from ``::`` for the address (another host
probing for it at the same moment) also counts (RFC 4862 section 5.4.3).

Frames that break RFC 4861 section 7.1's validity rules (hop limit below
255, a bad checksum, code not 0, too short, a multicast target) are
ignored, as a host's own stack ignores them.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Literal

import trio

from failoverd.system.namespace import in_netns
from failoverd.system.packetsocket import PacketSocket, bind_packet_socket

ETH_P_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
NEIGHBOUR_SOLICITATION = 135
NEIGHBOUR_ADVERTISEMENT = 136
HOP_LIMIT = 255

# Neighbour Advertisement flags (the first byte after the checksum).
FLAG_ROUTER = 0x80
FLAG_SOLICITED = 0x40
FLAG_OVERRIDE = 0x20

OPTION_SOURCE_LLADDR = 1
OPTION_TARGET_LLADDR = 2

UNSPECIFIED = ipaddress.IPv6Address("::")
ALL_NODES = ipaddress.IPv6Address("ff02::1")

_ETHERNET = struct.Struct("!6s6sH")
_IPV6 = struct.Struct("!IHBB16s16s")  # version/class/flow, payload length, next header, hop limit, src, dst
_ICMP = struct.Struct("!BBHB3x16s")  # type, code, checksum, NA flags (reserved in an NS), target
_LLADDR_OPTION = struct.Struct("!BB6s")
_ICMP_OFFSET = _ETHERNET.size + _IPV6.size

# linux/if_packet.h, asm-generic/socket.h
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_MULTICAST = 0
SO_ATTACH_FILTER = 26
_PACKET_MREQ = struct.Struct("=iHH8s")  # ifindex, type, address length, address

# Classic BPF: accept IPv6 frames whose next header is ICMPv6 and whose ICMPv6
# type is 135 or 136; drop the rest in the kernel. (code, jt, jf, k)
_NDP_FILTER = (
    (0x28, 0, 0, 12),  # ldh [12]            ethertype
    (0x15, 0, 5, ETH_P_IPV6),  # jeq IPv6, else drop
    (0x30, 0, 0, _ETHERNET.size + 6),  # ldb [20]  next header
    (0x15, 0, 3, IPPROTO_ICMPV6),  # jeq ICMPv6, else drop
    (0x30, 0, 0, _ICMP_OFFSET),  # ldb [54]  ICMPv6 type
    (0x15, 2, 0, NEIGHBOUR_SOLICITATION),  # jeq 135: accept
    (0x15, 1, 0, NEIGHBOUR_ADVERTISEMENT),  # jeq 136: accept
    (0x06, 0, 0, 0),  # drop
    (0x06, 0, 0, 0x40000),  # accept the whole frame
)


@dataclass(frozen=True)
class NdpPacket:
    """One Neighbour Solicitation or Advertisement, with the Ethernet source it came from."""

    kind: int
    sender_mac: bytes
    source: ipaddress.IPv6Address
    destination: ipaddress.IPv6Address
    target: ipaddress.IPv6Address
    flags: int = 0
    lladdr: bytes | None = None
    """The source (NS) or target (NA) link-layer address option, if present."""

    @property
    def is_probe(self) -> bool:
        """A DAD probe: a Solicitation from the unspecified address."""
        return self.kind == NEIGHBOUR_SOLICITATION and self.source == UNSPECIFIED

    @property
    def claimed(self) -> ipaddress.IPv6Address | None:
        """The address this frame says its sender holds, if any."""
        if self.kind == NEIGHBOUR_ADVERTISEMENT:
            return self.target
        return None if self.source == UNSPECIFIED else self.source

    def describe(self) -> str:
        if self.is_probe:
            return "DAD probe"
        if self.kind == NEIGHBOUR_SOLICITATION:
            return f"Neighbour Solicitation from {self.source}"
        return "Neighbour Advertisement"


def solicited_node(address: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """RFC 4291 section 2.7.1: ff02::1:ff00:0/104 and the address's low 24 bits."""
    return ipaddress.IPv6Address(int(ipaddress.IPv6Address("ff02::1:ff00:0")) | (int(address) & 0xFFFFFF))


def multicast_mac(address: ipaddress.IPv6Address) -> bytes:
    """RFC 2464 section 7: 33:33 and the group's low 32 bits."""
    return b"\x33\x33" + address.packed[-4:]


def checksum(source: ipaddress.IPv6Address, destination: ipaddress.IPv6Address, message: bytes) -> int:
    """The ICMPv6 checksum (RFC 4443 section 2.3) of ``message`` with its checksum field zero."""
    data = source.packed + destination.packed + struct.pack("!I3xB", len(message), IPPROTO_ICMPV6) + message
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_frame(packet: NdpPacket, destination_mac: bytes | None = None) -> bytes:
    """An Ethernet frame carrying ``packet`` (to the IPv6 destination's multicast MAC by default)."""
    option = b""
    if packet.lladdr is not None:
        kind = OPTION_TARGET_LLADDR if packet.kind == NEIGHBOUR_ADVERTISEMENT else OPTION_SOURCE_LLADDR
        option = _LLADDR_OPTION.pack(kind, 1, packet.lladdr)
    body = _ICMP.pack(packet.kind, 0, 0, packet.flags, packet.target.packed) + option
    body = body[:2] + struct.pack("!H", checksum(packet.source, packet.destination, body)) + body[4:]
    if destination_mac is None:
        destination_mac = multicast_mac(packet.destination)
    return (
        _ETHERNET.pack(destination_mac, packet.sender_mac, ETH_P_IPV6)
        + _IPV6.pack(6 << 28, len(body), IPPROTO_ICMPV6, HOP_LIMIT, packet.source.packed, packet.destination.packed)
        + body
    )


def parse_frame(frame: bytes) -> NdpPacket | None:
    """The valid Neighbour Solicitation or Advertisement in an Ethernet frame, else None."""
    if len(frame) < _ICMP_OFFSET + _ICMP.size:
        return None
    _dst, sender_mac, ethertype = _ETHERNET.unpack_from(frame)
    if ethertype != ETH_P_IPV6:
        return None
    first, length, next_header, hop_limit, src, dst = _IPV6.unpack_from(frame, _ETHERNET.size)
    if first >> 28 != 6 or next_header != IPPROTO_ICMPV6 or hop_limit != HOP_LIMIT:
        return None
    body = frame[_ICMP_OFFSET:_ICMP_OFFSET + length]
    if length < _ICMP.size or len(body) != length:
        return None
    kind, code, _sum, flags, target_bytes = _ICMP.unpack_from(body)
    if kind not in (NEIGHBOUR_SOLICITATION, NEIGHBOUR_ADVERTISEMENT) or code != 0:
        return None
    source, destination = ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst)
    if checksum(source, destination, body[:2] + b"\x00\x00" + body[4:]) != _sum:
        return None
    target = ipaddress.IPv6Address(target_bytes)
    if target.is_multicast:
        return None
    lladdr = _lladdr_option(body[_ICMP.size:], OPTION_TARGET_LLADDR if kind == NEIGHBOUR_ADVERTISEMENT
                            else OPTION_SOURCE_LLADDR)
    if lladdr is False:
        return None
    if kind == NEIGHBOUR_SOLICITATION:
        flags = 0
        # RFC 4861 7.1.1: from ::, only to a solicited-node group and without a source link-layer option.
        if source == UNSPECIFIED and (lladdr is not None or destination != solicited_node(target)):
            return None
    else:
        flags &= FLAG_ROUTER | FLAG_SOLICITED | FLAG_OVERRIDE
        if destination.is_multicast and flags & FLAG_SOLICITED:
            return None
    return NdpPacket(kind, sender_mac, source, destination, target, flags, lladdr)


def _lladdr_option(options: bytes, wanted: int) -> bytes | Literal[False] | None:
    """The Ethernet address in option ``wanted``; None if absent; False if the options are malformed."""
    found: bytes | None = None
    offset = 0
    # Each option is at least 8 bytes, so this ends after len(options) / 8 rounds.
    while offset < len(options):
        if len(options) - offset < 2:
            return False
        kind, units = options[offset], options[offset + 1]
        if units == 0 or offset + units * 8 > len(options):
            return False
        if kind == wanted and units == 1 and found is None:
            found = options[offset + 2:offset + 8]
        offset += units * 8
    return found


def probe_packet(mac: bytes, address: ipaddress.IPv6Address) -> NdpPacket:
    return NdpPacket(NEIGHBOUR_SOLICITATION, mac, UNSPECIFIED, solicited_node(address), address)


def announcement_packet(mac: bytes, address: ipaddress.IPv6Address, router: bool = False) -> NdpPacket:
    flags = FLAG_OVERRIDE | (FLAG_ROUTER if router else 0)
    return NdpPacket(NEIGHBOUR_ADVERTISEMENT, mac, address, ALL_NODES, address, flags, mac)


def conflicts(packet: NdpPacket, address: ipaddress.IPv6Address, own_macs: frozenset[bytes]) -> bool:
    """Does ``packet``, seen while probing for ``address``, show that another host claims it?"""
    if packet.sender_mac in own_macs:
        return False
    if packet.claimed == address:
        return True
    return packet.is_probe and packet.target == address


def forwarding(interface: str) -> bool:
    """Does ``interface`` forward IPv6 (so our Advertisements carry the router flag)?

    Read in the calling thread's network namespace; an unreadable setting counts as off.
    """
    try:
        with open(f"/proc/sys/net/ipv6/conf/{interface}/forwarding", encoding="ascii") as setting:
            return setting.read().strip() not in ("", "0")
    except OSError:
        return False


# --- sockets ----------------------------------------------------------------


class NdpSocket(PacketSocket):
    """A raw socket on one interface that sees only Neighbour Solicitations and Advertisements.

    ``index`` is the interface's index (needed only to :meth:`join` a group);
    ``router`` is whether the interface forwards IPv6 (both read by :meth:`open`
    in the socket's namespace).

    Resource handling: an async context manager; the socket is closed on exit.

    Error handling: :meth:`open` raises :class:`InterfaceMissing` for an
    unknown interface; sending on a down interface raises :class:`InterfaceDown`.
    """

    def __init__(self, interface: str, sock: socket.socket, index: int = 0, router: bool = False) -> None:
        super().__init__(interface, sock)
        self.router = router
        self._index = index

    @classmethod
    async def open(cls, interface: str, netns: str | None = None) -> NdpSocket:
        def make() -> tuple[socket.socket, int, bool]:
            sock = bound_socket(interface)
            try:
                return sock, socket.if_nametoindex(interface), forwarding(interface)
            except BaseException:
                sock.close()
                raise

        sock, index, router = await trio.to_thread.run_sync(in_netns, netns, make)
        return cls(interface, sock, index, router)

    def join(self, group: ipaddress.IPv6Address) -> None:
        """Receive frames to ``group``'s Ethernet address even where the NIC filters multicast
        (for as long as the socket is open)."""
        if not self._index:
            raise ValueError(f"{self.interface}: joining a group needs the interface's index")
        request = _PACKET_MREQ.pack(self._index, PACKET_MR_MULTICAST, 6, multicast_mac(group).ljust(8, b"\x00"))
        self._sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, request)

    async def send(self, packet: NdpPacket) -> None:
        await self.send_frame(build_frame(packet))

    async def receive(self) -> NdpPacket | None:
        """The next NS or NA another host sent on this interface (None: not one, invalid, or our own)."""
        data = await self.receive_frame()
        return None if data is None else parse_frame(data)


def bound_socket(interface: str) -> socket.socket:
    """An AF_PACKET socket on ``interface`` with the NDP filter attached (in the caller's namespace)."""
    return bind_packet_socket(interface, ETH_P_IPV6, _attach_filter)


def _attach_filter(sock: socket.socket) -> None:
    program = b"".join(struct.pack("=HBBI", *instruction) for instruction in _NDP_FILTER)
    buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("HP", len(_NDP_FILTER), ctypes.addressof(buffer))
    # The kernel copies the program during the call; buffer lives until it returns.
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
