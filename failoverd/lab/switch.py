"""A learning Ethernet switch for one LAN, reduced to its decision: which ports get this frame.

It learns the source MAC of every frame a port sends; a frame for a learned unicast MAC goes to
that port only, anything else (broadcast, multicast, unknown) is flooded to every other port.
A learned entry moves when the MAC shows up on another port (a failed-over address's gratuitous
ARP does not move a MAC, but a re-plugged host would) and ages out after ``max_age`` seconds so a
stale entry can never black-hole a host for longer than that.
"""

from __future__ import annotations

from collections.abc import Iterable

DEFAULT_MAX_AGE = 30.0
BROADCAST = b"\xff" * 6


class Switch:
    def __init__(self, ports: Iterable[str], max_age: float = DEFAULT_MAX_AGE) -> None:
        self.ports = tuple(ports)
        if len(set(self.ports)) != len(self.ports) or not self.ports:
            raise ValueError(f"a switch needs distinct ports, got {self.ports!r}")
        self.max_age = max_age
        self._table: dict[bytes, tuple[str, float]] = {}

    def forward(self, frame: bytes, in_port: str, now: float) -> tuple[str, ...]:
        """The ports ``frame`` (arriving on ``in_port``) must be sent out of."""
        if in_port not in self.ports:
            raise ValueError(f"unknown port {in_port!r}")
        if len(frame) < 14:
            return ()
        dst, src = frame[0:6], frame[6:12]
        if not src[0] & 1:  # never learn a group address as a source
            self._table[src] = (in_port, now)
        if not dst[0] & 1:
            entry = self._table.get(dst)
            if entry is not None:
                port, seen = entry
                if now - seen <= self.max_age:
                    return () if port == in_port else (port,)
                del self._table[dst]
        return tuple(p for p in self.ports if p != in_port)

    def table(self) -> dict[str, str]:
        return {mac.hex(":"): port for mac, (port, _) in self._table.items()}
