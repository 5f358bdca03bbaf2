"""A raw AF_PACKET socket on one interface, usable from Trio: what ARP and NDP share.

The protocols differ only in the frames they build and parse
(:mod:`failoverd.system.arp`, :mod:`failoverd.system.ndp`); sending,
receiving another host's frames and closing are the same and live here.

Resource handling: an async context manager; the socket is closed on exit.

Error handling: sending on a down interface raises :class:`InterfaceDown`.
"""

from __future__ import annotations

import errno
import socket
from typing import Self

import trio

from failoverd.system.netlink import InterfaceDown

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
        self._sock.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
