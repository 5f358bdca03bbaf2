"""The backup's failure detector: a pure state machine.

Rules of this file
------------------
- Every state and transition is data (``STATES``, ``TRANSITIONS``), declared
  for ``transitions.Machine``; guards are conditions, and callbacks only
  *emit* actions into a list the caller receives. Nothing here reads a clock,
  a socket or a file: each entry point takes ``now`` (seconds, monotonic).
- Entry points: :meth:`Detector.receive_datagram`, :meth:`Detector.handle_timer`,
  :meth:`Detector.action_done`. Each returns the actions to run, in order;
  :meth:`Detector.next_deadline` says when the caller must call
  ``handle_timer`` next. Same inputs, same outputs.
- The common case — a valid heartbeat while all is well — changes no state
  and costs no machine trigger.

Theory of operation
-------------------
The master is *suspect* after ``Timing.suspect_after`` of silence. While it
is suspect, the ARP probe of its public addresses is timed to end exactly at
the failure deadline (``Timing.fail_after`` of silence): the answer is in when
the deadline comes, so probing costs no detection time, and it is as fresh as
it can be (a probe only sees addresses already configured; see spec/README.md
on the race it closes). At that deadline the addresses
are acquired only if nobody answered for them; otherwise the backup is
*contested* (the master is probably alive and only the heartbeat path died)
and keeps probing. A valid heartbeat while holding releases everything at
once: the master is the rightful owner. The status frames the backup sends
(authenticated mode) tell the master whether it still holds anything, which
is what lets a returning master take its addresses without overlap.

Health checks (docs/checks.md): the runtime says when this host's checks
turn unhealthy or healthy again (:meth:`Detector.health_changed`, after their
rise/fall hysteresis). An unhealthy backup does not take over: where it
would acquire, it goes to *unfit* instead and alarms, and it takes over
(after a fresh ARP probe) only once its checks pass again, unless the master
is heard first. A backup already holding the addresses when its checks fail
keeps them: it took them because the master failed or stepped down, so
releasing would leave nobody holding them, and a host that still answers
on them (ARP, the services that work, a quick refusal) serves clients
better than none (keepalived releases in its FAULT state; docs/checks.md
says why we do not).

States: monitoring, suspect, contested, unfit, acquiring, failed_over,
recovering (see spec/properties.md and docs for each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from failoverd.core import wire
from failoverd.core.actions import (
    Acquire,
    AcquireDone,
    Action,
    Addresses,
    Alarm,
    Announce,
    Counters,
    Notify,
    Probe,
    ProbeDone,
    Release,
    ReleaseDone,
    Result,
    Transmit,
)
from failoverd.core.addresses import names
from failoverd.core.machine import DeclaredMachine
from failoverd.core.settings import DetectorSettings

STATES: tuple[str, ...] = ("monitoring", "suspect", "contested", "unfit", "acquiring", "failed_over", "recovering")

# (trigger, source, dest, conditions, after). dest None = internal transition
# (no state change). Order matters: the first transition whose conditions
# hold wins.
TRANSITIONS: tuple[dict[str, Any], ...] = (
    {"trigger": "silence", "source": "monitoring", "dest": "suspect", "after": "_schedule_probe"},
    {"trigger": "probe_due", "source": "suspect", "dest": None, "after": "_start_probe"},
    {"trigger": "heartbeat", "source": "suspect", "dest": "monitoring", "after": "_false_suspicion"},
    {"trigger": "heartbeat", "source": "contested", "dest": "monitoring", "after": "_contest_over"},
    {"trigger": "heartbeat", "source": "acquiring", "dest": None, "after": "_note_master_back"},
    {"trigger": "heartbeat", "source": "failed_over", "dest": "recovering", "after": "_release_held"},
    # Our own health checks fail: where we would acquire, we decline.
    {"trigger": "deadline", "source": "suspect", "dest": "unfit",
     "conditions": ["_probe_finished", "_unhealthy"], "after": "_decline"},
    {"trigger": "probed", "source": "suspect", "dest": "unfit",
     "conditions": ["_deadline_passed", "_unhealthy"], "after": "_decline"},
    {"trigger": "probed", "source": "contested", "dest": "unfit",
     "conditions": ["_probe_silent", "_unhealthy"], "after": "_decline"},
    {"trigger": "deadline", "source": "suspect", "dest": "acquiring",
     "conditions": ["_probe_finished", "_probe_silent"], "after": "_acquire_all"},
    {"trigger": "deadline", "source": "suspect", "dest": "contested",
     "conditions": ["_probe_finished"], "after": "_contest"},
    {"trigger": "probed", "source": "suspect", "dest": "acquiring",
     "conditions": ["_deadline_passed", "_probe_silent"], "after": "_acquire_all"},
    {"trigger": "probed", "source": "suspect", "dest": "contested",
     "conditions": ["_deadline_passed", "_probe_answered"], "after": "_contest"},
    {"trigger": "probed", "source": "contested", "dest": "acquiring",
     "conditions": ["_probe_silent"], "after": "_acquire_all"},
    {"trigger": "probed", "source": "contested", "dest": None, "after": "_still_contested"},
    {"trigger": "retry", "source": "contested", "dest": None, "after": "_start_probe"},
    {"trigger": "acquired", "source": "acquiring", "dest": "recovering",
     "conditions": ["_master_back"], "after": "_release_held"},
    {"trigger": "acquired", "source": "acquiring", "dest": "failed_over", "after": "_took_over"},
    {"trigger": "retry", "source": "failed_over", "dest": "acquiring",
     "conditions": ["_some_missing"], "after": "_acquire_missing"},
    {"trigger": "released", "source": "recovering", "dest": "monitoring",
     "conditions": ["_nothing_held"], "after": "_recovered"},
    {"trigger": "released", "source": "recovering", "dest": None, "after": "_release_incomplete"},
    {"trigger": "retry", "source": "recovering", "dest": None, "after": "_release_held"},
    {"trigger": "heartbeat", "source": "recovering", "dest": None},  # already letting go
    # Another host answers on the wire for an address we hold or are adding
    # (RFC 5227 conflict detection): the master is the rightful owner, so the
    # backup yields at once instead of holding on until a heartbeat gets through.
    {"trigger": "conflict", "source": "failed_over", "dest": "recovering", "after": "_yield_held"},
    {"trigger": "conflict", "source": "acquiring", "dest": None, "after": "_note_master_back"},
    # Healthy again with the master still gone: suspect it afresh, so a new
    # probe (the last one may be long stale) decides as at any deadline.
    {"trigger": "checks_pass", "source": "unfit", "dest": "suspect", "after": "_schedule_probe"},
    {"trigger": "heartbeat", "source": "unfit", "dest": "monitoring", "after": "_unfit_over"},
)

# States in which the backup tells the master "I may hold your addresses":
# an acquire in flight counts, so the master never adds an address that is
# about to appear here.
HOLDING_STATES = frozenset({"acquiring", "failed_over", "recovering"})


@dataclass
class PathHealth:
    name: str
    source: str
    last_heard: float
    quiet: bool = False
    received: int = 0
    """Authentic, unseen master frames that arrived on this path (accepted or overtaken)."""


class Detector(DeclaredMachine):
    """The backup's view of one master.

    Parameters
    ----------
    settings: the configuration, whole (:class:`~failoverd.core.settings.DetectorSettings`:
        the addresses to take over, the timing, the master, the legacy
        message, whether to ARP-probe, the peer's name); a trace's header.
    now: the caller's monotonic time at start; the master gets a full
        ``suspect_after`` of grace from it.
    key: shared heartbeat key (authenticated mode) or ``None`` (legacy mode:
        a datagram equal to the settings' ``legacy_message`` from their ``master``).
    epoch: this backup's per-boot epoch for its status frames.
    held: addresses already on our interfaces at start (adopted, not re-added).
    offline: analysing a recording in what-if replay, not watching a live
        master: the acknowledgements in a recorded heartbeat are of another
        run's status frames, so they prove nothing here, and the recording's
        times are the truth. Every authentic, unseen frame counts.
    """

    STATES = STATES
    TRANSITIONS = TRANSITIONS

    def __init__(
        self,
        settings: DetectorSettings,
        now: float,
        *,
        key: bytes | None = None,
        epoch: int = 1,
        held: Iterable = (),
        offline: bool = False,
    ) -> None:
        self.settings = settings
        """What this detector was built with (all but the key and the run's own values): a trace's header."""
        timing = self.timing = settings.timing
        self.addresses: Addresses = frozenset(settings.addresses)
        # Timing is frozen; its derived values are read on every heartbeat and
        # every deadline query, so compute them once.
        self._suspect_after = timing.suspect_after
        self._fail_after = timing.fail_after
        self.peer = settings.peer
        self.master_address = settings.master
        self.legacy_message = settings.legacy_message
        self.arp_probe = settings.arp_probe
        self.counters = Counters()
        self.held: Addresses = frozenset(held) & self.addresses
        self.last_heard = now
        self.state_since = now
        self.paths: dict[str, PathHealth] = {}
        self.master_holds: bool | None = None
        self._key = wire.Key(key) if key is not None else None
        self._sealer = (
            wire.Sealer(self._key, wire.ROLE_BACKUP, epoch, timing.interval, now) if self._key is not None else None
        )
        self._guard = wire.ReplayGuard(timing.effective_max_delay, judge_age=not offline)
        self._offline = offline
        self._now = now
        self._out: list[Action] = []
        self._leaving_at: float | None = None
        self._probe_pending = False
        self._probe_scheduled = False
        self._answered: Addresses = frozenset()
        self._master_back = False
        self._failed: Addresses = frozenset()
        self._retry_at: float | None = None
        self._conflicting: Addresses = frozenset()
        self._garp_refresh = timing.garp_refresh
        self._garp_due: float | None = None
        self._status_due = float("-inf")
        self._status_holds = False
        self._status_epoch = -1
        self._counted_epoch = -1
        self.healthy = True
        """This host's health checks pass (or there are none); see :meth:`health_changed`."""
        self.health_reason = ""
        """Which checks fail, while unhealthy."""
        self.last_verdict = ""
        """``accepted`` or the reason the last datagram was rejected (for traces)."""
        initial = "failed_over" if self.held else "monitoring"
        self._build_machine(initial)
        if self.held:
            # Adopted after a restart: we do not know whether the master is
            # alive, so behave as after a takeover; its first heartbeat
            # releases them.
            self._failed = self.addresses - self.held
            self._retry_at = now + timing.effective_retry_interval if self._failed else None
            self._schedule_refresh(now)

    # --- entry points ------------------------------------------------------

    def receive_datagram(self, now: float, data: bytes, source: str, path: str) -> list[Action]:
        """A datagram arrived on the heartbeat port from ``source`` via ``path``."""
        self._now = now
        out: list[Action] = []
        self._out = out
        self.last_verdict = "accepted"
        if self._key is None:
            if data != self.legacy_message:
                return self._reject("message", out)
            if self.master_address is not None and source != self.master_address:
                return self._reject("source", out)
            self._heard(now, source, path, leaving=False)
            return out
        try:
            frame = wire.decode(data, self._key)
            if frame.role != wire.ROLE_MASTER:
                raise wire.WireError("role", "not from a master")
        except wire.WireError as exc:
            return self._reject(exc.reason, out)
        assert self._sealer is not None
        try:
            age = self._guard.admit(
                frame, now, self._sealer.acked_at(frame), acknowledges=self._sealer.acknowledges_us(frame)
            )
        except wire.WireError as exc:
            self._reject(exc.reason, out)
            if exc.reason == "epoch" and now >= self._status_due:
                # Perhaps a real master whose clock leapt: our answer (at the
                # status rate, never at once: the epoch is not recorded) tells
                # it our epoch, and its next heartbeat, acknowledging that, is let in.
                self._status(now, also=source)
            return out
        if not (self._offline or self._sealer.acknowledges_us(frame)):
            # Authentic and unseen, but made before the master heard from this
            # epoch of ours (we restarted, or it did and does not know us
            # yet), or a replay of such a frame: it proves nothing about the
            # master now. Answer it, so the master's next heartbeat
            # acknowledges us and counts; ignore it otherwise. Not when a newer
            # frame came first: an attacker replaying a lost heartbeat would
            # otherwise make us send a fresh status whenever it liked (spin
            # found the private-link race that reopened).
            self.last_verdict = "unacknowledged"
            self.counters.unacknowledged += 1
            if self._guard.newest_admitted:
                self._answer(now, frame, source)
            return out
        if age == "delayed":
            # Not provably young: it may have been withheld. Answering it lets
            # the master's next heartbeat prove its age directly (the newest only, as above).
            self._reject("delayed", out)
            if self._guard.newest_admitted:
                self._answer(now, frame, source)
            return out
        if age == "overtaken":
            # Overtaken by a newer frame on another path: it says that path
            # works, and nothing newer about the master (its holds or leaving
            # flags are older than what we already know).
            self.last_verdict = "overtaken"
            self.counters.overtaken += 1
            self._path_heard(now, source, path)
            return out
        self.master_holds = frame.holds
        self._heard(now, source, path, leaving=frame.leaving)
        # The first heartbeat of a master epoch that counts is answered at
        # once too: only a status answering a heartbeat we counted tells a
        # managing master that we released (see Master.receive_datagram).
        self._answer(now, frame, source, urgent=self._counted_epoch != frame.epoch)
        self._counted_epoch = frame.epoch
        return out

    def _answer(self, now: float, frame: wire.Heartbeat, source: str, *, urgent: bool = False) -> None:
        """Send our status in reply to an authentic master frame, at the protocol's rate.

        At most one status per half interval: heartbeats arriving together on
        several paths get one status (sent on all of them), and no input rate
        makes the backup transmit faster. A new master epoch or a change in
        what we hold is answered at once: that is the handshake after a
        restart and the failback handshake.
        """
        holds = self.holds_any
        if urgent or now >= self._status_due or holds != self._status_holds or frame.epoch != self._status_epoch:
            self._status(now, also=source)

    def _reject(self, reason: str, out: list[Action]) -> list[Action]:
        self.counters.reject(reason)
        self.last_verdict = reason
        return out

    def handle_timer(self, now: float) -> list[Action]:
        """The caller's clock reached :meth:`next_deadline` (or later)."""
        self._now = now
        out: list[Action] = []
        self._out = out
        self._on_timer(now)
        return out

    def _on_timer(self, now: float) -> None:
        # Deadlines are compared exactly as next_deadline() computes them: a
        # float difference (now - last) may round below the bound and leave a
        # timer that fires forever without effect.
        suspect_at = self.last_heard + self._suspect_after
        if self.state == "monitoring" and (now >= suspect_at or self._leaving_at is not None):
            self._fire("silence")
        if self.state == "suspect" and self._probe_scheduled and now >= self._probe_due():
            self._probe_scheduled = False
            self._fire("probe_due")
        if self.state == "suspect" and self._deadline_passed():
            self._fire("deadline")
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._fire("retry")
        if self.state == "failed_over" and self._garp_due is not None and now >= self._garp_due:
            # Not a state change: the periodic gratuitous ARP of what we hold.
            self._schedule_refresh(now)
            if self.held:
                self._out.append(Announce(self.held))
        self._check_paths(now)

    def action_done(self, now: float, result: Result) -> list[Action]:
        """An action emitted earlier finished with ``result``."""
        self._now = now
        out: list[Action] = []
        self._out = out
        if isinstance(result, ProbeDone):
            if not self._probe_pending:
                return out  # a probe from a suspicion that has since ended
            self._probe_pending = False
            self._answered = frozenset(result.answered) & self.addresses
            self._fire("probed")
        elif isinstance(result, AcquireDone):
            self.held = (self.held | frozenset(result.acquired)) & self.addresses
            self._failed = frozenset(result.failed) & self.addresses
            if result.failed:
                self._emit_alarm("error", f"could not acquire {names(result.failed)}", mail=True)
            if result.refused:
                self._emit_alarm("warning", f"Test hook refused to acquire {names(result.refused)}: notification only")
            self._fire("acquired")
        elif isinstance(result, ReleaseDone):
            self.held = self.held - frozenset(result.released)
            if result.failed:
                self._emit_alarm("error", f"could not release {names(result.failed)}", mail=True)
            if result.refused:
                # Notification-only mode: the administrator's Test hook keeps
                # the address; we stop tracking it so the master can proceed.
                self._emit_alarm("warning", f"Test hook refused to release {names(result.refused)}")
                self.held = self.held - frozenset(result.refused)
            self._fire("released")
        else:
            raise TypeError(f"unknown result {result!r}")
        return out

    def conflict_seen(self, now: float, addresses: Iterable) -> list[Action]:
        """Another host's ARP claims ``addresses`` (the shell watches while we hold any)."""
        self._now = now
        out: list[Action] = []
        self._out = out
        contested = frozenset(addresses) & self.addresses
        if contested and self.state in {"failed_over", "acquiring"}:
            self._conflicting = contested
            self._fire("conflict")
        return out

    def health_changed(self, now: float, healthy: bool, reason: str = "") -> list[Action]:
        """This host's health checks turned unhealthy (``reason``: which fail, how) or healthy again.

        Fed after the checks' rise/fall hysteresis (:mod:`failoverd.core.health`),
        only when the combined verdict changes; a repeat changes nothing.
        """
        self._now = now
        out: list[Action] = []
        self._out = out
        if healthy == self.healthy:
            return out
        self.healthy = healthy
        self.health_reason = "" if healthy else reason
        if healthy:
            then = f": taking over from {self.peer} after a fresh ARP probe" if self.state == "unfit" else ""
            self._emit_alarm("info", f"health checks pass again{then}", mail=True)
            self._fire("checks_pass")
            # Back in suspect past the failure deadline: decide now (a probe
            # may have been started, whose result decides instead).
            self._on_timer(now)
        elif self.state in {"acquiring", "failed_over"}:
            self._emit_alarm(
                "critical",
                f"health check fails ({reason}) while we hold {names(self.addresses)} for {self.peer}: "
                "keeping them (the master is not there to take them; releasing would leave nobody holding them)",
                mail=True,
            )
        else:
            self._emit_alarm(
                "warning",
                f"health check fails ({reason}): this backup will not take over if {self.peer} fails "
                "until its checks pass again",
                mail=True,
            )
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must be called next (``None``: only on input)."""
        if (
            self.state == "monitoring"
            and self._leaving_at is None
            and self._retry_at is None
            and len(self.paths) < 2
        ):
            return self.last_heard + self._suspect_after  # the common case, asked after every heartbeat
        candidates: list[float] = []
        if self.state == "monitoring":
            if self._leaving_at is not None:
                candidates.append(self._leaving_at)
            candidates.append(self.last_heard + self._suspect_after)
        elif self.state == "suspect":
            if self._probe_scheduled:
                candidates.append(self._probe_due())
            if not self._deadline_passed():
                candidates.append(self._fail_deadline())
        if self._retry_at is not None:
            candidates.append(self._retry_at)
        if self.state == "failed_over" and self._garp_due is not None:
            candidates.append(self._garp_due)
        if len(self.paths) > 1:
            for p in self.paths.values():
                # A path whose deadline has passed but was not marked quiet
                # (every path went silent together) is re-checked when another
                # path delivers (see _heard); waking for it again would spin.
                if not p.quiet and p.last_heard + self._fail_after > self._now:
                    candidates.append(p.last_heard + self._fail_after)
        return min(candidates) if candidates else None

    # --- status --------------------------------------------------------------

    @property
    def holds_any(self) -> bool:
        return self.state in HOLDING_STATES or bool(self.held)

    @property
    def master_epoch(self) -> int:
        """The newest master epoch recorded (0: none yet)."""
        return self._guard.epoch

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "role": "backup",
            "state": self.state,
            "since": round(now - self.state_since, 3),
            "master": self.peer,
            "mode": "authenticated" if self._key is not None else "legacy",
            "last_heard_age": round(now - self.last_heard, 3),
            "master_holds": self.master_holds,
            "paths": [
                {"name": p.name, "source": p.source, "last_heard_age": round(now - p.last_heard, 3), "healthy": not p.quiet}
                for p in sorted(self.paths.values(), key=lambda p: p.name)
            ],
            "held": sorted(str(t) for t in self.held),
            "addresses": sorted(str(t) for t in self.addresses),
            "counters": self.counters.as_status(),
            "timing": {
                "interval": self.timing.interval,
                "suspect_after": self._suspect_after,
                "fail_after": self._fail_after,
            },
            "healthy": self.healthy,
            "health_reason": self.health_reason,
        }

    # --- internals -----------------------------------------------------------

    def _heard(self, now: float, source: str, path: str, *, leaving: bool) -> None:
        self.counters.accepted += 1
        self._path_heard(now, source, path)
        if leaving:
            # The master says it is going away: fail over now rather than
            # after the timeout, still subject to the ARP probe.
            if self._leaving_at is None:
                self._leaving_at = now
                self._on_timer(now)
            return
        self.last_heard = now
        self._leaving_at = None
        if self.state != "monitoring":
            self._fire("heartbeat")

    def _path_heard(self, now: float, source: str, path: str) -> None:
        health = self.paths.get(path)
        if health is None:
            self.paths[path] = PathHealth(path, source, now, received=1)
        else:
            health.received += 1
            health.last_heard = now
            health.source = source
            if health.quiet:
                health.quiet = False
                self._emit_alarm("info", f"heartbeat path {path} delivers again", path=path)
        self._check_paths(now)

    def _status(self, now: float, also: str | None = None) -> None:
        """Seal and send our status to the master on every path we know it by (and to ``also``)."""
        assert self._sealer is not None
        holds = self.holds_any
        self._status_due = now + self.timing.interval / 2
        self._status_holds = holds
        self._status_epoch = self._guard.epoch
        # Sealed once per target: a frame is valid once, on one path (see
        # wire.REPLAY_WINDOW), so a copy replayed on another path is refused.
        # ``also``: the source of a frame that does not count yet (the
        # handshake after a restart), whose path we do not know as working.
        epoch, seq = self._guard.newest
        targets = {p.source for p in self.paths.values()}
        if also is not None:
            targets.add(also)
        for target in sorted(targets):
            self._out.append(Transmit(self._sealer.seal(now, holds=holds, ack_epoch=epoch, ack_seq=seq), (target,)))

    def _check_paths(self, now: float) -> None:
        if len(self.paths) < 2:
            return
        for p in self.paths.values():
            if p.quiet or now < p.last_heard + self._fail_after:
                continue
            others = [q.name for q in self.paths.values() if q is not p and now < q.last_heard + self._fail_after]
            if others:
                p.quiet = True
                self._emit_alarm(
                    "warning",
                    f"heartbeat path {p.name} quiet for {now - p.last_heard:.1f} s while {', '.join(sorted(others))} "
                    "still delivers: one more failure and the backup cannot tell a dead master from a cut link",
                    mail=True,
                    path=p.name,
                )

    def _fail_deadline(self) -> float:
        deadline = self.last_heard + self._fail_after
        return min(deadline, self._leaving_at) if self._leaving_at is not None else deadline

    def _emit_alarm(self, level: str, message: str, mail: bool = False, *, path: str | None = None) -> None:
        self._out.append(Alarm(level, message, mail, path=path))  # type: ignore[arg-type]

    # conditions

    def _probe_finished(self) -> bool:
        return not self._probe_pending and not self._probe_scheduled

    def _probe_silent(self) -> bool:
        return not self._answered

    def _probe_answered(self) -> bool:
        return bool(self._answered)

    def _deadline_passed(self) -> bool:
        return self._now >= self._fail_deadline()

    def _master_back(self) -> bool:
        return self._master_back

    def _some_missing(self) -> bool:
        return bool(self._failed)

    def _nothing_held(self) -> bool:
        return not self.held

    def _unhealthy(self) -> bool:
        return not self.healthy

    # actions

    def _probe_due(self) -> float:
        """The suspect-time probe ends exactly at the failure deadline.

        A probe only sees an address that is already configured. Probing as
        late as possible leaves the peer the longest time to finish an
        acquire it had started (the managed-failback handshake) before we
        look, so a stale "silent" answer cannot outlive the deadline.
        """
        return max(self._fail_deadline() - self.timing.probe_duration, self.last_heard)

    def _schedule_probe(self) -> None:
        if not self.arp_probe:
            self._answered = frozenset()
            return
        self._probe_scheduled = True
        if self._now >= self._probe_due():
            self._probe_scheduled = False
            self._start_probe()

    def _start_probe(self) -> None:
        self._answered = frozenset()
        if self.arp_probe:
            self._probe_pending = True
            self._out.append(Probe(self.addresses))
        else:
            self._probe_pending = False
            if self.state == "contested":
                self._fire("probed")

    def _false_suspicion(self) -> None:
        self.counters.false_suspicions += 1
        self._probe_pending = False
        self._probe_scheduled = False

    def _contest(self) -> None:
        self.counters.contested += 1
        self._retry_at = self._now + self.timing.effective_retry_interval
        self._out.append(
            Alarm(
                "critical",
                f"{self.peer} silent for {self._now - self.last_heard:.1f} s but "
                f"{names(self._answered)} still answer(s) on the wire: not taking over "
                "(is only the heartbeat path down?)",
                True,
                addresses=self._answered,
            )
        )

    def _decline(self) -> None:
        self._retry_at = None
        self._probe_pending = False
        why = "says it is leaving" if self._leaving_at is not None else f"silent for {self._now - self.last_heard:.1f} s"
        self._out.append(
            Alarm(
                "critical",
                f"{self.peer} {why} but our own health check fails ({self.health_reason}): not taking over "
                f"{names(self.addresses)} until it passes again",
                True,
            )
        )

    def _unfit_over(self) -> None:
        self._out.append(Alarm("info", f"{self.peer} heard again; no takeover was needed"))

    def _still_contested(self) -> None:
        self._retry_at = self._now + self.timing.effective_retry_interval

    def _contest_over(self) -> None:
        self._retry_at = None
        self._probe_pending = False
        self._out.append(Alarm("info", f"{self.peer} heard again; no longer contested"))

    def _note_master_back(self) -> None:
        self._master_back = True

    def _acquire_all(self) -> None:
        self._master_back = False
        self.counters.failovers += 1
        wanted = self.addresses - self.held
        self._out.append(Notify("down", self.peer, self.addresses))
        self._out.append(Acquire(wanted))

    def _acquire_missing(self) -> None:
        self._master_back = False
        missing = self._failed
        self._failed = frozenset()
        self._out.append(Acquire(missing))

    def _schedule_refresh(self, now: float) -> None:
        self._garp_due = None if self._garp_refresh is None else now + self._garp_refresh

    def _took_over(self) -> None:
        self._schedule_refresh(self._now)
        if self._failed:
            self._retry_at = self._now + self.timing.effective_retry_interval

    def _release_held(self) -> None:
        self._master_back = False
        self._retry_at = None
        self._failed = frozenset()
        if self._trigger_name == "heartbeat" or (self._trigger_name == "acquired"):
            self.counters.failbacks += 1
            self._out.append(Notify("up", self.peer, self.addresses))
        self._out.append(Release(self.held))

    def _yield_held(self) -> None:
        self._out.append(
            Alarm(
                "critical",
                f"another host answers for {names(self._conflicting)} on the wire: releasing "
                f"{names(self.held)} (the master must be alive; only the heartbeat path is down?)",
                True,
            )
        )
        self._release_held()

    def _release_incomplete(self) -> None:
        self._retry_at = self._now + self.timing.effective_retry_interval

    def _recovered(self) -> None:
        self._retry_at = None
        if self._sealer is not None and self.paths:
            # Tell the master at once that we hold nothing, so its managed
            # failback does not wait for its next heartbeat.
            self._status(self._now)
