"""A raw AF_PACKET socket on one interface, usable from Trio: what ARP and NDP share.

The protocols differ only in the frames they build and parse
(:mod:`failoverd.system.arp`, :mod:`failoverd.system.ndp`); sending,
receiving another host's frames and closing are the same and live here.

Opening and closing cost what the kernel makes them cost, and both happen
beside the address changes of a takeover or failback (the prober opens one
at the probe deadline, the conflict watcher one when a core starts claiming
and closes it when it stops), on the one thread that runs every task:

- A packet socket created with a protocol is already receiving; binding it
  to an interface then unhooks it and waits for an RCU grace period
  (``synchronize_net``: 8 ms measured here). Created with protocol 0 it
  receives nothing until :func:`bind_packet_socket` hooks it once, at once
  (0.1 ms), and no frame of another interface is queued before the bind.
- Closing one always waits for a grace period (12-16 ms here). That wait
  would stop every task, the heartbeat path and the failback's address add
  among them, so :meth:`PacketSocket.close` hands the descriptor to a
  short-lived thread that closes it; Trio is told first, so no task waits
  on it any more.

Resource handling: an async context manager; the socket is closed on exit.

Error handling: sending on a down interface raises :class:`InterfaceDown`;
:func:`bind_packet_socket` raises :class:`InterfaceMissing` for an unknown
interface.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable
from typing import Self

import trio

from failoverd.system.netlink import InterfaceDown, InterfaceMissing

PACKET_OUTGOING = 4
"""linux/if_packet.h: the frame is one this host sent (a raw socket sees its own frames)."""


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
        """Close the socket without waiting for the kernel's grace period (see the module's docstring)."""
        if self._sock.fileno() == -1:
            return
        try:
            trio.lowlevel.notify_closing(self._sock)
        except RuntimeError:  # not inside a Trio run: nothing waits on it, and nothing else would be held up
            os.close(self._sock.detach())
            return
        descriptor = self._sock.detach()
        threading.Thread(target=os.close, args=(descriptor,), name="close-packet-socket", daemon=True).start()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


def bind_packet_socket(interface: str, protocol: int, prepare: Callable[[socket.socket], None] | None = None) -> socket.socket:
    """A raw AF_PACKET socket receiving ``protocol`` (an ethertype) on ``interface``.

    Created with protocol 0 and hooked by the bind alone (see the module's
    docstring); ``prepare`` runs between the two (e.g. to attach a filter,
    which then applies from the first frame on).
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
    return sock
