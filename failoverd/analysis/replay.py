"""Re-run the backup's detector over recorded heartbeats under a virtual clock.

Two ways to drive the same :class:`~failoverd.core.detector.Detector`:

- **exact**: a native trace's own events, in order — datagrams, the timer
  calls the daemon made, the action results it reported. This re-executes the
  daemon; every datagram's verdict is checked against the recorded one, and
  any difference is reported as a divergence.
- **what-if**: only the datagrams (:data:`~failoverd.analysis.trace.Arrival`) are
  taken from the trace (a pcap has nothing else). Timers fire exactly at each :meth:`Detector.next_deadline`
  between arrivals (an arrival at the very deadline is delivered first), and
  actions are completed by an :class:`ActionModel`. This answers "what would
  another timing have done with the same heartbeats?". The backup is taken
  to be healthy throughout: its health checks' verdicts are of the recorded
  run's service, not a question about timing (and a capture has none).

The result is a timeline of state changes and actions and a summary
(failovers and how long after the last heartbeat each took over, whether it
was false, false suspicions, the longest silence, inter-arrival jitter per
path). Nothing here reads a clock, a socket or a file.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from failoverd.analysis.trace import (
    ActionResult,
    Arrival,
    ConflictSeen,
    Datagram,
    End,
    Event,
    HealthChanged,
    LinkChanged,
    Lost,
    StopRequested,
    TimerFired,
    TraceHeader,
)
from failoverd.core.actions import (
    Acquire,
    AcquireDone,
    Action,
    Alarm,
    Claim,
    ClaimDone,
    Notify,
    Probe,
    ProbeDone,
    Reach,
    ReachDone,
    Release,
    ReleaseClaim,
    ReleaseDone,
    RenewDone,
    Result,
    StateChanged,
)
from failoverd.core.addresses import Triplet, names
from failoverd.core.detector import Detector
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing

DEFAULT_OUTAGE = 30.0
"""Legacy mode: a silence at least this long is taken for a real outage, so a
failover on it is not false (legacy heartbeats do not say whether the master
restarted; authenticated ones do, by their epoch)."""


@dataclass(frozen=True)
class ActionModel:
    """How the simulated world answers the detector's actions in what-if replay.

    ``probe_answers``: the master's addresses answer ARP probes (it is alive
    on the public network even when its heartbeats are lost); by default the
    probe is silent. Every action succeeds completely after its latency.
    A trace of a witness-mode backup (spec/witness.md) is replayed with an
    etcd that this backup always reaches and nobody else claims from: every
    claim is granted and every renewal proves it, each ``witness_latency``
    after it was sent, renewals every renew period from the grant.
    """

    probe_answers: bool = False
    probe_latency: float = 0.0
    acquire_latency: float = 0.0
    release_latency: float = 0.0
    witness_latency: float = 0.0

    def __post_init__(self) -> None:
        for name in ("probe_latency", "acquire_latency", "release_latency", "witness_latency"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number of seconds")


@dataclass(frozen=True)
class TimelineEntry:
    time: float
    kind: str
    """state, probe, acquire, release, notify, alarm, probed, acquired, released, health, link, stop, lost;
    claim, claimed, renewed (a renewal that did not prove the claim), give back (witness mode)"""
    text: str
    wall: float | None = None

    def to_json(self, start: float) -> dict[str, Any]:
        data: dict[str, Any] = {"t": round(self.time - start, 6), "kind": self.kind, "text": self.text}
        if self.wall is not None:
            data["wall"] = round(self.wall, 6)
        return data


@dataclass
class Failover:
    """One takeover: from the failure deadline's Acquire to the master's return."""

    decided_at: float
    last_heard: float
    master_epoch: int | None
    took_over_at: float | None = None
    master_back_at: float | None = None
    back_epoch: int | None = None
    false: bool = False
    why: str = ""

    @property
    def detection(self) -> float:
        """Seconds from the last heartbeat heard to the decision to take over."""
        return self.decided_at - self.last_heard

    @property
    def takeover(self) -> float | None:
        """Seconds from the last heartbeat heard to the addresses being ours."""
        return None if self.took_over_at is None else self.took_over_at - self.last_heard

    def to_json(self, start: float) -> dict[str, Any]:
        return {
            "decided_at": round(self.decided_at - start, 6),
            "last_heartbeat_at": round(self.last_heard - start, 6),
            "detection_s": round(self.detection, 6),
            "takeover_s": None if self.takeover is None else round(self.takeover, 6),
            "master_back_at": None if self.master_back_at is None else round(self.master_back_at - start, 6),
            "false": self.false,
            "why": self.why,
        }


@dataclass
class PathStats:
    """Inter-arrival times of accepted heartbeats on one path (Welford's running moments)."""

    name: str
    gap_limit: float = math.inf
    """Longer silences are outages, counted in ``gaps``, not jitter."""
    count: int = 0
    gaps: int = 0
    last: float | None = None
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    low: float = math.inf
    high: float = 0.0

    def add(self, now: float) -> None:
        self.count += 1
        if self.last is not None:
            gap = now - self.last
            if gap > self.gap_limit:
                self.gaps += 1
                self.last = now
                return
            self.n += 1
            delta = gap - self.mean
            self.mean += delta / self.n
            self.m2 += delta * (gap - self.mean)
            if gap < self.low:
                self.low = gap
            if gap > self.high:
                self.high = gap
        self.last = now

    def to_json(self) -> dict[str, Any]:
        if self.n == 0:
            return {"path": self.name, "heartbeats": self.count, "silences_over_timeout": self.gaps}
        return {
            "path": self.name,
            "heartbeats": self.count,
            "silences_over_timeout": self.gaps,
            "interval_mean_s": round(self.mean, 6),
            "jitter_stdev_s": round(math.sqrt(self.m2 / self.n), 6),
            "interval_min_s": round(self.low, 6),
            "interval_max_s": round(self.high, 6),
        }


@dataclass
class Divergence:
    """Exact replay disagreed with the recording: the core is not the one that recorded."""

    time: float
    recorded: str
    replayed: str


@dataclass
class ReplayResult:
    mode: Literal["exact", "what-if"]
    start: float
    end: float
    timing: Timing
    final_state: str
    timeline: list[TimelineEntry]
    failovers: list[Failover]
    false_suspicions: int
    datagrams: int
    accepted: int
    rejected: dict[str, int]
    longest_silence: tuple[float, float]
    """(from, to) of the longest time without an accepted heartbeat, trace end included."""
    paths: list[PathStats]
    divergences: list[Divergence] = field(default_factory=list)
    lost: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def transitions(self) -> list[tuple[float, str, str, str]]:
        """(time, from, to, trigger) of every state change, in order."""
        out = []
        for e in self.timeline:
            if e.kind == "state":
                source, _, rest = e.text.partition(" -> ")
                dest, _, trigger = rest.partition(" (")
                out.append((e.time, source, dest, trigger.rstrip(")")))
        return out

    @property
    def false_failovers(self) -> int:
        return sum(1 for f in self.failovers if f.false)

    def summary_json(self) -> dict[str, Any]:
        silence_from, silence_to = self.longest_silence
        takeovers = [f.takeover for f in self.failovers if f.takeover is not None]
        return {
            "mode": self.mode,
            "duration_s": round(self.end - self.start, 6),
            "final_state": self.final_state,
            "datagrams": self.datagrams,
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "failovers": len(self.failovers),
            "false_failovers": self.false_failovers,
            "false_suspicions": self.false_suspicions,
            "takeover_after_last_heartbeat_s": [round(t, 6) for t in takeovers],
            "longest_silence_s": round(silence_to - silence_from, 6),
            "longest_silence_from": round(silence_from - self.start, 6),
            "paths": [p.to_json() for p in self.paths],
            "lost_events": self.lost,
            "divergences": len(self.divergences),
            "timing": {
                "interval": self.timing.interval,
                "suspect_after": self.timing.suspect_after,
                "fail_after": self.timing.fail_after,
            },
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary_json(),
            "failovers": [f.to_json(self.start) for f in self.failovers],
            "timeline": [e.to_json(self.start) for e in self.timeline],
            "divergences": [
                {"t": round(d.time - self.start, 6), "recorded": d.recorded, "replayed": d.replayed}
                for d in self.divergences
            ],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Setup:
    """Everything a replay builds its detector from: the recording's settings (a trace header's, or
    options for a capture), the key, and the run's own values."""

    settings: DetectorSettings
    start: float
    key: bytes | None = None
    epoch: int = 1
    held: tuple[Triplet, ...] = ()

    @property
    def timing(self) -> Timing:
        return self.settings.timing

    def with_timing(self, timing: Timing) -> Setup:
        """The same replay under another timing (a what-if, a sweep)."""
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, timing=timing))

    @classmethod
    def from_header(cls, header: TraceHeader, key: bytes | None, timing: Timing | None = None) -> Setup:
        setup = cls(header.settings, header.start, key=key, epoch=header.epoch, held=header.held)
        return setup if timing is None else setup.with_timing(timing)

    def detector(self, *, offline: bool = False) -> Detector:
        """The detector the daemon built (``offline``: for a what-if run, see :class:`Detector`)."""
        return Detector(self.settings, self.start, key=self.key, epoch=self.epoch, held=self.held, offline=offline)


class _Run:
    """The bookkeeping of one replay: timeline, failovers, silences, paths."""

    def __init__(self, setup: Setup, detector: Detector, outage: float) -> None:
        self.setup = setup
        self.det = detector
        self.outage = outage
        self.authenticated = setup.key is not None
        self.timeline: list[TimelineEntry] = []
        self.failovers: list[Failover] = []
        self.open_failover: Failover | None = None
        self.paths: dict[str, PathStats] = {}
        self.datagrams = 0
        self.last_heard = setup.start
        self.longest = (setup.start, setup.start)
        self.longest_length = 0.0
        self.wall_offset: float | None = None
        self.pending: list[tuple[float, int, Result]] = []
        self.order = 0
        self.lost = 0
        self.divergences: list[Divergence] = []
        self.model: ActionModel | None = None
        """What-if: how the simulated world answers (None: an exact replay feeds the recorded answers)."""
        self.claim_generation = 0
        """What-if, witness mode: which claim the simulated renewals belong to."""
        self._renewals: dict[int, int] = {}

    def wall(self, now: float) -> float | None:
        return None if self.wall_offset is None else now + self.wall_offset

    def heard(self, now: float, path: str) -> None:
        """An accepted heartbeat (once per heartbeat of a day: kept cheap)."""
        if now - self.last_heard > self.longest_length:
            self.silence_until(now)
        self.last_heard = now
        stats = self.paths.get(path)
        if stats is None:
            stats = self.paths[path] = PathStats(path, self.setup.timing.fail_after)
        stats.add(now)
        f = self.open_failover
        if f is not None and f.master_back_at is None:
            f.master_back_at = now
            f.back_epoch = self.det.master_epoch if self.authenticated else None
            self.open_failover = None

    def record(self, now: float, actions: list, model: ActionModel | None) -> None:
        """Log the actions the core returned; in what-if mode schedule their results."""
        for action in actions:
            if isinstance(action, StateChanged):
                self.note(now, "state", f"{action.source} -> {action.dest} ({action.trigger})")
            elif isinstance(action, Probe):
                self.note(now, "probe", names(action.addresses))
                if model is not None:
                    answered = action.addresses if model.probe_answers else frozenset()
                    self.schedule(now + model.probe_latency, ProbeDone(answered))
            elif isinstance(action, Acquire):
                self.note(now, "acquire", names(action.addresses))
                if model is not None:
                    self.schedule(now + model.acquire_latency, AcquireDone(acquired=action.addresses))
            elif isinstance(action, Release):
                self.note(now, "release", names(action.addresses))
                if model is not None:
                    self.schedule(now + model.release_latency, ReleaseDone(released=action.addresses))
            elif isinstance(action, Notify):
                self.note(now, "notify", f"{action.direction} {action.peer}")
                if action.direction == "down":
                    self.failover_decided(now)
            elif isinstance(action, Alarm):
                self.note(now, "alarm", f"{action.level}: {action.message}")
            elif isinstance(action, Claim):
                self.note(now, "claim", names(self.det.addresses))
                if model is not None:
                    self.claim_generation += 1
                    read_at = now + model.witness_latency
                    self.schedule(read_at, ClaimDone("granted", sent_at=now, answered_at=read_at))
            elif isinstance(action, Reach):
                # What-if: the etcd of this replay always answers (spec/trace.md), so nothing is confirmed.
                if model is not None:
                    self.schedule(now + model.witness_latency, ReachDone("answered", sent_at=now))
            elif isinstance(action, ReleaseClaim):
                self.note(now, "give back", names(self.det.addresses))
                self.claim_generation += 1  # renewals still on their way are dropped (see stale)
            # Transmit (status frames) and Announce change nothing a timeline shows.

    def silence_until(self, now: float) -> None:
        if now - self.last_heard > self.longest_length:
            self.longest = (self.last_heard, now)
            self.longest_length = now - self.last_heard

    def failover_decided(self, now: float) -> None:
        epoch = self.det.master_epoch if self.authenticated else None
        self.open_failover = Failover(now, self.last_heard, epoch)
        self.failovers.append(self.open_failover)

    def stale(self, result: Result) -> bool:
        """A simulated renewal of a claim given back (or replaced) since: the shell would not deliver it."""
        return self._renewals.pop(id(result), self.claim_generation) != self.claim_generation

    def _renew_after(self, sent: float) -> None:
        # What-if only: the next renewal of the claim granted, a renew period on.
        model, witness = self.model, self.det.witness
        assert model is not None and witness is not None
        sent += witness.renew_period
        renewal = RenewDone("proved", sent_at=sent)
        self._renewals[id(renewal)] = self.claim_generation
        self.schedule(sent + model.witness_latency, renewal)

    def result_done(self, now: float, result: Result) -> None:
        if isinstance(result, ClaimDone):
            self.note(now, "claimed", result.outcome + (f" ({result.detail})" if result.detail else ""))
            if self.model is not None and result.outcome == "granted":
                self._renew_after(result.answered_at)
        elif isinstance(result, RenewDone):
            if result.outcome != "proved":
                self.note(now, "renewed", result.outcome + (f" ({result.detail})" if result.detail else ""))
            if self.model is not None and result.outcome == "proved":
                self._renew_after(result.sent_at)
        elif isinstance(result, ProbeDone):
            self.note(now, "probed", "answered: " + names(result.answered) if result.answered else "silent")
        elif isinstance(result, AcquireDone):
            self.note(now, "acquired", _result_text(result, "acquired"))
            # Addresses taken complete the latest failover (once).
            latest = self.failovers[-1] if self.failovers else None
            if latest is not None and latest.took_over_at is None and result.acquired:
                latest.took_over_at = now
        elif isinstance(result, ReleaseDone):
            self.note(now, "released", _result_text(result, "released"))
        elif isinstance(result, ReachDone) and result.outcome != "answered":
            self.note(now, "reached", result.outcome + (f" ({result.detail})" if result.detail else ""))

    def schedule(self, when: float, result: Result) -> None:
        self.order += 1
        heapq.heappush(self.pending, (when, self.order, result))

    def note(self, now: float, kind: str, text: str) -> None:
        self.timeline.append(TimelineEntry(now, kind, text, self.wall(now)))

    def finish(self, mode: Literal["exact", "what-if"], end: float, notes: list[str]) -> ReplayResult:
        self.silence_until(end)
        for f in self.failovers:
            _classify(f, self.authenticated, self.outage)
        counters = self.det.counters
        if self.wall_offset is not None:
            # Entries before the first datagram get the clock offset learnt
            # later: the monotonic and wall clocks advance together.
            self.timeline = [e if e.wall is not None else dataclasses.replace(e, wall=e.time + self.wall_offset)
                             for e in self.timeline]
        return ReplayResult(
            mode=mode,
            start=self.setup.start,
            end=end,
            timing=self.setup.timing,
            final_state=self.det.state,
            timeline=self.timeline,
            failovers=self.failovers,
            false_suspicions=counters.false_suspicions,
            datagrams=self.datagrams,
            accepted=counters.accepted,
            rejected=dict(counters.rejected),
            longest_silence=self.longest,
            paths=[self.paths[k] for k in sorted(self.paths)],
            divergences=self.divergences,
            lost=self.lost,
            notes=notes,
        )


def replay_exact(
    setup: Setup,
    events: Iterable[Event],
    *,
    outage: float = DEFAULT_OUTAGE,
    observe: Callable[[float, list[Action]], None] | None = None,
) -> ReplayResult:
    """Feed a native trace's events to a fresh detector exactly as recorded.

    ``observe(now, actions)`` sees every list of actions the detector returns
    (status frames included), e.g. to compare them with the daemon's.
    """
    det = setup.detector()
    # A replay that diverged (another key, another build of the core) feeds
    # recorded results the replayed detector never asked for: counted and in
    # the timeline as alarms, never raised, whatever the test suite's mode.
    det.strict = False
    run = _Run(setup, det, outage)
    now = setup.start
    end: float | None = None
    # Bound methods in locals: this loop runs once per heartbeat of a day.
    receive, heard, record = det.receive_datagram, run.heard, run.record
    count = 0
    for event in events:
        now = event.time
        if type(event) is Datagram:
            count += 1
            if event.wall is not None:
                run.wall_offset = event.wall - now
            actions = receive(now, event.data, event.source, event.path)
            verdict = det.last_verdict
            if verdict == "accepted":
                heard(now, event.path)
            if verdict != event.verdict:
                run.divergences.append(Divergence(now, event.verdict, verdict))
            if observe is not None:
                observe(now, actions)
            if actions:
                record(now, actions, None)
        elif isinstance(event, TimerFired):
            actions = det.handle_timer(now)
            if observe is not None:
                observe(now, actions)
            record(now, actions, None)
        elif isinstance(event, ActionResult):
            run.result_done(now, event.result)
            actions = det.action_done(now, event.result)
            if observe is not None:
                observe(now, actions)
            record(now, actions, None)
        elif isinstance(event, ConflictSeen):
            actions = det.conflict_seen(now, event.addresses)
            if observe is not None:
                observe(now, actions)
            record(now, actions, None)
        elif isinstance(event, HealthChanged):
            run.note(now, "health", "healthy" if event.healthy else f"unhealthy: {event.reason}")
            actions = det.health_changed(now, event.healthy, event.reason)
            if observe is not None:
                observe(now, actions)
            record(now, actions, None)
        elif isinstance(event, LinkChanged):
            run.note(now, "link", f"{event.interface} {'up' if event.up else 'down'}")
            actions = det.link_changed(now, event.interface, event.up)
            if observe is not None:
                observe(now, actions)
            record(now, actions, None)
        elif isinstance(event, StopRequested):
            run.note(now, "stop", "releasing what is held" if event.release else "keeping what is held")
            actions = det.shutdown(now, release=event.release)
            if observe is not None:
                observe(now, actions)
            record(now, actions, None)
        elif isinstance(event, Lost):
            run.lost += event.count
            run.note(now, "lost", f"{event.count} events were not recorded here: replay is not exact past this point")
        elif isinstance(event, End):
            end = event.time
        else:
            raise TypeError(f"not a trace event: {event!r}")
    run.datagrams = count
    notes = []
    if end is None:
        notes.append("the trace has no end line (the daemon did not close it): it ends at its last event")
    return run.finish("exact", now if end is None else end, notes)


def replay_what_if(
    setup: Setup,
    arrivals: Iterable[Arrival],
    *,
    model: ActionModel = ActionModel(),
    end: float | None = None,
    lost: int = 0,
    outage: float = DEFAULT_OUTAGE,
) -> ReplayResult:
    """Feed only the datagrams, in time order; timers at each deadline, actions answered by ``model``.

    ``end``: run the clock on to this time after the last datagram (the trace's
    end), so a master that falls silent at the end is still detected.
    ``lost``: events the recorder dropped (reported in the summary).

    The detector runs offline: the recording's acknowledgements are of the
    real backup's status frames, not of the ones this run would send, so every
    authentic, unseen heartbeat counts at the time it was recorded.
    """
    det = setup.detector(offline=True)
    run = _Run(setup, det, outage)
    run.model = model
    run.lost = lost
    pending = run.pending
    now = setup.start

    def advance(until: float) -> None:
        # Every timer deadline and action completion due before ``until``,
        # in time order; completions first when due at the same instant.
        nonlocal now
        for _ in range(1_000_000):
            deadline = det.next_deadline()
            due = pending[0][0] if pending else math.inf
            if deadline is None:
                deadline = math.inf
            if due <= deadline and due < until:
                when, _, result = heapq.heappop(pending)
                if run.stale(result):
                    continue
                now = max(now, when)
                run.result_done(now, result)
                run.record(now, det.action_done(now, result), model)
            elif deadline < until:
                now = max(now, deadline)
                run.record(now, det.handle_timer(now), model)
            else:
                return
        raise RuntimeError("the detector asked for a million timers without time passing")

    # Bound methods in locals: this loop runs once per heartbeat of a day.
    receive, next_deadline, heard, record = det.receive_datagram, det.next_deadline, run.heard, run.record
    count = 0
    for t, path, source, data, wall in arrivals:
        if pending:
            advance(t)
        else:
            deadline = next_deadline()
            if deadline is not None and deadline < t:
                advance(t)
        now = t
        count += 1
        if wall is not None:
            run.wall_offset = wall - t
        actions = receive(t, data, source, path)
        if det.last_verdict == "accepted":
            heard(t, path)
        if actions:
            record(t, actions, model)
    run.datagrams = count
    stop = now if end is None else max(now, end)
    advance(math.nextafter(stop, math.inf))
    return run.finish("what-if", stop, [])


def _classify(f: Failover, authenticated: bool, outage: float) -> None:
    if f.master_back_at is None:
        f.false, f.why = False, "the master was not heard again before the trace ended"
        return
    silence = f.master_back_at - f.last_heard
    if authenticated and f.master_epoch is not None and f.back_epoch is not None:
        if f.back_epoch == f.master_epoch:
            f.false, f.why = True, f"the master came back {silence:.3f} s after its last heartbeat without restarting (same epoch)"
        else:
            f.false, f.why = False, f"the master restarted (new epoch) {silence:.3f} s after its last heartbeat"
        return
    if silence < outage:
        f.false, f.why = True, f"the master was heard again after {silence:.3f} s of silence (< {outage:g} s outage threshold)"
    else:
        f.false, f.why = False, f"the master was silent {silence:.3f} s (>= {outage:g} s: taken for an outage)"


def _result_text(result: AcquireDone | ReleaseDone, done: str) -> str:
    parts = [f"{done}: {names(getattr(result, done))}"]
    if result.failed:
        parts.append(f"failed: {names(result.failed)}")
    if result.refused:
        parts.append(f"refused: {names(result.refused)}")
    return "; ".join(parts)
