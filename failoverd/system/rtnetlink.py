"""The few rtnetlink requests the address manager needs, on one plain netlink socket.

The messages are built and parsed here with :mod:`struct` (``linux/netlink.h``,
``linux/rtnetlink.h``, ``linux/if_addr.h``, ``linux/if_link.h``). Why not
pyroute2: the daemons used only its message classes, but importing any part
of pyroute2 runs its package ``__init__``, which loads ``IPRoute``, NDB,
asyncio, sqlite3 and multiprocessing: about 10 MiB of every daemon's 40 MiB
and 0.2 - 0.4 s of its start-up (docs/benchmarks.md). The requests below
are small fixed structures with a few attributes. Why not pyroute2's
``IPRoute`` either: a failback is timed from the backup's address delete to
the master's address add, and ``IPRoute`` must be opened per call inside a
worker thread here (its sockets are per thread, and its namespace support
forks a helper process), which costs milliseconds per change under load. One
plain ``NETLINK_ROUTE`` socket does an exchange in tens of microseconds:

- ``link(name)``: ``RTM_GETLINK`` by name (index, flags, MAC);
- ``links()``: ``RTM_GETLINK`` dump (name -> index); ``link_details()``: the
  same dump, name -> index, flags and MAC;
- ``addresses(family)``: ``RTM_GETADDR`` dump (index, address, prefix length,
  flags), both families unless told otherwise (``AF_INET`` or ``AF_INET6``);
- ``link_states()``: the same dump, name -> :class:`LinkState` (up or down,
  as the link watch counts it); :func:`link_events` parses the link messages
  of one datagram (the link watch's multicast group, ``RTMGRP_LINK``, or a dump);
- ``add_address`` / ``delete_address``: ``RTM_NEWADDR`` (``NLM_F_CREATE|NLM_F_EXCL``)
  and ``RTM_DELADDR`` with ``IFA_LOCAL`` = ``IFA_ADDRESS``, which is what
  ``ip addr add ADDR/LEN dev IF`` sends; the family follows the address, and an
  IPv6 address is added with ``IFA_F_NODAD`` unless told otherwise (a failover
  address must answer at once, not after duplicate address detection, and the
  backup has released it before the master adds it).

The kernel carries out such a request inside the ``send`` call and has its
answer queued before ``send`` returns, so the calls wait only for the
kernel's own work (which may include its RTNL lock while another process
reconfigures the network). That is why the address manager may call it from
the Trio thread itself; the socket timeout bounds every call anyway.

Resource handling: :class:`RouteSocket` is a context manager owning one
socket; leaving it closes the socket.

Error handling: a request the kernel refuses raises :class:`NetlinkError`
(an ``OSError``) with the kernel's errno as ``code``; a missing or malformed
answer raises ``OSError`` (``EPROTO``), a timed-out one ``TimeoutError``.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# linux/netlink.h
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
# linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
# linux/if_link.h, linux/if_addr.h
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_OPERSTATE = 16
RTMGRP_LINK = 0x1  # the multicast group of RTM_NEWLINK / RTM_DELLINK
# linux/if.h: IFF_UP is the administrative state, IFF_LOWER_UP the carrier.
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
IF_OPER_UNKNOWN = 0  # what drivers without operstate support (dummy, loopback) say
IF_OPER_UP = 6
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40

_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: length, type, flags, sequence, port id
_IFINFO = struct.Struct("=BxHiII")  # struct ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # struct ifaddrmsg: family, prefixlen, flags, scope, index
_ATTR = struct.Struct("=HH")  # struct rtattr: length, type
_ERROR = struct.Struct("=i")  # struct nlmsgerr begins with the (negative) errno

_IFNAMSIZ = 16
_RECEIVE_SIZE = 1 << 16
DEFAULT_TIMEOUT = 5.0
_ADDRESS_LENGTH = {socket.AF_INET: 4, socket.AF_INET6: 16}


class NetlinkError(OSError):
    """The kernel refused a request; ``code`` (= ``errno``) is its errno."""

    def __init__(self, code: int) -> None:
        super().__init__(code, os.strerror(code))

    @property
    def code(self) -> int:
        assert self.errno is not None  # always given: see __init__
        return self.errno


@dataclass(frozen=True)
class Link:
    index: int
    flags: int
    mac: str


@dataclass(frozen=True)
class LinkState:
    """One interface's link as the link watch counts it (``up``: admin-up and carrier).

    ``present`` False: the interface was removed (``RTM_DELLINK``); it counts as down.
    """

    name: str
    index: int
    up: bool
    present: bool = True


def link_is_up(flags: int, operstate: int | None) -> bool:
    """Admin-up (``IFF_UP``), with carrier (``IFF_LOWER_UP``), and an operstate that is up (or unknown)."""
    carrier = bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
    return carrier and operstate in (None, IF_OPER_UP, IF_OPER_UNKNOWN)


def link_events(data: bytes) -> list[LinkState]:
    """The links described by the ``RTM_NEWLINK`` / ``RTM_DELLINK`` messages of one datagram.

    Other messages are skipped, and so is a link message too short for its
    fixed part or without a name. Error handling: a datagram whose framing is
    malformed raises ``OSError`` (``EPROTO``), as an answer would.
    """
    found = []
    for kind, _flags, _sequence, payload in _messages(data):
        if kind not in (RTM_NEWLINK, RTM_DELLINK) or len(payload) < _IFINFO.size:
            continue
        _family, _type, index, flags, _change = _IFINFO.unpack_from(payload)
        attributes = _attributes(payload, _IFINFO.size)
        name = attributes.get(IFLA_IFNAME)
        if not name:
            continue
        operstate = attributes.get(IFLA_OPERSTATE)
        state = operstate[0] if operstate else None
        present = kind == RTM_NEWLINK
        found.append(LinkState(name.split(b"\0", 1)[0].decode(errors="replace"), index,
                               present and link_is_up(flags, state), present))
    return found


@dataclass(frozen=True)
class InterfaceAddress:
    index: int
    address: IPAddress
    prefixlen: int
    flags: int = 0
    """``IFA_F_*``: ``IFA_F_TENTATIVE``, ``IFA_F_DADFAILED``, ``IFA_F_NODAD``..."""


class RouteSocket:
    """One ``NETLINK_ROUTE`` socket in the namespace it was created in (see :meth:`open`)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._sequence = itertools.count(1)

    @classmethod
    def open(cls, timeout: float = DEFAULT_TIMEOUT) -> RouteSocket:
        """A socket in the calling thread's network namespace."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sock.settimeout(timeout)
            sock.bind((0, 0))
        except OSError:
            sock.close()
            raise
        return cls(sock)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- requests ------------------------------------------------------------

    def link(self, name: str) -> Link | None:
        """The interface called ``name``, or None if there is none."""
        encoded = name.encode()
        if not encoded or len(encoded) >= _IFNAMSIZ or b"\0" in encoded:
            return None  # no interface can have that name (the kernel would say EINVAL)
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attribute(IFLA_IFNAME, encoded + b"\0")
        try:
            answers = self._exchange(RTM_GETLINK, NLM_F_REQUEST, body)
        except NetlinkError as error:
            if error.code == errno.ENODEV:
                return None
            raise
        for kind, payload in answers:
            if kind == RTM_NEWLINK and len(payload) >= _IFINFO.size:
                _family, _type, index, flags, _change = _IFINFO.unpack_from(payload)
                return Link(index, flags, _mac(_attributes(payload, _IFINFO.size)))
        raise OSError(errno.EPROTO, f"no link in the kernel's answer for {name!r}")

    def links(self) -> dict[str, int]:
        """Every interface's name and index."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        found = {}
        for kind, payload in self._exchange(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, body):
            if kind != RTM_NEWLINK or len(payload) < _IFINFO.size:
                continue
            name = _attributes(payload, _IFINFO.size).get(IFLA_IFNAME)
            if name is not None:
                found[name.split(b"\0", 1)[0].decode(errors="replace")] = _IFINFO.unpack_from(payload)[2]
        return found

    def link_details(self) -> dict[str, Link]:
        """Every interface's name, with its index, flags and MAC, from one dump."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        found = {}
        for kind, payload in self._exchange(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, body):
            if kind != RTM_NEWLINK or len(payload) < _IFINFO.size:
                continue
            attributes = _attributes(payload, _IFINFO.size)
            name = attributes.get(IFLA_IFNAME)
            if name is not None:
                _family, _type, index, flags, _change = _IFINFO.unpack_from(payload)
                found[name.split(b"\0", 1)[0].decode(errors="replace")] = Link(index, flags, _mac(attributes))
        return found

    def link_states(self) -> dict[str, LinkState]:
        """Every interface's link, up or down as :func:`link_is_up` counts it, from one dump."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        found = {}
        for kind, payload in self._exchange(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, body):
            # Each answer is one message: frame it again for the parser the multicast group uses.
            for state in link_events(_HEADER.pack(_HEADER.size + len(payload), kind, 0, 0, 0) + payload):
                found[state.name] = state
        return found

    def addresses(self, family: int = socket.AF_UNSPEC) -> list[InterfaceAddress]:
        """Every address of ``family`` (``AF_INET``, ``AF_INET6``, ``AF_UNSPEC``: both) on this host's interfaces."""
        if family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNSPEC):
            raise ValueError(f"address family {family!r} is not AF_INET, AF_INET6 or AF_UNSPEC")
        body = _IFADDR.pack(family, 0, 0, 0, 0)
        found = []
        for kind, payload in self._exchange(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, body):
            if kind != RTM_NEWADDR or len(payload) < _IFADDR.size:
                continue
            answer_family, prefixlen, header_flags, _scope, index = _IFADDR.unpack_from(payload)
            if answer_family not in _ADDRESS_LENGTH or family not in (socket.AF_UNSPEC, answer_family):
                continue
            attributes = _attributes(payload, _IFADDR.size)
            # IFA_LOCAL is the address itself; on a point-to-point link
            # IFA_ADDRESS is the peer's. IPv6 sends only IFA_ADDRESS.
            local = attributes.get(IFA_LOCAL) or attributes.get(IFA_ADDRESS)
            # IFA_FLAGS (32 bits) supersedes the header's 8 when the kernel sends it.
            extended = attributes.get(IFA_FLAGS)
            flags = struct.unpack("=I", extended)[0] if extended is not None and len(extended) == 4 else header_flags
            if local is not None and len(local) == _ADDRESS_LENGTH[answer_family]:
                found.append(InterfaceAddress(index, ipaddress.ip_address(local), prefixlen, flags))
        return found

    def add_address(self, index: int, address: IPAddress, prefixlen: int, *, nodad: bool | None = None) -> None:
        """Add ``address/prefixlen`` on interface ``index``; :class:`NetlinkError` EEXIST if it is there.

        ``nodad`` (default: for IPv6 addresses) skips duplicate address detection.
        """
        nodad = address.version == 6 if nodad is None else nodad
        self._exchange(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                       _address_body(index, address, prefixlen, IFA_F_NODAD if nodad else 0))

    def delete_address(self, index: int, address: IPAddress, prefixlen: int) -> None:
        """Remove ``address/prefixlen`` from interface ``index``; :class:`NetlinkError` EADDRNOTAVAIL if gone."""
        self._exchange(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, _address_body(index, address, prefixlen, 0))

    # --- the exchange ----------------------------------------------------------

    def _exchange(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one request; return the answer's messages (type, payload) up to its end.

        The end is the ack (or error) of a request with ``NLM_F_ACK``, the
        ``NLMSG_DONE`` of a dump, or the one message of a plain ``GET``.
        """
        sequence = next(self._sequence)
        self._sock.send(_HEADER.pack(_HEADER.size + len(body), kind, flags, sequence, 0) + body)
        answers: list[tuple[int, bytes]] = []
        while True:
            data = self._sock.recv(_RECEIVE_SIZE)
            if not data:
                raise OSError(errno.EPROTO, "empty netlink answer")
            for answer_kind, answer_flags, answer_sequence, payload in _messages(data):
                if answer_sequence != sequence:
                    continue  # an answer to an earlier request that timed out
                if answer_kind == NLMSG_ERROR:
                    if len(payload) < _ERROR.size:
                        raise OSError(errno.EPROTO, "truncated netlink error message")
                    code = -_ERROR.unpack_from(payload)[0]
                    if code:
                        raise NetlinkError(code)
                    return answers  # an ack
                if answer_kind == NLMSG_DONE:
                    return answers
                answers.append((answer_kind, payload))
                if not answer_flags & NLM_F_MULTI and not flags & NLM_F_ACK:
                    return answers


def _align(length: int) -> int:
    return (length + 3) & ~3


def _attribute(kind: int, value: bytes) -> bytes:
    length = _ATTR.size + len(value)
    return _ATTR.pack(length, kind) + value + b"\0" * (_align(length) - length)


def _attributes(payload: bytes, offset: int) -> dict[int, bytes]:
    """The attributes after a message's fixed part, by type (the first of each type)."""
    found: dict[int, bytes] = {}
    end = len(payload)
    while offset + _ATTR.size <= end:
        length, kind = _ATTR.unpack_from(payload, offset)
        if length < _ATTR.size or offset + length > end:
            break  # malformed: keep what came before it
        found.setdefault(kind & 0x3FFF, payload[offset + _ATTR.size:offset + length])  # without NLA_F_NESTED etc.
        offset += _align(length)
    return found


def _mac(attributes: dict[int, bytes]) -> str:
    return ":".join(f"{octet:02x}" for octet in attributes.get(IFLA_ADDRESS, b""))


def _messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """The netlink messages of one datagram: (type, flags, sequence, payload)."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, flags, sequence, _port = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            raise OSError(errno.EPROTO, f"malformed netlink message (length {length} at offset {offset})")
        yield kind, flags, sequence, data[offset + _HEADER.size:offset + length]
        offset += _align(length)


def _address_body(index: int, address: IPAddress, prefixlen: int, flags: int) -> bytes:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    packed = address.packed
    return (_IFADDR.pack(family, prefixlen, flags, 0, index)
            + _attribute(IFA_LOCAL, packed) + _attribute(IFA_ADDRESS, packed))
