"""The few rtnetlink requests the address manager needs, on one long-lived socket.

pyroute2 builds and parses every message (its ``ifinfmsg``/``ifaddrmsg``
classes and its rtnetlink marshal); this module only owns the socket. Why
not pyroute2's ``IPRoute``: a failback is timed from the backup's address
delete to the master's address add, and ``IPRoute`` must be opened per call
inside a worker thread here (its sockets are per thread, and its namespace
support forks a helper process), which costs milliseconds per change under
load. One plain ``NETLINK_ROUTE`` socket, opened once in the right namespace,
does an exchange in tens of microseconds:

- ``link(name)``: ``RTM_GETLINK`` by name (index, flags, MAC);
- ``links()``: ``RTM_GETLINK`` dump (name -> index);
- ``addresses()``: ``RTM_GETADDR`` dump (index, address, prefix length, flags),
  IPv4 and IPv6;
- ``add_address`` / ``delete_address``: ``RTM_NEWADDR`` (``NLM_F_CREATE|NLM_F_EXCL``)
  and ``RTM_DELADDR`` with ``IFA_LOCAL`` = ``IFA_ADDRESS``, which is what
  ``ip addr add ADDR/LEN dev IF`` sends; ``nodad`` adds ``IFA_F_NODAD``, as
  ``ip addr add ... nodad`` does (an IPv6 address usable at once, never
  ``tentative``, never ``dadfailed``).

The kernel carries out such a request inside the ``send`` call and has its
answer queued before ``send`` returns, so the calls wait only for the
kernel's own work (which may include its RTNL lock while another process
reconfigures the network). That is why the address manager may call it from
the Trio thread itself; the socket timeout bounds every call anyway.

Resource handling: :class:`RouteSocket` is a context manager owning one
socket; leaving it closes the socket.

Error handling: a request the kernel refuses raises pyroute2's
``NetlinkError`` with the kernel's errno as ``code``; a missing answer
raises ``OSError``.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import socket
from dataclasses import dataclass
from typing import Any, Self

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
)
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

_IFNAMSIZ = 16
# linux/if_addr.h
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
_RECEIVE_SIZE = 1 << 16
DEFAULT_TIMEOUT = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_FAMILIES = {socket.AF_INET: ipaddress.IPv4Address, socket.AF_INET6: ipaddress.IPv6Address}


@dataclass(frozen=True)
class Link:
    index: int
    flags: int
    mac: str


@dataclass(frozen=True)
class InterfaceAddress:
    index: int
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    prefixlen: int
    flags: int = 0
    """``IFA_F_*`` (``IFA_FLAGS`` where the kernel sends it: all 32 bits)."""


class RouteSocket:
    """One ``NETLINK_ROUTE`` socket in the namespace it was created in (see :meth:`open`)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._sequence = itertools.count(1)
        self._marshal = MarshalRtnl()

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
        request = ifinfmsg()
        request["family"] = socket.AF_UNSPEC
        request["attrs"] = [("IFLA_IFNAME", name)]
        try:
            answers = self._exchange(request, RTM_GETLINK, NLM_F_REQUEST)
        except NetlinkError as error:
            if error.code == errno.ENODEV:
                return None
            raise
        for answer in answers:
            if answer["header"]["type"] == RTM_NEWLINK:
                return Link(answer["index"], answer["flags"], answer.get_attr("IFLA_ADDRESS") or "")
        raise OSError(errno.EPROTO, f"no link in the kernel's answer for {name!r}")

    def links(self) -> dict[str, int]:
        """Every interface's name and index."""
        request = ifinfmsg()
        request["family"] = socket.AF_UNSPEC
        return {
            answer.get_attr("IFLA_IFNAME"): answer["index"]
            for answer in self._exchange(request, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP)
            if answer["header"]["type"] == RTM_NEWLINK and answer.get_attr("IFLA_IFNAME") is not None
        }

    def addresses(self) -> list[InterfaceAddress]:
        """Every IPv4 and IPv6 address configured on this host's interfaces."""
        request = ifaddrmsg()
        request["family"] = socket.AF_UNSPEC
        found = []
        for answer in self._exchange(request, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP):
            family = answer["family"]
            if answer["header"]["type"] != RTM_NEWADDR or family not in _FAMILIES:
                continue
            local = answer.get_attr("IFA_LOCAL") or answer.get_attr("IFA_ADDRESS")
            if local is not None:
                flags = answer.get_attr("IFA_FLAGS")
                found.append(InterfaceAddress(
                    answer["index"], _FAMILIES[family](local), answer["prefixlen"],
                    answer["flags"] if flags is None else flags,
                ))
        return found

    def add_address(self, index: int, address: IPAddress, prefixlen: int, *, nodad: bool = False) -> None:
        """Add ``address/prefixlen`` on interface ``index``; ``NetlinkError`` EEXIST if it is there.

        ``nodad``: without Duplicate Address Detection (IPv6; IPv4 has none to skip).
        """
        self._exchange(_address(index, address, prefixlen, IFA_F_NODAD if nodad else 0), RTM_NEWADDR,
                       NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)

    def delete_address(self, index: int, address: IPAddress, prefixlen: int) -> None:
        """Remove ``address/prefixlen`` from interface ``index``; ``NetlinkError`` EADDRNOTAVAIL if gone."""
        self._exchange(_address(index, address, prefixlen), RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK)

    # --- the exchange ----------------------------------------------------------

    def _exchange(self, request: Any, kind: int, flags: int) -> list[Any]:
        """Send one request; return the answer's messages up to its end.

        The end is the ack (or error) of a request with ``NLM_F_ACK``, the
        ``NLMSG_DONE`` of a dump, or the one message of a plain ``GET``.
        """
        sequence = next(self._sequence)
        header = request["header"]
        header["type"], header["flags"], header["sequence_number"] = kind, flags, sequence
        request.encode()
        self._sock.send(request.data)
        answers: list[Any] = []
        while True:
            data = self._sock.recv(_RECEIVE_SIZE)
            if not data:
                raise OSError(errno.EPROTO, "empty netlink answer")
            for answer in self._marshal.parse(data):
                header = answer["header"]
                if header["sequence_number"] != sequence:
                    continue  # an answer to an earlier request that timed out
                if header["type"] == NLMSG_ERROR:
                    if header["error"] is not None:
                        raise header["error"]
                    return answers
                if header["type"] == NLMSG_DONE:
                    return answers
                answers.append(answer)
                if not header["flags"] & NLM_F_MULTI and not flags & NLM_F_ACK:
                    return answers


def _address(index: int, address: IPAddress, prefixlen: int, flags: int = 0) -> Any:
    request = ifaddrmsg()
    request["family"] = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    request["prefixlen"] = prefixlen
    request["index"] = index
    request["attrs"] = [("IFA_LOCAL", str(address)), ("IFA_ADDRESS", str(address))]
    if flags:
        request["flags"] = flags & 0xFF
        request["attrs"].append(("IFA_FLAGS", flags))
    return request
