"""The few rtnetlink requests the address manager needs, spoken directly on a netlink socket.

Why not pyroute2 here: a failback is timed from the backup's address delete
to the master's address add, and pyroute2's synchronous ``IPRoute`` costs
milliseconds per change (its asyncio core, a worker-thread hop, parsing
every attribute of every message). Four requests need nothing of that:

- ``link(name)``: ``RTM_GETLINK`` by name (index, flags, MAC);
- ``links()``: ``RTM_GETLINK`` dump (name -> index);
- ``addresses()``: ``RTM_GETADDR`` dump (index, address, prefix length), IPv4 only;
- ``add_address`` / ``delete_address``: ``RTM_NEWADDR`` (``NLM_F_CREATE|NLM_F_EXCL``)
  and ``RTM_DELADDR`` with ``IFA_LOCAL`` = ``IFA_ADDRESS``, which is what
  ``ip addr add ADDR/LEN dev IF`` sends (no broadcast address, scope global).

The kernel carries out such a request inside the ``send`` call and has its
answer queued before ``send`` returns (a dump is produced inside ``recv``), so
an exchange takes tens of microseconds and its calls wait only for the
kernel's own work, which may include its RTNL lock while another process
reconfigures the network. That is why the address manager may call it from
the Trio thread itself; the socket timeout bounds every call anyway.

Resource handling: :class:`RouteSocket` is a context manager owning one
socket; leaving it closes the socket.

Error handling: a request the kernel refuses raises pyroute2's
``NetlinkError`` with the kernel's errno as ``code`` (the exception the rest
of the package already handles); a malformed or missing answer raises
``OSError``.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import socket
import struct
from dataclasses import dataclass
from typing import Self

from pyroute2.netlink.exceptions import NetlinkError

# linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFA_ADDRESS = 1
IFA_LOCAL = 2

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, port id
_ERROR = struct.Struct("=i")  # nlmsgerr.error (negative errno; 0 = ack)
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_IFNAMSIZ = 16
_RECEIVE_SIZE = 1 << 16
DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Link:
    index: int
    flags: int
    mac: str


@dataclass(frozen=True)
class InterfaceAddress:
    index: int
    address: ipaddress.IPv4Address
    prefixlen: int


def _align(length: int) -> int:
    return (length + 3) & ~3


def _attribute(kind: int, value: bytes) -> bytes:
    length = _ATTR.size + len(value)
    return _ATTR.pack(length, kind) + value + b"\0" * (_align(length) - length)


def _attributes(data: bytes, offset: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size or offset + length > len(data):
            break
        found.setdefault(kind & 0x3FFF, data[offset + _ATTR.size : offset + length])  # drop NLA_F_* bits
        offset += _align(length)
    return found


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
        payload = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attribute(IFLA_IFNAME, encoded + b"\0")
        try:
            messages = self._exchange(RTM_GETLINK, NLM_F_REQUEST, payload)
        except NetlinkError as error:
            if error.code == errno.ENODEV:
                return None
            raise
        for kind, body in messages:
            if kind == RTM_NEWLINK and len(body) >= _IFINFO.size:
                _family, _type, index, flags, _change = _IFINFO.unpack_from(body)
                mac = _attributes(body, _IFINFO.size).get(IFLA_ADDRESS, b"")
                return Link(index, flags, mac.hex(":"))
        raise OSError(errno.EPROTO, f"no link in the kernel's answer for {name!r}")

    def links(self) -> dict[str, int]:
        """Every interface's name and index."""
        found = {}
        for kind, body in self._exchange(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, _IFINFO.pack(0, 0, 0, 0, 0)):
            if kind == RTM_NEWLINK and len(body) >= _IFINFO.size:
                name = _attributes(body, _IFINFO.size).get(IFLA_IFNAME)
                if name is not None:
                    found[name.rstrip(b"\0").decode(errors="replace")] = _IFINFO.unpack_from(body)[2]
        return found

    def addresses(self) -> list[InterfaceAddress]:
        """Every IPv4 address configured on this host's interfaces."""
        found = []
        payload = _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)
        for kind, body in self._exchange(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, payload):
            if kind != RTM_NEWADDR or len(body) < _IFADDR.size:
                continue
            family, prefixlen, _flags, _scope, index = _IFADDR.unpack_from(body)
            attributes = _attributes(body, _IFADDR.size)
            local = attributes.get(IFA_LOCAL) or attributes.get(IFA_ADDRESS)
            if family == socket.AF_INET and local is not None and len(local) == 4:
                found.append(InterfaceAddress(index, ipaddress.IPv4Address(local), prefixlen))
        return found

    def add_address(self, index: int, address: ipaddress.IPv4Address, prefixlen: int) -> None:
        """Add ``address/prefixlen`` on interface ``index``; ``NetlinkError`` EEXIST if it is there."""
        self._exchange(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                       _address_payload(index, address, prefixlen))

    def delete_address(self, index: int, address: ipaddress.IPv4Address, prefixlen: int) -> None:
        """Remove ``address/prefixlen`` from interface ``index``; ``NetlinkError`` EADDRNOTAVAIL if gone."""
        self._exchange(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, _address_payload(index, address, prefixlen))

    # --- the exchange ----------------------------------------------------------

    def _exchange(self, kind: int, flags: int, payload: bytes) -> list[tuple[int, bytes]]:
        """Send one request; return the answer's (type, body) messages up to its end.

        The end is the ack (or error) of a request with ``NLM_F_ACK``, the
        ``NLMSG_DONE`` of a dump, or the one message of a plain ``GET``.
        """
        sequence = next(self._sequence)
        self._sock.send(_HEADER.pack(_HEADER.size + len(payload), kind, flags, sequence, 0) + payload)
        answers: list[tuple[int, bytes]] = []
        while True:
            data = self._sock.recv(_RECEIVE_SIZE)
            if not data:
                raise OSError(errno.EPROTO, "empty netlink answer")
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, answer_kind, answer_flags, answer_sequence, _port = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size or offset + length > len(data):
                    raise OSError(errno.EPROTO, "truncated netlink message")
                body = data[offset + _HEADER.size : offset + length]
                offset += _align(length)
                if answer_sequence != sequence:
                    continue  # an answer to an earlier request that timed out
                if answer_kind == NLMSG_ERROR:
                    code = -_ERROR.unpack_from(body)[0]
                    if code:
                        raise NetlinkError(code)
                    return answers
                if answer_kind == NLMSG_DONE:
                    return answers
                answers.append((answer_kind, body))
                if not answer_flags & NLM_F_MULTI and not flags & NLM_F_ACK:
                    return answers


def _address_payload(index: int, address: ipaddress.IPv4Address, prefixlen: int) -> bytes:
    packed = address.packed
    return (
        _IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index)
        + _attribute(IFA_LOCAL, packed)
        + _attribute(IFA_ADDRESS, packed)
    )
