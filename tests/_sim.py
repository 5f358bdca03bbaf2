"""Months of a master and a backup in seconds: the real cores, a virtual clock, two drifting host clocks.

One :class:`~failoverd.core.master.Master` (managing its addresses, with a
key) and one :class:`~failoverd.core.detector.Detector` (with the key) are
joined by a simulated network and driven by one event queue in *true* time.
Each host has its own monotonic clock, ``host = h0 + rate · (true - t0)``,
with ``rate`` within ±``drift_ppm`` of 1, drawn per run and drawn again now
and then (NTP slewing a clock changes its rate, never its value). Each core
is called with its own host's time, and a core's deadline is turned into
true time through its own host's clock: nothing compares the two clocks but
the cores.

Monotonic clocks are not stepped (CLOCK_MONOTONIC follows NTP's frequency
corrections only); each host's *wall* clock is, now and then, by up to
``wall_step`` either way, and that matters only when a daemon starts: its
epoch is :func:`failoverd.runtime.epoch.next_epoch` of the host's wall time,
on a real state directory, as the daemons pick it.

The network, both directions, seeded: a base delay plus uniform jitter,
independent loss, duplicates (a second copy up to half an interval after
the first), reordering (a frame held back by 1.05-1.5 intervals, so the next
one usually overtakes it). The hosts: the master's daemon crashes and is
restarted after a short downtime (its addresses stay configured; the new
daemon adopts them), likewise the backup's; the master's process is paused
for a few seconds (SIGSTOP, a stalled VM vCPU: its monotonic clock runs on,
and as seen from the backup its heartbeats jump by the pause). ARP tells the
truth: the master's host answers for the addresses it has configured, also
while its daemon is dead or paused.

The prediction. The simulator knows every frame's fate, so it says, from the
wire rules alone (spec/wire.md), what the receiver's verdict on each delivery
must be: a copy already delivered to this incarnation of the receiver, a
frame of an older epoch, or one 64 or more behind the newest is a
``replay``; a frame that does not acknowledge the receiver's current epoch is
``unacknowledged``; the others count, as ``accepted`` if newest and
``overtaken`` if not — unless neither of the two proofs of age covers it,
evaluated on the simulated clocks (:meth:`_Run._provable`): then it may also
be ``delayed``. Every frame here is at most 1.7 intervals old (and a paused
master receives nothing, see :meth:`_Run._pause_master`), so that may happen
only to a heartbeat sent just after a pause (:data:`UNPROVEN_AFTER_PAUSE`),
and does to one held back then at a short interval; any other is reported
(``Outcome.unexplained``). It also says when the detector must suspect:
each time a heartbeat it accepts comes
``suspect_after`` or more (its own clock) after the previous one, or after
its start; and when it must be contested instead (``fail_after`` or more:
the probe finds the master's host holding). Every verdict and every count is
compared with the cores' own; see :class:`Outcome`.

Cost: the cores are the cost (three entry points, four HMACs and two frames
per heartbeat); the loop keeps the rest to a few heap operations per frame,
with tuples and no per-event objects of its own.
"""

from __future__ import annotations

import heapq
import itertools
import random
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _drive import KEY, VIPS

from failoverd.core.actions import Acquire, AcquireDone, Alarm, Probe, ProbeDone, Release, ReleaseDone, Transmit
from failoverd.core.detector import Detector
from failoverd.core.master import Master
from failoverd.core.settings import DetectorSettings, MasterSettings
from failoverd.core.timing import Timing
from failoverd.runtime.epoch import next_epoch

# spec/wire.md's window and drift allowance ρ, restated, not imported: the prediction must not lean on the code.
REPLAY_WINDOW = 64
DRIFT_ALLOWANCE = 500e-6
WALL_START = 1_800_000_000.0  # the hosts' wall clocks at true time 0 (January 2027)
ACTION_LATENCY = 0.05  # hooks + netlink, true seconds

# Heap entries: (true time, order, kind, payload, link, sent). Frames are the
# two first kinds; ``link`` is None, or for a frame sent twice a list both
# copies share, holding the receiver incarnation the first copy reached;
# ``sent``: the sender's clock when it sent the frame.
_TO_BACKUP, _TO_MASTER, _PROBE_DONE, _ACTION_DONE, _PLANNED = range(5)

_fields = struct.Struct(">8xQQ12xQQ").unpack_from  # epoch, seq, ack_epoch, ack_seq of a v1 frame
_seq = struct.Struct(">16xQ").unpack_from
SEQ_MEMORY = 1024  # status send times kept (the detector's sealer remembers 256)
UNPROVEN_AFTER_PAUSE = 5
"""Intervals after the master's pause within which a heartbeat may be sent that no proof covers: its first
heartbeats acknowledge a status from before the pause, and the next round trip brings the direct proof back."""


@dataclass(frozen=True)
class Weather:
    """The network, the same both ways; delays in intervals."""

    loss: float = 0.03
    duplicate: float = 0.01
    reorder: float = 0.01
    base_delay: float = 0.02
    jitter: float = 0.20


@dataclass(frozen=True)
class Scenario:
    timing: Timing
    horizon: float
    """True seconds simulated."""
    seed: int = 1
    weather: Weather = Weather()
    drift_ppm: float = 500.0
    """Each host's monotonic clock runs at 1 ± up to this (ppm of true time)."""
    slew_every: float = 6 * 3600.0
    """Mean true seconds between changes of a host's clock rate."""
    wall_step: float = 6 * 3600.0
    """A wall-clock step sets the host's wall clock to true time ± up to this."""
    wall_steps: int = 4
    master_restarts: int = 3
    backup_restarts: int = 3
    pauses: int = 3
    pause_length: tuple[float, float] = (2.0, 5.0)
    """True seconds the master's process is stopped."""
    downtime: tuple[float, float] = (0.1, 2.0)
    """True seconds between a daemon's crash and its restart."""


@dataclass
class Outcome:
    """What happened, and what the wire rules said must happen."""

    scenario: Scenario
    heartbeats: int = 0
    """Heartbeats the master sealed."""
    statuses: int = 0
    """Status frames the backup sealed."""
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    undeliverable: int = 0
    """Frames that reached a host while its daemon was down."""
    verdicts: Counter = field(default_factory=Counter)
    """(receiver, predicted, actual) -> deliveries."""
    first_wrong: dict = field(default_factory=dict)
    """(receiver, predicted, actual) -> true time of the first such delivery, for a pair that differs."""
    unexplained: list = field(default_factory=list)
    """True times of heartbeats no proof covered that were not sent just after a pause (none must be)."""
    predicted_false_suspicions: int = 0
    predicted_contests: int = 0
    detector: Counter = field(default_factory=Counter)
    """The detectors' counters, summed over incarnations (``rejected:<reason>`` for refusals)."""
    master: Counter = field(default_factory=Counter)
    takeovers: int = 0
    """Acquire actions of the backup."""
    master_alarms: Counter = field(default_factory=Counter)
    backup_alarms: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)
    """Planned events that took place: restarts, pauses, steps, slews."""
    rates_ppm: list = field(default_factory=list)
    """(host, ppm) for every rate each host ran at."""
    final_state: str = ""
    predicted_final_state: str = ""
    seconds: float = 0.0
    """Wall-clock time the run took (reported, never asserted)."""

    @property
    def wrong(self) -> dict:
        """The deliveries whose verdict is not (one of) the predicted."""
        return {k: v for k, v in self.verdicts.items() if k[2] not in k[1].split(" or ")}

    @property
    def unproven(self) -> int:
        """Heartbeats neither proof of age covered (predicted ``... or delayed``)."""
        return sum(n for (_, predicted, _), n in self.verdicts.items() if predicted.endswith(" or delayed"))

    def summary(self) -> str:
        s = self.scenario
        hours = s.horizon / 3600
        return (
            f"{hours:.1f} virtual h at {s.timing.interval} s: {self.heartbeats} heartbeats, {self.statuses} statuses, "
            f"{self.lost} lost, {self.duplicated} duplicated, {self.reordered} reordered; "
            f"{self.unproven} heartbeats unproven, {self.detector['rejected:delayed']} of them refused; "
            f"suspicions {self.detector['false_suspicions']} (predicted {self.predicted_false_suspicions}), "
            f"contested {self.detector['contested']} (predicted {self.predicted_contests}); "
            f"events {dict(sorted(self.events.items()))}; {self.seconds:.1f} s"
        )


def _plan(scenario: Scenario, rng: random.Random) -> list[tuple[float, tuple]]:
    """The planned events: (true time, (what, host, value)).

    Crashes, pauses and wall steps are spread over the run, a minute or more
    apart and none in its last minute, so each one's effect is over before
    the next one (and before the end) and the expected outcome stays exact.
    """
    horizon = scenario.horizon
    plan: list[tuple[float, tuple]] = []
    for host in ("master", "backup"):
        t = 0.0
        for _ in range(1_000_000):
            t += rng.expovariate(1 / scenario.slew_every)
            if t >= horizon:
                break
            plan.append((t, ("rate", host, rng.uniform(-scenario.drift_ppm, scenario.drift_ppm))))
    kinds = (
        ["crash master"] * scenario.master_restarts
        + ["crash backup"] * scenario.backup_restarts
        + ["pause master"] * scenario.pauses
        + ["wall master", "wall backup"] * (scenario.wall_steps // 2)
    )
    rng.shuffle(kinds)
    if kinds:
        usable = horizon - 60.0
        slot = usable / len(kinds)
        if slot < 60.0:
            raise ValueError(f"{len(kinds)} planned events do not fit a minute apart in {horizon} s")
        for i, what in enumerate(kinds):
            at = 30.0 + i * slot + rng.uniform(0.0, slot - 60.0)
            verb, host = what.split()
            if verb == "crash":
                plan.append((at, ("crash", host, rng.uniform(*scenario.downtime))))
            elif verb == "pause":
                plan.append((at, ("pause", host, rng.uniform(*scenario.pause_length))))
            else:
                plan.append((at, ("wall", host, rng.uniform(-scenario.wall_step, scenario.wall_step))))
    return plan


def simulate(scenario: Scenario, state_dir: Path) -> Outcome:
    """Run ``scenario``; ``state_dir``: where each host's daemons keep their epoch file."""
    return _Run(scenario, state_dir).run()


class _Run:
    """One simulation: the loop is :meth:`run`, each kind of event a method."""

    def __init__(self, scenario: Scenario, state_dir: Path) -> None:
        self.s = scenario
        self.out = Outcome(scenario)
        self.rng = random.Random(scenario.seed)
        self.random = self.rng.random
        self.state_dirs = {h: Path(state_dir) / h for h in ("master", "backup")}
        self.timing = scenario.timing
        self.interval = interval = scenario.timing.interval
        w = scenario.weather
        self.loss, self.reorder_below, self.duplicate_above = w.loss, w.loss + w.reorder, 1.0 - w.duplicate
        self.base, self.jitter = interval * w.base_delay, interval * w.jitter
        self.suspect_after, self.fail_after = scenario.timing.suspect_after, scenario.timing.fail_after
        self.max_delay = scenario.timing.effective_max_delay
        self.order = itertools.count()
        self.heap: list = [(float("inf"), -1, _PLANNED, None, None, None)]  # a sentinel: never empty
        self.inflight = 0  # frames on the wire, both ways
        # host = h0 + rate * (true - t0), as [t0, h0, rate]; wall = true + offset.
        # The hosts have been up for different times: their clocks share no origin.
        self.clock_m = [0.0, self.rng.uniform(100.0, 1e6), 1.0]
        self.clock_b = [0.0, self.rng.uniform(100.0, 1e6), 1.0]
        self.wall = {"master": 0.0, "backup": 0.0}
        self.master_host_holds = VIPS  # configured on the master's host (a crashed daemon leaves them there)
        self.backup_host_holds: frozenset = frozenset()
        self.master_alive = self.backup_alive = True
        self.master_incarnation = self.backup_incarnation = 0
        self.retired_detectors: list[Detector] = []
        self.retired_masters: list[Master] = []
        self.pause_pending: float | None = None
        self.paused = False
        self.resumed = float("-inf")  # the master's clock when its process last resumed
        # Opposite extremes first: the clocks drift apart as fast as the range allows.
        sign = self.rng.choice((-1.0, 1.0))
        self._set_rate("master", 0.0, sign * scenario.drift_ppm)
        self._set_rate("backup", 0.0, -sign * scenario.drift_ppm)
        self.master = self._start_master(0.0)
        self.detector = self._start_backup(0.0)
        for at, what in _plan(scenario, self.rng):
            self._push(at, _PLANNED, what)
        self.m_deadline: float | None = None
        self.b_deadline: float | None = None
        self.m_due = self.b_due = float("inf")
        self._rearm(0.0)

    # --- clocks -----------------------------------------------------------------------

    def _clock(self, host: str) -> list:
        return self.clock_m if host == "master" else self.clock_b

    def _set_rate(self, host: str, t: float, ppm: float) -> None:
        clock = self._clock(host)
        t0, h0, rate = clock
        clock[:] = [t, h0 + rate * (t - t0), 1.0 + ppm * 1e-6]
        self.out.rates_ppm.append((host, ppm))

    def _now_m(self, t: float) -> float:
        """The master's clock at true time ``t``, never behind what its core was last told."""
        t0, h0, rate = self.clock_m
        now = h0 + rate * (t - t0)
        if now < self.m_last:
            now = self.m_last
        self.m_last = now
        return now

    def _now_b(self, t: float) -> float:
        t0, h0, rate = self.clock_b
        now = h0 + rate * (t - t0)
        if now < self.b_last:
            now = self.b_last
        self.b_last = now
        return now

    def _wall_ns(self, host: str, t: float) -> int:
        return int((WALL_START + t + self.wall[host]) * 1e9)

    def _rearm(self, t: float) -> None:
        """Turn both cores' deadlines (their own clocks) into true times, not before ``t``."""
        self._rearm_master(t)
        self._rearm_backup(t)

    def _rearm_master(self, t: float) -> None:
        deadline = self.master.next_deadline() if self.master_alive and not self.paused else None
        self.m_deadline = deadline
        if deadline is None:
            self.m_due = float("inf")
        else:
            t0, h0, rate = self.clock_m
            due = t0 + (deadline - h0) / rate
            self.m_due = due if due > t else t

    def _rearm_backup(self, t: float) -> None:
        deadline = self.detector.next_deadline() if self.backup_alive else None
        self.b_deadline = deadline
        if deadline is None:
            self.b_due = float("inf")
        else:
            t0, h0, rate = self.clock_b
            due = t0 + (deadline - h0) / rate
            self.b_due = due if due > t else t

    # --- the daemons --------------------------------------------------------------------

    def _start_master(self, t: float) -> Master:
        t0, h0, rate = self.clock_m
        now = h0 + rate * (t - t0)
        epoch = next_epoch(self.state_dirs["master"], now_ns=self._wall_ns("master", t))
        self.master_epoch = epoch
        self.m_newest = (0, 0)  # the newest backup (epoch, seq) this daemon recorded
        self.m_last = now
        # Started with its addresses configured, it adopts them: holding at once.
        return Master(MasterSettings(["backup"], self.interval, managed=VIPS), now, held=self.master_host_holds, key=KEY, epoch=epoch)

    def _start_backup(self, t: float) -> Detector:
        t0, h0, rate = self.clock_b
        now = h0 + rate * (t - t0)
        epoch = next_epoch(self.state_dirs["backup"], now_ns=self._wall_ns("backup", t))
        self.backup_epoch = epoch
        self.b_newest = (0, 0)  # the newest master (epoch, seq) this daemon recorded
        self.status_sent: dict[int, float] = {}  # its status seq -> its clock when it sealed it
        self.pin: float | None = None  # max(σ_p − s_p + ρ·t_p) over the epoch's direct proofs, see _provable
        self.b_last = now
        self.b_heard = now  # as the detector's last_heard: its start gives the master full grace
        return Detector(DetectorSettings(VIPS, self.timing, peer="master"), now, key=KEY, epoch=epoch, held=self.backup_host_holds)

    @staticmethod
    def _add_counters(core: Any, into: Counter) -> None:
        c = core.counters
        names = ("accepted", "overtaken", "unacknowledged", "failovers", "failbacks", "false_suspicions", "contested")
        for name in names:
            into[name] += getattr(c, name, 0)
        for reason, n in c.rejected.items():
            into[f"rejected:{reason}"] += n

    def _backup_must_be(self, t: float) -> str:
        """The state the detector must be in at ``t``, from its silence since it last accepted a heartbeat.

        A silence of ``fail_after`` has already been contested (the probe
        found the master's host holding): counted here, as it is not over.
        """
        t0, h0, rate = self.clock_b
        now = h0 + rate * (t - t0)
        if now >= self.b_heard + self.timing.fail_after:
            self.out.predicted_contests += 1
            return "contested"
        if now >= self.b_heard + self.timing.suspect_after:
            return "suspect"
        return "monitoring"

    # --- the network --------------------------------------------------------------------

    def _push(self, when: float, kind: int, payload: Any) -> None:
        heapq.heappush(self.heap, (when, next(self.order), kind, payload, None, None))

    def _send(self, t: float, kind: int, payload: bytes, sent: float) -> None:
        """The network's part for one frame sent at true time ``t``: lose, delay, hold back, copy.

        ``sent``: the sender's clock then, carried with the frame.
        """
        x = self.random()
        if x < self.loss:
            self.out.lost += 1
            return
        arrival = t + self.base + self.jitter * self.random()
        if x < self.reorder_below:
            arrival += self.interval * (1.05 + 0.45 * self.random())
            self.out.reordered += 1
        if x > self.duplicate_above:
            link = [-1]
            self.out.duplicated += 1
            heapq.heappush(self.heap, (arrival, next(self.order), kind, payload, link, sent))
            later = arrival + self.interval * 0.5 * self.random()
            heapq.heappush(self.heap, (later, next(self.order), kind, payload, link, sent))
            self.inflight += 2
        else:
            heapq.heappush(self.heap, (arrival, next(self.order), kind, payload, None, sent))
            self.inflight += 1

    @staticmethod
    def _predict(
        payload: bytes, link: list | None, incarnation: int, newest: tuple, own_epoch: int
    ) -> tuple[str, tuple]:
        """The verdict the wire rules give, and the receiver's newest (epoch, seq) after it.

        ``newest`` is what this incarnation of the receiver recorded; a
        frame counts unless it is a replay or does not acknowledge
        ``own_epoch``, the receiver's current epoch.
        """
        epoch, seq, ack_epoch, _ = _fields(payload)
        if link is not None:
            if link[0] == incarnation:
                return "replay", newest  # the second copy of a frame this receiver has seen
            link[0] = incarnation
        n_epoch, n_seq = newest
        if epoch < n_epoch or (epoch == n_epoch and n_seq - seq >= REPLAY_WINDOW):
            return "replay", newest
        is_newest = epoch > n_epoch or seq > n_seq
        if is_newest:
            newest = (epoch, seq)
        if ack_epoch != own_epoch:
            return "unacknowledged", newest
        return ("accepted" if is_newest else "overtaken"), newest

    # --- events ---------------------------------------------------------------------------

    def master_timer(self, t: float) -> None:
        if self.pause_pending is not None and self._pause_master(t):
            return
        now = self._now_m(t)
        deadline = self.m_deadline
        if deadline is not None and now < deadline:
            now = self.m_last = deadline  # a timer fires at or after its deadline, never before
        self._master_actions(t, self.master.handle_timer(now))
        self._rearm_master(t)

    def backup_timer(self, t: float) -> None:
        now = self._now_b(t)
        deadline = self.b_deadline
        if deadline is not None and now < deadline:
            now = self.b_last = deadline
        self._backup_actions(t, self.detector.handle_timer(now))
        self._rearm_backup(t)

    def heartbeat_arrives(self, t: float, payload: bytes, link: list | None, sent: float) -> None:
        self.inflight -= 1
        if not self.backup_alive:
            self.out.undeliverable += 1
            return
        now = self._now_b(t)
        known_epoch = self.b_newest[0]
        predicted, self.b_newest = self._predict(
            payload, link, self.backup_incarnation, self.b_newest, self.backup_epoch
        )
        if self.b_newest[0] != known_epoch:
            self.pin = None  # a new master epoch: no proof by reference until a direct one
        if predicted in ("accepted", "overtaken") and not self._provable(now, payload, sent):
            predicted += " or delayed"
            if not sent - self.resumed <= UNPROVEN_AFTER_PAUSE * self.interval:
                self.out.unexplained.append(t)
        actions = self.detector.receive_datagram(now, payload, "master", "priv0")
        actual = self.detector.last_verdict
        self.out.verdicts["backup", predicted, actual] += 1
        if actual not in predicted.split(" or "):
            self.out.first_wrong.setdefault(("backup", predicted, actual), t)
        if actual == "accepted" and predicted.startswith("accepted"):
            # The detector's last_heard moves: a gap this long was a suspicion, or a contest.
            if now >= self.b_heard + self.fail_after:
                self.out.predicted_contests += 1
            elif now >= self.b_heard + self.suspect_after:
                self.out.predicted_false_suspicions += 1
            self.b_heard = now
        if actions:
            self._backup_actions(t, actions)
        self._rearm_backup(t)

    def _provable(self, now: float, payload: bytes, sent: float) -> bool:
        """Does one of spec/wire.md's two proofs show this heartbeat at most max_delay old (the backup's clock)?

        Evaluated on the simulated clocks and the simulator's own record of
        when each status was sealed, not by the guard's arithmetic. Direct:
        it acknowledges a status the backup sealed at ``σ``, so it is at
        most ``now − σ`` old. By reference: each earlier heartbeat of the
        epoch proven directly (made at ``s_p``, acknowledging a status of
        ``σ_p``, arrived at ``t_p``) bounds a later one made at ``s`` to
        ``(now − s) − (σ_p − s_p) + ρ · (now − t_p)``; the best of them
        counts — plus 1 ms, as frames carry their send time in whole
        milliseconds. A frame neither proof covers with a margin may be
        refused as ``delayed``: at 10 ms, a heartbeat held back just after
        the master's pause of seconds, where ρ over the pause eats the
        margin. Also notes the frame's own direct proof, if it has one.
        """
        _, _, ack_epoch, ack_seq = _fields(payload)
        margin = 1e-6
        rho = DRIFT_ALLOWANCE
        sealed = self.status_sent.get(ack_seq) if ack_epoch == self.backup_epoch else None
        direct = sealed is not None and now - sealed <= self.max_delay - margin
        by_reference = self.pin is not None and (now - sent) - self.pin + rho * now + 0.001 <= self.max_delay - margin
        if direct:
            assert sealed is not None
            pinned = sealed - sent + rho * now
            if self.pin is None or pinned > self.pin:
                self.pin = pinned
        return direct or by_reference

    def status_arrives(self, t: float, payload: bytes, link: list | None) -> None:
        self.inflight -= 1
        if not self.master_alive:
            self.out.undeliverable += 1
            return
        if self.paused:
            raise AssertionError("a frame reached the paused master (see _pause_master)")
        now = self._now_m(t)
        predicted, self.m_newest = self._predict(
            payload, link, self.master_incarnation, self.m_newest, self.master_epoch
        )
        if predicted == "overtaken":
            predicted = "accepted"  # the master counts an overtaken status as alive, like a newest one
        counters = self.master.counters
        accepted, unacknowledged = counters.accepted, counters.unacknowledged
        replays = counters.rejected.get("replay", 0)
        actions = self.master.receive_datagram(now, payload, "backup", "priv0")
        if counters.accepted > accepted:
            actual = "accepted"
        elif counters.unacknowledged > unacknowledged:
            actual = "unacknowledged"
        elif counters.rejected.get("replay", 0) > replays:
            actual = "replay"
        else:
            actual = "refused"
        self.out.verdicts["master", predicted, actual] += 1
        if predicted != actual:
            self.out.first_wrong.setdefault(("master", predicted, actual), t)
        if actions:
            self._master_actions(t, actions)
        self._rearm_master(t)

    def _master_actions(self, t: float, actions: list) -> None:
        for action in actions:
            if type(action) is Transmit:
                self.out.heartbeats += 1
                self._send(t, _TO_BACKUP, action.payload, self.m_last)
            elif isinstance(action, Alarm):
                self.out.master_alarms[" ".join(action.message.split()[:2])] += 1
            elif isinstance(action, (Acquire, Release)):
                self._push(t + ACTION_LATENCY, _ACTION_DONE, ("master", self.master_incarnation, action))

    def _backup_actions(self, t: float, actions: list) -> None:
        for action in actions:
            if type(action) is Transmit:
                self.out.statuses += 1
                seq = _seq(action.payload)[0]
                self.status_sent[seq] = self.b_last  # what the detector's sealer notes as its send time
                self.status_sent.pop(seq - SEQ_MEMORY, None)
                self._send(t, _TO_MASTER, action.payload, self.b_last)
            elif isinstance(action, Probe):
                latency = self.timing.probe_duration / self.clock_b[2]  # the probe's spacing runs on the backup's clock
                self._push(t + latency, _PROBE_DONE, ("backup", self.backup_incarnation, action.addresses))
            elif isinstance(action, (Acquire, Release)):
                if isinstance(action, Acquire):
                    self.out.takeovers += 1
                self._push(t + ACTION_LATENCY, _ACTION_DONE, ("backup", self.backup_incarnation, action))
            elif isinstance(action, Alarm):
                self.out.backup_alarms[" ".join(action.message.split()[:2])] += 1

    def action_done(self, t: float, kind: int, payload: tuple) -> None:
        """A probe, acquire or release finished (for the daemon that asked, if it still runs)."""
        host, incarnation, what = payload
        if host == "master":
            if incarnation != self.master_incarnation or not self.master_alive:
                return  # the process that asked is gone; what it changed stays as it was
            now = self._now_m(t)
            if isinstance(what, Acquire):
                self.master_host_holds = self.master_host_holds | what.addresses
                result: Any = AcquireDone(acquired=what.addresses)
            else:
                self.master_host_holds = self.master_host_holds - what.addresses
                result = ReleaseDone(released=what.addresses)
            self._master_actions(t, self.master.action_done(now, result))
        else:
            if incarnation != self.backup_incarnation or not self.backup_alive:
                return
            now = self._now_b(t)
            if kind == _PROBE_DONE:
                # ARP tells the truth: the master's host answers for what it has
                # configured, whether its daemon runs, is stopped or paused.
                result = ProbeDone(answered=frozenset(what) & self.master_host_holds)
            elif isinstance(what, Acquire):
                self.backup_host_holds = self.backup_host_holds | what.addresses
                result = AcquireDone(acquired=what.addresses)
            else:
                self.backup_host_holds = self.backup_host_holds - what.addresses
                result = ReleaseDone(released=what.addresses)
            self._backup_actions(t, self.detector.action_done(now, result))
        self._rearm(t)

    def planned(self, t: float, what: tuple) -> None:
        verb, host, value = what
        self.out.events[f"{verb} {host}"] += 1
        if verb == "rate":
            self._set_rate(host, t, value)
        elif verb == "wall":
            self.wall[host] = value
        elif verb == "pause":
            self.pause_pending = value
        elif verb == "resume":
            self.paused = False
            self.resumed = self._now_m(t)
        elif verb == "crash" and host == "master":
            self.master_alive = False
            self.retired_masters.append(self.master)
            self._push(t + value, _PLANNED, ("start", host, None))
        elif verb == "crash":
            self._backup_must_be(t)  # counts a contest that is still on
            self.backup_alive = False
            self.retired_detectors.append(self.detector)
            self._push(t + value, _PLANNED, ("start", host, None))
        elif verb == "start" and host == "master":
            self.master_incarnation += 1
            self.master = self._start_master(t)
            self.master_alive = True
        elif verb == "start":
            self.backup_incarnation += 1
            self.detector = self._start_backup(t)
            self.backup_alive = True
        self._rearm(t)

    def _pause_master(self, t: float) -> bool:
        """Stop the master's process now, if no frame is in flight either way.

        The backup only answers heartbeats, so a master paused while nothing
        is in flight receives nothing until it resumes; its first heartbeat
        after the pause acknowledges a status from before the pause, and must
        still count (its age is proven by reference). Otherwise: not yet, at
        its next timer.
        """
        if self.inflight or not self.master_alive or self.pause_pending is None:
            return False
        self.paused = True
        self._push(t + self.pause_pending, _PLANNED, ("resume", "master", None))
        self.pause_pending = None
        self.m_due = float("inf")
        return True

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> Outcome:
        started = time.perf_counter()
        heap, pop = self.heap, heapq.heappop
        end = self.s.horizon
        limit = int(20 * end / self.interval) + 100_000  # every frame, timer and event several times over
        for _ in range(limit):
            top = heap[0][0]
            m_due, b_due = self.m_due, self.b_due
            if m_due <= top and m_due <= b_due:
                if m_due > end:
                    break
                self.master_timer(m_due)
            elif b_due <= top:
                if b_due > end:
                    break
                self.backup_timer(b_due)
            else:
                if top > end:
                    break
                t, _, kind, payload, link, sent = pop(heap)
                if kind == _TO_BACKUP:
                    self.heartbeat_arrives(t, payload, link, sent)
                elif kind == _TO_MASTER:
                    self.status_arrives(t, payload, link)
                elif kind == _PLANNED:
                    self.planned(t, payload)
                else:
                    self.action_done(t, kind, payload)
        else:
            raise AssertionError(f"more than {limit} events in {end} s: a core asks to be woken without end")
        out = self.out
        out.predicted_final_state = self._backup_must_be(end)
        out.final_state = self.detector.state
        for detector in self.retired_detectors + [self.detector]:
            self._add_counters(detector, out.detector)
        for master in self.retired_masters + [self.master]:
            self._add_counters(master, out.master)
        out.seconds = time.perf_counter() - started
        return out
