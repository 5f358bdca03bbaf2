"""A virtual-clock driver for the cores, shared by the property tests.

It plays the shell's part with perfect timers: it calls ``handle_timer``
exactly at each ``next_deadline``, completes probes after a fixed latency with
a chosen answer, and completes acquires/releases after a fixed latency.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from failoverd.core import wire
from failoverd.core.actions import (
    Acquire,
    AcquireDone,
    Probe,
    ProbeDone,
    Release,
    ReleaseDone,
    StateChanged,
    Transmit,
)
from failoverd.core.addresses import parse_triplet
from failoverd.core.detector import Detector
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing

KEY = b"property-test-key-0123456789"
VIPS = frozenset({parse_triplet("pub0:10.9.2.100/24"), parse_triplet("pub0:10.9.2.101/24")})
MASTER = "10.9.1.1"


@dataclass
class Log:
    acquires: list[tuple[float, frozenset]] = field(default_factory=list)
    releases: list[tuple[float, frozenset]] = field(default_factory=list)
    probes: list[float] = field(default_factory=list)
    states: list[tuple[float, str, str]] = field(default_factory=list)
    transmits: list[tuple[float, bytes]] = field(default_factory=list)
    other: list[tuple[float, object]] = field(default_factory=list)


class Driver:
    """Feeds a detector a schedule of datagrams under a virtual clock."""

    def __init__(
        self,
        detector: Detector,
        *,
        probe_latency: float | None = None,
        action_latency: float = 0.0,
        answered: Callable[[float], frozenset] = lambda now: frozenset(),
    ) -> None:
        self.detector = detector
        self.probe_latency = detector.timing.probe_duration if probe_latency is None else probe_latency
        self.action_latency = action_latency
        self.answered = answered
        self.log = Log()
        self.now = 0.0
        self._pending: list[tuple[float, int, object]] = []
        self._order = itertools.count()

    def _handle(self, actions: list) -> None:
        for action in actions:
            if isinstance(action, Probe):
                self.log.probes.append(self.now)
                self._schedule(self.now + self.probe_latency, "probe")
            elif isinstance(action, Acquire):
                self.log.acquires.append((self.now, action.addresses))
                self._schedule(self.now + self.action_latency, AcquireDone(acquired=action.addresses))
            elif isinstance(action, Release):
                self.log.releases.append((self.now, action.addresses))
                self._schedule(self.now + self.action_latency, ReleaseDone(released=action.addresses))
            elif isinstance(action, StateChanged):
                self.log.states.append((self.now, action.source, action.dest))
            elif isinstance(action, Transmit):
                self.log.transmits.append((self.now, action.payload))
            else:
                self.log.other.append((self.now, action))

    def _schedule(self, when: float, what: object) -> None:
        heapq.heappush(self._pending, (when, next(self._order), what))

    def advance(self, until: float) -> None:
        """Run timers and action completions up to ``until`` (inclusive)."""
        for _ in range(100_000):
            deadline = self.detector.next_deadline()
            pending = self._pending[0][0] if self._pending else None
            candidates = [t for t in (deadline, pending) if t is not None and t <= until]
            if not candidates:
                break
            when = max(min(candidates), self.now)
            self.now = when
            if pending is not None and pending <= when:
                _, _, what = heapq.heappop(self._pending)
                result = ProbeDone(answered=self.answered(when)) if what == "probe" else what
                self._handle(self.detector.action_done(when, result))  # type: ignore[arg-type]
            else:
                self._handle(self.detector.handle_timer(when))
        else:  # pragma: no cover - a livelock in the core
            raise AssertionError("the core asked to be woken more than 100000 times")
        self.now = max(self.now, until)

    def deliver(self, when: float, data: bytes, source: str = MASTER, path: str = "priv0") -> list:
        self.advance(when)
        actions = self.detector.receive_datagram(when, data, source, path)
        self._handle(actions)
        return actions


def detector(now: float = 0.0, *, key: bytes | None = KEY, timing: Timing | None = None, arp_probe: bool = True) -> Detector:
    settings = DetectorSettings(VIPS, timing or Timing(), master=MASTER, arp_probe=arp_probe)
    return Detector(settings, now, key=key, epoch=1)


class PeerMaster:
    """The master's side of the wire for a detector under test.

    Its frames acknowledge the newest status the detector has sent, as a
    master that received it does. A detector counts a heartbeat only once it
    acknowledges the detector's epoch, so the first :meth:`seal` after the
    detector started first plays the handshake: a heartbeat acknowledging
    nothing, delivered at the same instant, which the detector answers
    (through ``driver`` when given, so its timers run up to that instant).
    """

    def __init__(
        self,
        detector: Detector,
        *,
        epoch: int = 7,
        interval: float = 1.0,
        started: float = 0.0,
        key: bytes = KEY,
        source: str = MASTER,
        path: str = "priv0",
        driver: Driver | None = None,
    ) -> None:
        self.detector = detector
        self.driver = driver
        self.sealer = wire.Sealer(key, wire.ROLE_MASTER, epoch, interval, started)
        self.source, self.path = source, path

    def _ack(self) -> tuple[int, int]:
        status = self.detector._sealer
        assert status is not None, "a peer master needs an authenticated detector"
        return (status.epoch, status.seq) if status.seq else (0, 0)

    def seal(self, now: float, *, holds: bool, leaving: bool = False) -> bytes:
        if self._ack() == (0, 0):
            hello = self.sealer.seal(now, holds=holds)
            if self.driver is not None:  # runs the timers up to ``now`` first
                self.driver.deliver(now, hello, self.source, self.path)
            else:
                self.detector.receive_datagram(now, hello, self.source, self.path)
        ack_epoch, ack_seq = self._ack()
        return self.sealer.seal(now, holds=holds, leaving=leaving, ack_epoch=ack_epoch, ack_seq=ack_seq)
