"""A raw AF_PACKET socket on one interface, usable from Trio: what ARP and NDP share.

The protocols differ only in the frames they build and parse
(:mod:`failoverd.system.arp`, :mod:`failoverd.system.ndp`); sending,
receiving another host's frames and closing are the same and live here.

Opening (:func:`bound_socket`): the socket is created with protocol 0 and
gets its protocol only with the ``bind`` to the interface. Created with its
protocol, it would be hooked to every interface at once, and the bind would
have to unhook it first, which waits for an RCU grace period
(``synchronize_net`` in the kernel): 8 - 16 ms blocked in ``bind`` on this
machine, on the daemon's Trio thread, as the conflict watcher and the
gratuitous ARP open right beside the failback's address add. Frames from
other interfaces queued before the bind would also have been read as this
interface's.

Resource handling: an async context manager; the socket is closed on exit.
(Closing still waits for a grace period in the kernel: ``packet_release``
always does.)

Error handling: sending on a down interface raises :class:`InterfaceDown`;
:func:`bound_socket` raises :class:`InterfaceMissing` for an interface that
does not exist.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Self

import trio

from failoverd.system.netlink import InterfaceDown, InterfaceMissing

PACKET_OUTGOING = 4
"""linux/if_packet.h: the frame is one this host sent (a raw socket sees its own frames)."""


def bound_socket(
    interface: str, protocol: int, prepare: Callable[[socket.socket], None] | None = None
) -> socket.socket:
    """An AF_PACKET socket receiving ``protocol`` (an ethertype) on ``interface`` only, from its bind on.

    ``prepare`` gets the socket before the bind (a socket filter goes on
    there); in the caller's namespace. Nothing is received before the bind.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        if prepare is not None:
            prepare(sock)
        sock.bind((interface, protocol))
    except OSError as error:
        sock.close()
        if error.errno in (errno.ENODEV, errno.ENXIO):
            raise InterfaceMissing(interface) from None
        raise
    except BaseException:
        sock.close()
        raise
    return sock


class PacketSocket:
    def __init__(self, interface: str, sock: socket.socket) -> None:
        self.interface = interface
        self.mac: bytes = sock.getsockname()[4]
        self._sock = trio.socket.from_stdlib_socket(sock)

    async def send_frame(self, frame: bytes) -> None:
        try:
            await self._sock.send(frame)
        except OSError as error:
            if error.errno in (errno.ENETDOWN, errno.ENXIO):
                raise InterfaceDown(self.interface) from None
            raise

    async def receive_frame(self) -> bytes | None:
        """The next frame another host sent on this interface (None: one of our own)."""
        data, source = await self._sock.recvfrom(2048)
        return None if source[2] == PACKET_OUTGOING else data

    def close(self) -> None:
        self._sock.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
