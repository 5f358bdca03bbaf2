"""Heartbeat datagrams out of standard packet captures (pcap and pcapng).

The container formats are read by well-kept libraries (dpkt for pcap,
python-pcapng for pcapng); of each frame only what replay needs is looked at —
link header, IP header, UDP ports and length — by slicing, because building
full packet objects for a day of heartbeats costs seconds (spec: measured
7.3 s against 1.4 s for 864,000 frames).

Only unfragmented UDP datagrams to the heartbeat port, over IPv4 or IPv6, are
kept; everything else in the capture (ARP, Neighbour Discovery, other ports,
fragments) is counted and ignored. A frame cut short by the capture's snap
length cannot be judged and is an error (or skipped, on request).

Senders are spelled as the live daemon spells them in its trace: IPv4 dotted,
IPv6 canonical, an IPv4-mapped IPv6 sender as IPv4, and a link-local sender
with ``%`` and the interface it was captured on when the capture names one
(pcapng); a pcap names no interface, so its link-local senders carry no scope.
"""

from __future__ import annotations

import ipaddress
import math
import struct
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import BinaryIO

try:
    import dpkt
    import pcapng
    import pcapng.exceptions
except ImportError:  # the "replay" extra is not installed: only reading a capture needs it
    dpkt = pcapng = None

from failoverd.analysis.trace import Arrival
from failoverd.core import wire
from failoverd.core.addresses import needs_scope

PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
DEFAULT_PATH = "capture"
"""Path name for frames whose capture does not say which interface they came in on."""

# Link types (tcpdump.org/linktypes) and where the network-layer packet starts.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
_RAW_ALIASES = {12, 14, LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6}
SUPPORTED_LINK_TYPES = {LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2} | _RAW_ALIASES

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETHERTYPE_VERSION = {_ETH_IPV4: 4, _ETH_IPV6: 6}
_ETH_VLAN = (0x8100, 0x88A8, 0x9100)
# The loopback/null link header's address family, in either byte order: AF_INET is 2
# everywhere; AF_INET6 is 10 on Linux, 24 on OpenBSD and NetBSD, 28 on FreeBSD, 30 on macOS.
_LOOPBACK_FAMILY = {
    **{value.to_bytes(4, order): 4 for value in (2,) for order in ("little", "big")},
    **{value.to_bytes(4, order): 6 for value in (10, 24, 28, 30) for order in ("little", "big")},
}
_UDP = 17
# IPv6 extension headers a unicast UDP datagram may carry before its UDP header
# (hop-by-hop, routing, destination options); a fragment header (44) means a
# fragment, which heartbeats never are.
_IPV6_SKIPPABLE = frozenset({0, 43, 60})
_IPV6_MAX_EXTENSIONS = 8
"""More extension headers than this before the UDP header is not a heartbeat."""
_U16 = struct.Struct(">H")


class CaptureError(ValueError):
    """A capture that cannot be used; ``packet`` is 1-based (0: the file as a whole)."""

    def __init__(self, name: str, packet: int, message: str) -> None:
        self.name = name
        self.packet = packet
        self.message = message
        super().__init__(f"{name}: packet {packet}: {message}" if packet else f"{name}: {message}")


class _BadFrame(ValueError):
    pass


@dataclass
class Capture:
    """The heartbeat-port datagrams of one capture file, times in capture seconds."""

    datagrams: list[Arrival]
    """``(time, path, source, data, wall)``; ``wall`` is ``time``: a capture's clock is the wall clock."""
    packets: int = 0
    """Frames in the file."""
    ignored: int = 0
    """Frames that are not UDP (over IPv4 or IPv6) to the heartbeat port, or are fragments."""
    skipped: list[tuple[int, str]] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    format: str = "pcap"


def is_capture(prefix: bytes) -> bool:
    return prefix[:4] in PCAP_MAGICS or prefix[:4] == PCAPNG_MAGIC


def read_capture(path: str | Path, *, port: int = 1694, skip_bad: bool = False) -> Capture:
    """Read the heartbeat datagrams of a pcap or pcapng file.

    Datagram times are the capture's timestamps (seconds since 1970), which
    also serve as the replay's monotonic clock; a timestamp that goes
    backwards is a bad packet.
    """
    name = str(path)
    if dpkt is None or pcapng is None:
        raise CaptureError(name, 0, "reading a capture needs dpkt and python-pcapng: pip install 'failoverd[replay]'")
    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic in PCAP_MAGICS:
            frames = _pcap_frames(f, name)
            fmt = "pcap"
        elif magic == PCAPNG_MAGIC:
            frames = _pcapng_frames(f, name)
            fmt = "pcapng"
        else:
            raise CaptureError(name, 0, "not a pcap or pcapng file")
        return _collect(frames, name, port, skip_bad, fmt)


# Frames as the readers give them: ((timestamp, frame bytes), link type, path).
Frames = Iterable[tuple[tuple[float, bytes], int, str]]


def _collect(frames: Frames, name: str, port: int, skip_bad: bool, fmt: str) -> Capture:
    capture = Capture([], format=fmt)
    datagrams = capture.datagrams
    append = datagrams.append
    sources: dict[tuple[bytes, str], str] = {}
    last = -math.inf
    number = 0
    port_bytes = _U16.pack(port)
    try:
        for number, ((ts, frame), linktype, path) in enumerate(frames, 1):
            # Fast path for the common frame: untagged Ethernet, IPv4 without
            # options, unfragmented UDP to our port, complete in the capture.
            # (The port test first: once it matches, the frame has 38 bytes.)
            if (
                frame[36:38] == port_bytes
                and linktype == LINKTYPE_ETHERNET
                and ts >= last
                and frame[12:15] == b"\x08\x00\x45"
                and frame[23] == _UDP
                and not (frame[20] & 0x3F or frame[21])
            ):
                end = 34 + ((frame[38] << 8) | frame[39]) if len(frame) >= 40 else 0
                if end >= 42 and len(frame) >= end:
                    last = ts
                    raw = frame[26:30]
                    source = sources.get((raw, path))
                    if source is None:
                        source = sources[raw, path] = source_text(raw, path)
                    append((ts, path, source, frame[42:end], ts))
                    continue
            try:
                if ts < last:
                    raise _BadFrame(f"timestamp {ts!r} is earlier than the previous packet's {last!r}")
                found = _udp_to_port(frame, linktype, port)
            except _BadFrame as exc:
                if not skip_bad:
                    raise CaptureError(name, number, str(exc)) from None
                capture.skipped.append((number, str(exc)))
                continue
            last = ts
            if found is None:
                capture.ignored += 1
                continue
            src, payload = found
            source = sources.get((src, path))
            if source is None:
                source = sources[src, path] = source_text(src, path)
            append((ts, path, source, payload, ts))
    except dpkt.UnpackError:
        # dpkt's reader met the end of the file inside a record header.
        number += 1
        problem = "the file ends inside this packet's record (capture cut off?)"
        if not skip_bad:
            raise CaptureError(name, number, problem) from None
        capture.skipped.append((number, problem))
    capture.packets = number
    if datagrams:
        capture.start = datagrams[0][0]
        capture.end = max(last, capture.start)
    return capture


def _pcap_frames(f: BinaryIO, name: str) -> Frames:
    try:
        reader = dpkt.pcap.Reader(f)
    except (ValueError, dpkt.NeedData, dpkt.UnpackError) as exc:
        raise CaptureError(name, 0, f"unreadable pcap header ({exc})") from None
    linktype = reader.datalink()
    if linktype not in SUPPORTED_LINK_TYPES:
        raise CaptureError(name, 0, f"link type {linktype} is not supported (Ethernet, Linux cooked, raw IP, loopback are)")
    # zip, not a generator of our own: no Python frame per packet on top of dpkt's.
    return zip(reader, repeat(linktype), repeat(DEFAULT_PATH))


def _pcapng_frames(f: BinaryIO, name: str) -> Iterator[tuple[tuple[float, bytes], int, str]]:
    number = 0
    with warnings.catch_warnings():
        # python-pcapng warns about options it does not know; they do not matter here.
        warnings.simplefilter("ignore", pcapng.exceptions.PcapngWarning)
        try:
            for block in pcapng.FileScanner(f):
                if isinstance(block, pcapng.blocks.EnhancedPacket):
                    number += 1
                    interface = block.interface
                    linktype = interface.link_type
                    if linktype not in SUPPORTED_LINK_TYPES:
                        raise CaptureError(name, number, f"link type {linktype} is not supported")
                    ifname = interface.options.get("if_name") if "if_name" in interface.options else None
                    path = _path_name(ifname, block.interface_id)
                    yield (float(block.timestamp), bytes(block.packet_data)), linktype, path
                elif isinstance(block, (pcapng.blocks.SimplePacket, pcapng.blocks.ObsoletePacket)):
                    number += 1
                    raise CaptureError(name, number, "packet block without a usable timestamp (simple/obsolete packet block)")
        except pcapng.exceptions.PcapngLoadError as exc:
            raise CaptureError(name, number + 1, f"unreadable pcapng ({type(exc).__name__}: {exc})") from None
        except (struct.error, KeyError, ValueError) as exc:
            if isinstance(exc, CaptureError):
                raise
            raise CaptureError(name, number + 1, f"corrupt pcapng block ({exc})") from None


def _path_name(ifname: object, interface_id: int) -> str:
    if isinstance(ifname, bytes):
        ifname = ifname.decode("utf-8", "replace")
    if isinstance(ifname, str):
        cleaned = "".join(c for c in ifname if c.isprintable() and not c.isspace())
        if cleaned:
            return cleaned[:64]
    return f"if{interface_id}"


def source_text(raw: bytes, path: str) -> str:
    """A sender's 4- or 16-byte address as the daemon's trace spells it (see the module's docstring)."""
    if len(raw) == 4:
        return ".".join(str(b) for b in raw)
    address = ipaddress.IPv6Address(raw)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if needs_scope(address) and path != DEFAULT_PATH:
        return f"{address}%{path}"
    return str(address)


def _udp_to_port(frame: bytes, linktype: int, port: int) -> tuple[bytes, bytes] | None:
    """(source address, UDP payload) of an IPv4 or IPv6 UDP datagram to ``port``, else None."""
    version: int | None  # the IP version the link header announces; None: the IP header says
    if linktype == LINKTYPE_ETHERNET:
        offset = 12
        for _ in range(3):
            if len(frame) < offset + 2:
                return None
            ethertype = _U16.unpack_from(frame, offset)[0]
            if ethertype in _ETH_VLAN:
                offset += 4
                continue
            break
        version = _ETHERTYPE_VERSION.get(ethertype)
        offset += 2
    elif linktype == LINKTYPE_LINUX_SLL:
        version = _ETHERTYPE_VERSION.get(_U16.unpack_from(frame, 14)[0]) if len(frame) >= 16 else None
        offset = 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        version = _ETHERTYPE_VERSION.get(_U16.unpack_from(frame, 0)[0]) if len(frame) >= 20 else None
        offset = 20
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        version = _LOOPBACK_FAMILY.get(frame[:4])
        offset = 4
    else:
        version = {LINKTYPE_IPV4: 4, LINKTYPE_IPV6: 6}.get(linktype)
        offset = 0
        if version is None and len(frame) > 0:
            version = frame[0] >> 4  # raw IP: the header's own version field
    if version == 4:
        return _ipv4_udp(frame, offset, port)
    if version == 6:
        return _ipv6_udp(frame, offset, port)
    return None


def _ipv4_udp(frame: bytes, offset: int, port: int) -> tuple[bytes, bytes] | None:
    if len(frame) < offset + 20:
        return None
    first = frame[offset]
    if first >> 4 != 4 or frame[offset + 9] != _UDP:
        return None
    ihl = (first & 0x0F) * 4
    if ihl < 20:
        raise _BadFrame(f"IPv4 header length {ihl} is below 20")
    if _U16.unpack_from(frame, offset + 6)[0] & 0x3FFF:
        return None  # a fragment: heartbeats are never fragmented
    payload = _udp_payload(frame, offset + ihl, port)
    return None if payload is None else (frame[offset + 12 : offset + 16], payload)


def _ipv6_udp(frame: bytes, offset: int, port: int) -> tuple[bytes, bytes] | None:
    if len(frame) < offset + 40 or frame[offset] >> 4 != 6:
        return None
    header = frame[offset + 6]
    at = offset + 40
    for _ in range(_IPV6_MAX_EXTENSIONS):
        if header == _UDP:
            payload = _udp_payload(frame, at, port)
            return None if payload is None else (frame[offset + 8 : offset + 24], payload)
        if header not in _IPV6_SKIPPABLE:
            return None  # a fragment (44), ICMPv6, TCP, ...: not a heartbeat
        if len(frame) < at + 2:
            raise _BadFrame("frame cut short inside an IPv6 extension header (snap length too small?)")
        header, at = frame[at], at + (frame[at + 1] + 1) * 8
    return None


def _udp_payload(frame: bytes, udp: int, port: int) -> bytes | None:
    """The payload of the UDP datagram at ``udp`` if it goes to ``port``, else None."""
    if len(frame) < udp + 8:
        raise _BadFrame("frame cut short inside the UDP header (snap length too small?)")
    if _U16.unpack_from(frame, udp + 2)[0] != port:
        return None
    length = _U16.unpack_from(frame, udp + 4)[0]
    if length < 8:
        raise _BadFrame(f"UDP length {length} is below 8")
    if len(frame) < udp + length:
        raise _BadFrame(f"UDP datagram of {length} bytes cut short at {len(frame) - udp} (snap length too small?)")
    return frame[udp + 8 : udp + length]


# --- who is the master? ------------------------------------------------------------


def heartbeat_senders(datagrams: list[Arrival], *, key: bytes | None, legacy_message: bytes) -> Counter[str]:
    """Sources of datagrams that look like the master's heartbeats, with counts.

    With a key: authenticated frames with the master role. Without: datagrams
    equal to the legacy message. Raises ValueError explaining what is missing
    when the capture holds authenticated heartbeats and no key was given.
    """
    senders: Counter[str] = Counter()
    if key is not None:
        for _, _, source, data, _ in datagrams:
            try:
                if wire.decode(data, key).role == wire.ROLE_MASTER:
                    senders[source] += 1
            except wire.WireError:
                continue
        if not senders and datagrams:
            shaped = sum(1 for d in datagrams if _looks_authenticated(d[3]))
            if shaped:
                raise ValueError(
                    f"none of the {shaped} authenticated heartbeats verifies with this key: wrong --key-file?"
                )
            raise ValueError("no authenticated master heartbeats in the capture (legacy heartbeats need no --key-file)")
        return senders
    for _, _, source, data, _ in datagrams:
        if data == legacy_message:
            senders[source] += 1
    if not senders:
        shaped = sum(1 for d in datagrams if _looks_authenticated(d[3]))
        if shaped:
            raise ValueError(
                f"the capture holds {shaped} authenticated heartbeats ({wire.DATAGRAM_LENGTH}-byte "
                f"{wire.MAGIC.decode()} frames): replaying them needs the shared key, --key-file FILE"
            )
        if datagrams:
            raise ValueError(
                f"none of the {len(datagrams)} datagrams on the heartbeat port is the legacy message "
                f"{legacy_message!r}: is --message or --port different?"
            )
    return senders


def _looks_authenticated(data: bytes) -> bool:
    return len(data) == wire.DATAGRAM_LENGTH and data[:4] == wire.MAGIC
