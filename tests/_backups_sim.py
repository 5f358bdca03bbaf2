"""A master and several backups on a simulated network: the real cores, one virtual clock.

The backups are real :class:`~failoverd.core.detector.Detector` cores with
peers (spec/backups.md); the master is real :class:`~failoverd.core.master.Master`
cores that manage nothing, one per backup target, so each backup's status is
acknowledged by the heartbeats sent to it (spec/wire.md, rule 6: one frame
acknowledges one backup), and only the backups hold addresses; or
(:meth:`Network.start_managing_master`) one master that manages the addresses
with ``--backups`` the number of backups, targets every backup and takes the
addresses back through its failback (spec/backups.md, "Failback to the
master"): then the master's host counts among the holders.

The network: each datagram arrives ``delay`` after it was sent unless the
link between the two hosts is cut or the receiver is down; every delivery is
recorded (:attr:`Network.wire`) so a test can replay or withhold frames. ARP
tells the truth: a probe is answered for every address another host has
configured when the probe ends (or had when it began). Acquires and releases
complete after ``action_latency``; the address is on the wire from then on
(acquire) or off it (release). One clock: the property under test is the
backups' rules, not clock drift (tests/_sim.py does drift, for a pair).

:attr:`Network.most_holders` is the largest number of hosts that had any
address configured at once, checked after every event: never two.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _drive import KEY, VIPS

from failoverd.core.actions import (
    Acquire,
    AcquireDone,
    Alarm,
    Probe,
    ProbeDone,
    Release,
    ReleaseDone,
    StateChanged,
    Stopped,
    Transmit,
)
from failoverd.core.detector import Detector
from failoverd.core.master import Master
from failoverd.core.settings import DetectorSettings, MasterSettings
from failoverd.core.timing import Timing

MASTER = "10.9.1.1"
PATH = "priv"
MAX_EVENTS = 200_000
"""Every run is bounded: a table bug that makes a core spin fails the test instead of hanging it."""


@dataclass
class Backup:
    name: str
    address: str
    priority: int
    preempt: bool = False
    core: Detector | None = None
    configured: frozenset = frozenset()
    """The addresses on this host's interfaces (what ARP answers for), whatever the core believes."""
    epochs: itertools.count = field(default_factory=lambda: itertools.count(1))
    states: list[tuple[float, str]] = field(default_factory=list)
    acquires: list[float] = field(default_factory=list)
    releases: list[float] = field(default_factory=list)
    alarms: list[tuple[float, Alarm]] = field(default_factory=list)


class Network:
    def __init__(
        self,
        backups: dict[str, tuple[str, int]] | None = None,
        *,
        timing: Timing | None = None,
        delay: float = 0.01,
        action_latency: float = 0.05,
        preempt: tuple[str, ...] = (),
        no_probe: tuple[str, ...] = (),
    ) -> None:
        self.timing = timing or Timing()
        self.no_probe = no_probe
        """Backups that take over without an ARP probe (so only the peers' frames can fence them)."""
        self.delay = delay
        self.action_latency = action_latency
        specs = backups or {"high": ("10.9.1.2", 200), "low": ("10.9.1.3", 100)}
        self.backups = {
            name: Backup(name, address, priority, name in preempt) for name, (address, priority) in specs.items()
        }
        self.by_address = {b.address: b for b in self.backups.values()}
        self.now = 0.0
        self.cut: set[frozenset[str]] = set()
        self.master_up = False
        self.masters: dict[str, Master] = {}
        self.wire: list[tuple[float, str, str, bytes]] = []
        """(time, source, destination, payload) of every datagram sent."""
        self.drop: Callable[[str, str, bytes], bool] = lambda source, destination, payload: False
        """A test's filter: True drops (withholds) that datagram."""
        self.most_holders = 0
        self._queue: list[tuple[float, int, str, Any]] = []
        self._order = itertools.count()
        self._timers: dict[str, float] = {}
        self._master_epochs = itertools.count(1000)
        self.failback: Master | None = None
        """The managing master (:meth:`start_managing_master`), while it runs."""
        self.master_configured: frozenset = frozenset()
        """The addresses on the master's host (only a managing master adds any)."""
        self.master_acquires: list[float] = []

    # --- the hosts ---------------------------------------------------------

    def start_master(self) -> None:
        self.master_up = True
        epoch = next(self._master_epochs)
        for b in self.backups.values():
            self.masters[b.address] = Master(
                MasterSettings([b.address], self.timing.interval), self.now, key=KEY, epoch=epoch
            )
            self._after("master:" + b.address, [])

    def start_managing_master(self) -> Master:
        """heartbeatd --manage --backups N, targeting every backup, adopting what its host holds."""
        self.master_up = True
        self.masters.clear()
        settings = MasterSettings(
            tuple(b.address for b in self.backups.values()), self.timing.interval, managed=tuple(VIPS),
            backups=len(self.backups),
        )
        self.failback = Master(settings, self.now, key=KEY, epoch=next(self._master_epochs),
                               held=self.master_configured)
        self._after("master", [])
        return self.failback

    def kill_master(self) -> None:
        """The master's host dies: its addresses go with it."""
        self.master_up = False
        self.masters.clear()
        self.failback = None
        self.master_configured = frozenset()

    def start_backup(self, name: str) -> Detector:
        b = self.backups[name]
        others = [o for o in self.backups.values() if o is not b]
        settings = DetectorSettings(
            VIPS, self.timing, master=MASTER, peers=tuple(o.address for o in others),
            peer_priorities=tuple(o.priority for o in others), priority=b.priority, preempt=b.preempt,
            arp_probe=name not in self.no_probe,
        )
        b.core = Detector(settings, self.now, key=KEY, epoch=next(b.epochs) * 10 + b.priority, held=b.configured)
        b.states.append((self.now, b.core.state))
        self._after(name, [])
        return b.core

    def kill_backup(self, name: str) -> None:
        """The daemon dies (kill -9): its addresses stay configured."""
        self.backups[name].core = None

    def make_unfit(self, name: str, unfit: bool = True) -> None:
        core = self.backups[name].core
        assert core is not None
        self._after(name, core.health_changed(self.now, not unfit, "check-web failed"))

    # --- the wire ----------------------------------------------------------

    def cut_link(self, a: str, b: str) -> None:
        self.cut.add(frozenset({self._address(a), self._address(b)}))

    def heal_link(self, a: str, b: str) -> None:
        self.cut.discard(frozenset({self._address(a), self._address(b)}))

    def inject(self, source: str, destination: str, payload: bytes) -> None:
        """A datagram an attacker sends now (a replay, a frame withheld until now)."""
        self._push(self.now + self.delay, "frame", (source, destination, payload))

    def _address(self, host: str) -> str:
        return MASTER if host == "master" else self.backups[host].address

    def _send(self, source: str, destination: str, payload: bytes) -> None:
        self.wire.append((self.now, source, destination, payload))
        if frozenset({source, destination}) in self.cut or self.drop(source, destination, payload):
            return
        self._push(self.now + self.delay, "frame", (source, destination, payload))

    # --- the loop ----------------------------------------------------------

    def run_until(self, end: float) -> None:
        for _ in range(MAX_EVENTS):
            if not self._queue or self._queue[0][0] > end:
                self.now = end
                return
            when, _, kind, payload = heapq.heappop(self._queue)
            self.now = when
            self._event(kind, payload)
            self.most_holders = max(self.most_holders, len(self.holders()))
        raise AssertionError(f"more than {MAX_EVENTS} events before {end}: a core spins")

    def _push(self, when: float, kind: str, payload: Any) -> None:
        heapq.heappush(self._queue, (when, next(self._order), kind, payload))

    def _event(self, kind: str, payload: Any) -> None:
        if kind == "frame":
            source, destination, data = payload
            if destination == MASTER and self.failback is not None:
                self._after("master", self.failback.receive_datagram(self.now, data, source, PATH))
                return
            if destination == MASTER:
                master = self.masters.get(source) if self.master_up else None
                if master is not None:
                    self._after("master:" + source, master.receive_datagram(self.now, data, source, PATH))
                return
            b = self.by_address[destination]
            if b.core is not None:
                self._after(b.name, b.core.receive_datagram(self.now, data, source, PATH))
        elif kind == "timer":
            host, when = payload
            if self._timers.get(host) != when:
                return  # superseded by another deadline
            del self._timers[host]
            core = self._core(host)
            if core is not None:
                self._after(host, core.handle_timer(self.now))
        elif kind == "done":
            name, core, result = payload
            configured = self._configured(name)
            if isinstance(result, AcquireDone):
                configured = configured | frozenset(result.acquired)
            elif isinstance(result, ReleaseDone):
                configured = configured - frozenset(result.released)
            self._set_configured(name, configured, core)
            if self._core(name) is core:  # not a daemon killed since
                self._after(name, core.action_done(self.now, result))
        elif kind == "probe":
            name, core, seen_at_start = payload
            others = self._configured_besides(name)
            if self._core(name) is core:
                answered = (others | seen_at_start) & VIPS
                self._after(name, core.action_done(self.now, ProbeDone(answered=answered)))

    def _configured(self, host: str) -> frozenset:
        return self.master_configured if host == "master" else self.backups[host].configured

    def _set_configured(self, host: str, addresses: frozenset, core: Detector | Master) -> None:
        if host == "master":
            if self.failback is core:  # a dead host's addresses stay gone, even from a change then in flight
                self.master_configured = addresses
        else:
            self.backups[host].configured = addresses

    def _configured_besides(self, host: str) -> frozenset:
        """What ARP answers for, to ``host``: every other host's configured addresses."""
        others = [o.configured for o in self.backups.values() if o.name != host]
        if host != "master":
            others.append(self.master_configured)
        return frozenset().union(*others)

    def _core(self, host: str) -> Detector | Master | None:
        if host == "master":
            return self.failback
        if host.startswith("master:"):
            return self.masters.get(host.removeprefix("master:")) if self.master_up else None
        return self.backups[host].core

    def _after(self, host: str, actions: list) -> None:
        """Carry out a core's actions and set its timer again."""
        core = self._core(host)
        if core is None:
            return
        source = MASTER if host.startswith("master") else self.backups[host].address
        for action in actions:
            if isinstance(action, Transmit):
                for target in action.targets:
                    self._send(source, target, action.payload)
            elif isinstance(action, StateChanged):
                if host in self.backups:
                    self.backups[host].states.append((self.now, action.dest))
            elif isinstance(action, Probe):
                others = self._configured_besides(host)
                self._push(self.now + self.timing.probe_duration, "probe", (host, core, others))
            elif isinstance(action, Acquire):
                (self.backups[host].acquires if host in self.backups else self.master_acquires).append(self.now)
                self._push(self.now + self.action_latency, "done", (host, core, AcquireDone(acquired=action.addresses)))
            elif isinstance(action, Release):
                if host in self.backups:
                    self.backups[host].releases.append(self.now)
                self._push(self.now + self.action_latency, "done", (host, core, ReleaseDone(released=action.addresses)))
            elif isinstance(action, Alarm):
                if host in self.backups:
                    self.backups[host].alarms.append((self.now, action))
            elif isinstance(action, Stopped):
                pass
        deadline = core.next_deadline()
        if deadline is not None:
            when = max(deadline, self.now)
            if self._timers.get(host) != when:
                self._timers[host] = when
                self._push(when, "timer", (host, when))

    # --- what tests read ---------------------------------------------------

    def state(self, name: str) -> str:
        core = self.backups[name].core
        return "dead" if core is None else core.state

    def holders(self) -> list[str]:
        """The hosts with any address configured (the managing master's as "master")."""
        names = [b.name for b in self.backups.values() if b.configured]
        return sorted(names + (["master"] if self.master_configured else []))

    def entered(self, name: str, state: str, after: float = 0.0) -> float | None:
        """When the backup first entered ``state`` (at or after ``after``)."""
        return next((t for t, s in self.backups[name].states if s == state and t >= after), None)

    def frames(self, source: str, destination: str) -> list[tuple[float, bytes]]:
        """Every datagram ``source`` sent ``destination`` (host names or "master"), delivered or not."""
        a, b = self._address(source), self._address(destination)
        return [(t, p) for t, s, d, p in self.wire if s == a and d == b]

    def first_acquire(self, name: str, after: float = 0.0) -> float | None:
        return next((t for t in self.backups[name].acquires if t >= after), None)
