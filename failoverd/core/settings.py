"""What each core is built with, stated once: frozen, checked, and the same for the daemon, a trace and a replay.

The backup's :class:`DetectorSettings` are what failoverd's configuration says
about detection (the addresses to take over, the timing, who the master is,
the legacy message, whether to probe) and nothing else: not the key (a secret,
never written), not the run's own values (the time it starts, its epoch, what
it already holds). failoverd builds its detector from them
(``BackupConfig.detector_settings()``), writes them as a trace's header
(:class:`~failoverd.analysis.trace.TraceHeader` carries them whole, spelled on
disk as before) and a replay rebuilds the same detector from that header.

The master's :class:`MasterSettings` are the same for heartbeatd's core.

Error handling: settings that cannot work raise ValueError when they are
made (timing already did, as :class:`~failoverd.core.timing.TimingError`,
when its :class:`~failoverd.core.timing.Timing` was made), so a core is never
built from them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from failoverd.core.addresses import Triplet
from failoverd.core.timing import Timing
from failoverd.core.wire import MAX_PRIORITY
from failoverd.core.witness import WitnessTiming

DEFAULT_LEGACY_MESSAGE = b"heartbeat"
DEFAULT_PRIORITY = 100

MAX_BACKUPS = 254
"""Backups of one master are told apart by their priorities, 1..254 (spec/backups.md)."""


@dataclass(frozen=True)
class DetectorSettings:
    """The backup's detector, as configured: everything a trace header records but the key and the run."""

    addresses: tuple[Triplet, ...]
    """The master's public addresses, taken over when it fails."""
    timing: Timing = field(default_factory=Timing)
    master: str | None = None
    """The master's private address; in legacy mode the only source accepted."""
    legacy_message: bytes = DEFAULT_LEGACY_MESSAGE
    """Legacy mode: the exact datagram body the master sends."""
    arp_probe: bool = True
    """Probe the addresses before taking them (a master still answering for one keeps it)."""
    peer: str = "master"
    """How notifications and alarms name the master."""
    witness: WitnessTiming | None = None
    """The etcd witness's timing (spec/witness.md): take over only with its grant; None: no witness."""
    peers: tuple[str, ...] = ()
    """The other backups' addresses (``--peer ADDR=PRIORITY``, spec/backups.md); empty: one backup of a pair."""
    peer_priorities: tuple[int, ...] = ()
    """Each of :attr:`peers`' configured priority, in the same order (a peer's name on the wire)."""
    priority: int = DEFAULT_PRIORITY
    """Our ``--priority`` among several backups (higher takes first); on the wire only with peers."""
    preempt: bool = False
    """``--preempt``: take the addresses from a lower backup that holds them while the master is down."""

    def __post_init__(self) -> None:
        # Frozen and hashable whatever the caller passed; a set in sorted
        # order, so the header it is written as reads the same every run.
        object.__setattr__(self, "addresses", _as_tuple(self.addresses))
        object.__setattr__(self, "peers", tuple(self.peers))  # in the order of peer_priorities
        object.__setattr__(self, "peer_priorities", tuple(self.peer_priorities))
        if not self.addresses:
            raise ValueError("a detector needs at least one address to take over")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int) or not 1 <= self.priority <= MAX_PRIORITY:
            raise ValueError(f"priority {self.priority!r} is not within 1 - {MAX_PRIORITY}")
        if len(set(self.peers)) != len(self.peers):
            raise ValueError("a peer is listed twice")
        if self.master is not None and self.master in self.peers:
            raise ValueError(f"peer {self.master} is the master's address")
        if len(self.peer_priorities) != len(self.peers):
            raise ValueError(f"{len(self.peers)} peer(s) but {len(self.peer_priorities)} peer priorities: "
                             "each peer needs its configured priority")
        for address, priority in zip(self.peers, self.peer_priorities):
            if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= MAX_PRIORITY:
                raise ValueError(f"peer {address}: priority {priority!r} is not within 1 - {MAX_PRIORITY}")
            if priority == self.priority:
                raise ValueError(f"peer {address}: priority {priority} is ours too (two backups must not share one)")
        if len(set(self.peer_priorities)) != len(self.peer_priorities):
            raise ValueError("two peers share a priority (it is a backup's name on the wire)")

    @property
    def peer_table(self) -> dict[str, int]:
        """Each peer's address and its configured priority."""
        return dict(zip(self.peers, self.peer_priorities))

    @property
    def wire_priority(self) -> int:
        """What byte 7 of our frames says: our priority with peers, 0 in a pair (byte for byte as before)."""
        return self.priority if self.peers else 0


@dataclass(frozen=True)
class MasterSettings:
    """heartbeatd's core, as configured (not the key, the start, the epoch or what it already holds)."""

    targets: tuple[str, ...]
    """Where heartbeats go: the backup's address or broadcast addresses."""
    interval: float = Timing.interval
    """Seconds between heartbeats."""
    managed: tuple[Triplet, ...] = ()
    """Addresses heartbeatd adds itself (managed failback); empty: it holds none."""
    backup_fail_after: float | None = None
    """Seconds of silence after which the backup declares us failed (default three intervals)."""
    legacy_message: bytes = DEFAULT_LEGACY_MESSAGE
    arp_probe: bool = True
    retry_interval: float | None = None
    """Seconds before retrying an address that failed (default: the interval)."""
    garp_refresh: float | None = None
    """Announce held addresses again every so many seconds (None: only after taking them)."""
    witness: WitnessTiming | None = None
    """The etcd witness's timing (spec/witness.md): hold the managed addresses only with its grant."""
    backups: int = 1
    """How many backups the managed failback waits for (spec/backups.md); each is heard by its priority byte."""

    def __post_init__(self) -> None:
        for name in ("targets", "managed"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
        if not self.targets:
            raise ValueError("heartbeatd needs at least one target address")
        if not 1 <= self.backups <= MAX_BACKUPS:
            raise ValueError(f"backups {self.backups!r} is outside 1..{MAX_BACKUPS}")
        if self.garp_refresh is not None and not self.garp_refresh > 0:
            raise ValueError(f"gratuitous ARP refresh {self.garp_refresh!r} s must be positive")

    @property
    def effective_backup_fail_after(self) -> float:
        return 3 * self.interval if self.backup_fail_after is None else self.backup_fail_after

    @property
    def effective_retry_interval(self) -> float:
        return self.interval if self.retry_interval is None else self.retry_interval


def _as_tuple(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(sorted(values)) if isinstance(values, (set, frozenset)) else tuple(values)
