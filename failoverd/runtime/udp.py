"""The heartbeat socket: UDP on the configured port, telling which interface each datagram came in on.

The backup keeps one health record per *path* (the interface a heartbeat
arrived on), so a dead private link is noticed while the public one still
delivers. One socket bound to the wildcard address receives on every
interface; ``IP_PKTINFO`` gives the arrival interface of each datagram, which
is cheaper and more robust than one socket per interface (interfaces may come
and go while the daemon runs).

Receiving waits for the socket to be readable and then reads it once, with
the plain socket call: Trio's socket wrapper tries the read first (an
``EAGAIN`` and its exception on an idle socket), and yields once more after
the read, which at one frame per interval was a sizeable part of an idle
daemon's CPU. The arrival interface's name comes from one ``SIOCGIFNAME``
ioctl on the heartbeat socket itself (``socket.if_indextoname`` opens and
closes a socket of its own for every frame); served by the frame thread
(:meth:`HeartbeatSocket.watch_interface_names`), the names are kept and
forgotten whenever the kernel reports a change of any link (a rename, a
removal, a carrier change: one ``NETLINK_ROUTE`` socket, opened where the
heartbeat socket is bound and so in its namespace, in the link group while the
thread runs, one more descriptor it waits on), so an idle daemon makes no
ioctl per frame and a renamed interface is never reported by its old name.

IPv6: a configuration with an IPv6 peer gets one dual-stack ``AF_INET6``
socket instead (``IPV6_V6ONLY`` off), so a pair with an IPv4 private link and
an IPv6 public one still needs one socket and one port. IPv4 peers are
reached through their IPv4-mapped form (``::ffff:10.0.0.2``) and heard with
``IP_PKTINFO`` as before; IPv6 ones with ``IPV6_PKTINFO``. Every source is
reported in the form the configuration spells it: dotted decimal for IPv4
(the mapped prefix dropped), RFC 5952 text for IPv6, with ``%interface`` for
a link-local sender, so the core compares plain strings. An IPv4-only
configuration keeps the ``AF_INET`` socket, and works on a host whose IPv6
is switched off.

Sending never waits: a heartbeat that the kernel cannot queue right now is
stale by the time it could be, so it is dropped and counted. A failing target
(link down, no route) is logged once when it starts failing and once when it
works again, not at every heartbeat.

Resource handling: :class:`HeartbeatSocket` is a context manager owning one
socket; leaving it closes the socket.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import socket
import struct
from collections.abc import Iterable
from typing import NamedTuple

import trio

log = logging.getLogger(__name__)

# linux/in.h, linux/in6.h; the socket module does not export them all.
IP_PKTINFO = 8
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
_PKTINFO = struct.Struct("=i4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
_PKTINFO6 = struct.Struct("=16si")  # struct in6_pktinfo: addr, ifindex
_MAX_DATAGRAM = 2048  # far above any heartbeat; longer ones arrive truncated and are rejected by the core
_ANCILLARY_SIZE = socket.CMSG_SPACE(_PKTINFO.size) + socket.CMSG_SPACE(_PKTINFO6.size)
_MAPPED = "::ffff:"
_CHANGE_BUFFER = 1 << 16
_MAX_CHANGE_READS = 64  # a burst of link changes is read in one go; what is left wakes the thread again
# linux/sockios.h, linux/if.h: SIOCGIFNAME fills ifr_name from ifr_ifindex in a struct ifreq (40 bytes).
SIOCGIFNAME = 0x8910
_IFREQ_INDEX = struct.Struct("=16si20x")
_IFNAMSIZ = 16
# linux/rtnetlink.h, linux/netlink.h: the link group (RTM_NEWLINK / RTM_DELLINK), joined and left by number.
_RTNLGRP_LINK = 1
_SOL_NETLINK = 270
_NETLINK_ADD_MEMBERSHIP = 1
_NETLINK_DROP_MEMBERSHIP = 2


class Datagram(NamedTuple):
    """One received datagram (a tuple: made once per frame, and a frozen dataclass costs three setattrs)."""

    data: bytes
    source: str
    """The sender's address: ``10.0.0.1``, ``2001:db8::1``, ``fe80::1%eth1``."""
    path: str
    """The name of the interface it arrived on."""


class HeartbeatSocket:
    """A UDP socket on ``port`` (all local addresses), broadcast-capable; dual-stack if bound with ``ipv6``.

    Error handling: :meth:`bind` raises ``OSError`` if the port is taken or
    cannot be bound; :meth:`send_nowait` never raises for network errors.
    """

    def __init__(self, sock: socket.socket, port: int, link_changes: socket.socket | None = None) -> None:
        self.port = port
        self.family = sock.family
        self._raw = sock
        self._sock = trio.socket.from_stdlib_socket(sock)
        self._failing: dict[str, str] = {}
        self._scopes: dict[str, int] = {}
        # Interface names by index while a link-change socket says when to
        # forget them (watch_interface_names); None: looked up per datagram.
        self._names: dict[int, str] | None = None
        self._link_changes = link_changes
        self.sent = 0
        self.dropped = 0
        # By target, for the metrics: a dict update per datagram, nothing more.
        self.sent_to: dict[str, int] = {}
        self.dropped_to: dict[str, int] = {}

    @classmethod
    def bind(cls, port: int, address: str | None = None, *, ipv6: bool = False) -> HeartbeatSocket:
        """Bind ``port`` on ``address`` (default: every local address; with ``ipv6``, of both families)."""
        family = socket.AF_INET6 if ipv6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            # No SO_REUSEADDR: UDP has no TIME_WAIT to skip, and with it a second
            # program could bind the same port and silently take half the heartbeats.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            if ipv6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            sock.bind((address or ("::" if ipv6 else "0.0.0.0"), port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return cls(sock, sock.getsockname()[1], _open_link_changes())

    async def receive(self) -> Datagram:
        while True:
            # A checkpoint every time (also under a flood of frames), and
            # ClosedResourceError if the socket is closed meanwhile.
            await trio.lowlevel.wait_readable(self._raw)
            datagram = self.receive_nowait()
            if datagram is not None:
                return datagram
            # Readable, but another reader (or a bad checksum) took it first.

    def receive_nowait(self) -> Datagram | None:
        """The next datagram queued, or None if there is none now (the frame thread's read)."""
        try:
            data, ancillary, _flags, source = self._raw.recvmsg(_MAX_DATAGRAM, _ANCILLARY_SIZE)
        except BlockingIOError:
            return None
        return Datagram(data, self._source_text(source), self._arrival_interface(ancillary))

    def fileno(self) -> int:
        return self._raw.fileno()

    def watch_interface_names(self) -> int | None:
        """Keep interface names from now on; the descriptor to wait on for :meth:`interface_names_changed`.

        None (names are looked up per datagram, as before): this socket has
        no link-change socket (:meth:`bind` opens one in the namespace it
        binds in, where the names are; it may have failed), or it cannot
        join the link group. :meth:`unwatch_interface_names` ends it.
        """
        if self._link_changes is None:
            return None
        try:
            # Joined only now: a socket nobody reads would queue every change until its buffer overflowed.
            self._link_changes.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, _RTNLGRP_LINK)
        except OSError as error:
            log.debug("cannot join the link group (%s): interface names are looked up per datagram", error)
            return None
        self._names = {}
        return self._link_changes.fileno()

    def interface_names_changed(self) -> None:
        """The link-change socket is readable: forget every name kept (and read what it says)."""
        if self._names is not None:
            self._names.clear()
        if self._link_changes is None:
            return
        for _ in range(_MAX_CHANGE_READS):
            try:
                self._link_changes.recv(_CHANGE_BUFFER)
            except BlockingIOError:
                return
            except OSError:
                # ENOBUFS: changes were lost. Nothing to re-read: the names are forgotten anyway.
                continue

    def unwatch_interface_names(self) -> None:
        """Look names up per datagram again (and leave the link group)."""
        if self._names is None or self._link_changes is None:
            return
        self._names = None
        try:
            self._link_changes.setsockopt(_SOL_NETLINK, _NETLINK_DROP_MEMBERSHIP, _RTNLGRP_LINK)
        except OSError:
            pass  # nothing read from it any more; close() ends it
        self.interface_names_changed()  # what it queued meanwhile

    def send_nowait(self, payload: bytes, targets: Iterable[str]) -> None:
        for target in targets:
            try:
                self._raw.sendto(payload, self._destination(target))
            except BlockingIOError:
                self.dropped += 1
                self.dropped_to[target] = self.dropped_to.get(target, 0) + 1
                continue
            except OSError as error:
                self._scopes.pop(target, None)  # the interface may have been recreated with a new index
                self.dropped += 1
                self.dropped_to[target] = self.dropped_to.get(target, 0) + 1
                reason = error.strerror or str(error)
                if self._failing.get(target) != reason:
                    self._failing[target] = reason
                    log.warning("cannot send heartbeat to %s:%d: %s", target, self.port, reason)
                continue
            self.sent += 1
            self.sent_to[target] = self.sent_to.get(target, 0) + 1
            if self._failing.pop(target, None) is not None:
                log.info("sending to %s:%d works again", target, self.port)

    def close(self) -> None:
        self.unwatch_interface_names()
        if self._link_changes is not None:
            self._link_changes.close()
        self._sock.close()

    def __enter__(self) -> HeartbeatSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _destination(self, target: str) -> tuple[str, int] | tuple[str, int, int, int]:
        """``target`` as this socket's family addresses it.

        An IPv4 target of a dual-stack socket is mapped; a link-local one's
        ``%interface`` becomes its index, looked up once (``sendto`` would look
        the name up for every frame) and again after a failed send.
        """
        if self.family != socket.AF_INET6:
            return (target, self.port)
        if ":" not in target:
            return (_MAPPED + target, self.port)
        host, percent, scope = target.partition("%")
        if not percent:
            return (target, self.port)
        index = self._scopes.get(target)
        if index is None:
            index = self._scopes[target] = socket.if_nametoindex(scope)
        return (host, self.port, 0, index)

    def _arrival_interface(self, ancillary: list[tuple[int, int, bytes]]) -> str:
        for level, kind, data in ancillary:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _PKTINFO.size:
                return self._interface_name(_PKTINFO.unpack_from(data)[0])
            if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= _PKTINFO6.size:
                return self._interface_name(_PKTINFO6.unpack_from(data)[1])
        return "unknown"

    def _source_text(self, source: tuple) -> str:
        """A sender as the configuration spells it: IPv4-mapped senders as IPv4, IPv6 canonical, a
        link-local one with ``%`` and the name of the interface it is on (its scope)."""
        host = source[0]
        if ":" not in host:
            return host
        address = ipaddress.IPv6Address(host.partition("%")[0])
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        scope = source[3] if len(source) > 3 else 0
        return f"{address}%{self._interface_name(scope)}" if scope else str(address)

    def _interface_name(self, index: int) -> str:
        names = self._names
        if names is not None and (known := names.get(index)) is not None:
            return known
        try:
            answer = fcntl.ioctl(self._raw.fileno(), SIOCGIFNAME, _IFREQ_INDEX.pack(b"", index))
        except OSError as error:
            if error.errno not in (errno.ENXIO, errno.ENODEV):
                raise
            return f"if{index}"  # the interface vanished since the datagram arrived
        name = answer[:_IFNAMSIZ].split(b"\0", 1)[0].decode(errors="replace")
        if names is not None:
            names[index] = name
        return name


def _open_link_changes() -> socket.socket | None:
    """A non-blocking ``NETLINK_ROUTE`` socket of this thread's namespace, in no group yet; None if refused."""
    try:
        changes = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                socket.NETLINK_ROUTE)
    except OSError as error:
        log.debug("no link-change socket (%s): interface names are looked up per datagram", error)
        return None
    try:
        changes.bind((0, 0))
    except OSError as error:
        changes.close()
        log.debug("no link-change socket (%s): interface names are looked up per datagram", error)
        return None
    return changes
