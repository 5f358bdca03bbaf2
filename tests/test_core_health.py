"""Health checks in the cores: the rise/fall hysteresis, the master's step-down, the backup's refusal.

Charter: pure cores under virtual clocks (no sockets, no processes); the
hysteresis against Hypothesis-made result sequences; the two cores coupled
through an in-memory wire and address model, with health flapping on both
hosts at random, never both holding an address and settling where the
checks say.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import pytest
from _drive import KEY, VIPS, Driver, PeerMaster, detector
from hypothesis import given, settings
from hypothesis import strategies as st

from failoverd.core import wire
from failoverd.core.actions import (
    Acquire,
    AcquireDone,
    Alarm,
    Probe,
    ProbeDone,
    Release,
    ReleaseDone,
    StateChanged,
    Transmit,
)
from failoverd.core.detector import Detector
from failoverd.core.health import Health, Hysteresis, Verdict
from failoverd.core.master import Master
from failoverd.core.settings import DetectorSettings, MasterSettings
from failoverd.core.timing import Timing

# --- hysteresis -------------------------------------------------------------------------------------

results = st.lists(st.booleans(), min_size=1, max_size=60)
thresholds = st.integers(min_value=1, max_value=5)


@given(results, thresholds, thresholds)
def test_the_verdict_changes_exactly_when_a_run_reaches_its_threshold(
    sequence: list[bool], rise: int, fall: int
) -> None:
    h = Hysteresis(rise, fall)
    verdict = None
    flipped_at = 0  # the first result always decides the verdict
    for i, passed in enumerate(sequence):
        changed = h.record(float(i), passed)
        # The reference: the first result decides; after it, the verdict flips
        # once the latest results are `rise` passes (or `fall` failures) in a row
        # against it, counted from the last flip.
        if verdict is None:
            expected = passed
        elif passed != verdict:
            need = rise if passed else fall
            since_flip = sequence[flipped_at + 1 : i + 1]
            run = next((k for k, r in enumerate(reversed(since_flip)) if r != passed), len(since_flip))
            expected = passed if run >= need else verdict
        else:
            expected = verdict
        assert changed == (expected != verdict)
        if expected != verdict:
            flipped_at = i
        verdict = expected
        assert h.verdict == verdict
        assert h.since == float(flipped_at)


@given(st.integers(min_value=2, max_value=5), st.integers(min_value=2, max_value=5), st.integers(1, 30))
def test_flapping_faster_than_rise_and_fall_never_changes_the_verdict(rise: int, fall: int, rounds: int) -> None:
    """A service failing fall-1 times, passing rise-1 times, over and over: still passing."""
    h = Hysteresis(rise, fall)
    assert h.record(0.0, True)
    t = 1.0
    for _ in range(rounds):
        for passed in [False] * (fall - 1) + [True] * (rise - 1):
            assert not h.record(t, passed)
            t += 1
    assert h.verdict is True and h.since == 0.0


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Hysteresis(0, 2)
    with pytest.raises(ValueError, match="at least one check"):
        Health([], 2, 2)


def test_the_host_is_healthy_only_when_every_check_is_and_says_which_fail() -> None:
    health = Health(["curl web", "pgrep db"], rise=2, fall=2)
    assert health.record(0.0, 0, True) is None  # the other check has no verdict yet
    assert health.record(0.0, 1, True) == Verdict(True)
    assert health.record(1.0, 1, False, "exited 1") is None
    assert health.record(2.0, 1, False, "exited 1") == Verdict(False, "check 'pgrep db' exited 1")
    assert health.record(2.5, 0, False, "exited 7") is None  # still unhealthy: no news
    assert health.record(3.0, 0, False, "exited 7") is None
    assert health.reason() == "check 'curl web' exited 7; check 'pgrep db' exited 1"
    for t in (4.0, 5.0):
        assert health.record(t, 1, True) is None  # one still fails
    assert health.record(6.0, 0, True) is None
    assert health.record(7.0, 0, True) == Verdict(True)
    assert [c["passing"] for c in health.snapshot(8.0)] == [True, True]


def test_a_first_result_that_fails_decides_at_once() -> None:
    health = Health(["curl web"], rise=3, fall=3)
    assert health.record(0.0, 0, False, "could not run: cannot open /usr/bin/nothing") == Verdict(
        False, "check 'curl web' could not run: cannot open /usr/bin/nothing"
    )


# --- the master -------------------------------------------------------------------------------------


def _backup(epoch: int = 3) -> wire.Sealer:
    return wire.Sealer(KEY, wire.ROLE_BACKUP, epoch, 1.0, 0.0)


def _frames(actions) -> list[wire.Heartbeat]:
    return [wire.decode(a.payload, KEY) for a in actions if isinstance(a, Transmit)]


def _kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


def _holding_master(backup: wire.Sealer | None = None) -> Master:
    """A managing master holding its addresses; with ``backup``, one that has heard
    that backup, so its heartbeats acknowledge the backup's epoch, as in a running pair."""
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, held=VIPS, key=KEY, epoch=9)
    (hb,) = _frames(m.handle_timer(0.0))
    if backup is not None:
        m.receive_datagram(0.01, backup.seal(0.01, holds=False, ack_epoch=9, ack_seq=hb.seq), "b", "priv0")
    assert m.state == "holding"
    return m


def test_an_unhealthy_master_releases_first_then_says_leaving_until_healthy() -> None:
    backup = _backup()
    m = _holding_master(backup)
    out = m.health_changed(0.5, False, "check 'curl' exited 7")
    assert m.state == "releasing" and _kinds(out) == ["Alarm", "StateChanged", "Release"]
    (alarm,) = [a for a in out if isinstance(a, Alarm)]
    assert alarm.level == "critical" and alarm.mail and "exited 7" in alarm.message
    (hb,) = _frames(m.handle_timer(1.0))
    assert not hb.leaving and hb.holds  # still releasing: the backup's probe would find them
    out = m.action_done(1.1, ReleaseDone(released=VIPS))
    (goodbye,) = _frames(out)  # at once, not at the next interval
    assert m.state == "standing_down" and goodbye.leaving and not goodbye.holds
    for t in (2.1, 3.1, 4.1):
        (hb,) = _frames(m.handle_timer(t))
        assert hb.leaving and not hb.holds
    # The backup, taking over, answers our leaving heartbeats (so we do not presume it dead).
    taking_over = backup.seal(4.15, holds=True, ack_epoch=9, ack_seq=m._sealer.seq)
    m.receive_datagram(4.16, taking_over, "b", "priv0")
    # A status the backup made while we said "leaving" (it was about to take over) is no handshake.
    stale = backup.seal(4.2, holds=False, ack_epoch=9, ack_seq=m._sealer.seq)
    out = m.health_changed(4.3, True)
    (hello,) = _frames(out)
    assert m.state == "waiting" and not hello.leaving and not hello.holds
    m.receive_datagram(4.31, stale, "b", "priv0")
    assert m.state == "waiting"
    # The answer to a heartbeat without "leaving" is.
    fresh = backup.seal(4.32, holds=False, ack_epoch=9, ack_seq=hello.seq)
    out = m.receive_datagram(4.33, fresh, "b", "priv0")
    assert m.state == "acquiring" and _kinds(out) == ["StateChanged", "Acquire"]
    m.action_done(4.4, AcquireDone(acquired=VIPS))
    assert m.state == "holding" and m.held == VIPS


def test_a_repeated_verdict_changes_nothing() -> None:
    m = _holding_master()
    assert m.health_changed(0.5, True) == []
    m.health_changed(0.6, False, "x")
    assert m.health_changed(0.7, False, "y") == [] and m.health_reason == "x"


def test_a_waiting_master_stands_down_and_ignores_the_backup_meanwhile() -> None:
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, key=KEY, epoch=9)
    (hb,) = _frames(m.handle_timer(0.0))
    out = m.health_changed(0.1, False, "x")
    assert m.state == "standing_down" and _frames(out)[0].leaving
    backup = _backup()
    m.receive_datagram(0.2, backup.seal(0.2, holds=False, ack_epoch=9, ack_seq=hb.seq), "b", "priv0")
    assert m.state == "standing_down"
    for t in (1.1, 2.1, 3.1, 4.1, 5.1):
        m.handle_timer(t)  # the backup's silence is no reason to probe and take them either
    assert m.state == "standing_down" and not any(isinstance(a, Probe) for a in m.handle_timer(6.1))


def test_a_check_that_falls_during_an_acquire_releases_what_it_added() -> None:
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, key=KEY, epoch=9)
    (hb,) = _frames(m.handle_timer(0.0))
    backup = _backup()
    # The handshake: the backup's answer to our first heartbeat (which it did
    # not count), our answer to its new epoch, and its answer to that.
    (ack,) = _frames(m.receive_datagram(0.05, backup.seal(0.05, holds=False, ack_epoch=9, ack_seq=hb.seq), "b", "priv0"))
    m.receive_datagram(0.1, backup.seal(0.1, holds=False, ack_epoch=9, ack_seq=ack.seq), "b", "priv0")
    assert m.state == "acquiring"
    assert _kinds(m.health_changed(0.2, False, "x")) == ["Alarm"]
    out = m.action_done(0.3, AcquireDone(acquired=VIPS))
    assert m.state == "releasing" and [a.addresses for a in out if isinstance(a, Release)] == [VIPS]
    m.action_done(0.4, ReleaseDone(released=VIPS))
    assert m.state == "standing_down"


def test_healthy_again_before_the_release_ends_goes_straight_back_to_waiting() -> None:
    m = _holding_master()
    m.health_changed(0.5, False, "x")
    m.health_changed(0.6, True)
    assert m.state == "releasing"
    out = m.action_done(0.7, ReleaseDone(released=VIPS))
    assert m.state == "waiting" and not _frames(out)[0].leaving


def test_a_release_that_fails_while_standing_down_is_retried() -> None:
    a, b = sorted(VIPS)
    m = _holding_master()
    m.health_changed(0.5, False, "x")
    m.action_done(0.6, ReleaseDone(released=frozenset({a}), failed=frozenset({b})))
    assert m.state == "standing_down" and m.held == {b}
    out = m.handle_timer(1.6)
    assert m.state == "releasing" and [x.addresses for x in out if isinstance(x, Release)] == [frozenset({b})]
    m.action_done(1.7, ReleaseDone(released=frozenset({b})))
    assert m.state == "standing_down" and not m.held


def test_a_stop_while_stepping_down_finishes_the_release_then_stops() -> None:
    m = _holding_master()
    m.health_changed(0.5, False, "x")
    assert m.shutdown(0.6) == [] and m.state == "releasing"
    out = m.action_done(0.7, ReleaseDone(released=VIPS))
    assert m.state == "stopped" and _frames(out)[0].leaving
    m2 = _holding_master()
    m2.health_changed(0.5, False, "x")
    m2.action_done(0.6, ReleaseDone(released=VIPS))
    out = m2.shutdown(0.8)
    assert m2.state == "stopped" and _frames(out)[0].leaving
    assert m2.health_changed(0.9, True) == [] and m2.state == "stopped"


def test_an_unmanaged_master_only_says_leaving_while_unhealthy() -> None:
    m = Master(MasterSettings(["b"], 1.0), 0.0, key=KEY, epoch=9)
    out = m.health_changed(0.5, False, "x")
    assert m.state == "standing_down" and not any(isinstance(a, Release) for a in out)
    assert _frames(out)[0].leaving
    assert _frames(m.handle_timer(1.5))[0].leaving
    out = m.health_changed(2.0, True)
    assert m.state == "holding" and not _frames(out)[0].leaving
    assert not _frames(m.handle_timer(3.0))[0].leaving


def test_a_legacy_master_standing_down_falls_silent() -> None:
    m = Master(MasterSettings(["b"], 1.0, legacy_message=b"heartbeat"), 0.0)
    assert m.handle_timer(0.0) == [Transmit(b"heartbeat", ("b",))]
    m.health_changed(0.5, False, "x")
    assert [a for t in (1.0, 2.0, 3.0) for a in m.handle_timer(t) if isinstance(a, Transmit)] == []
    out = m.health_changed(3.5, True)
    assert Transmit(b"heartbeat", ("b",)) in out


# --- the backup -------------------------------------------------------------------------------------


def test_an_unhealthy_backup_does_not_take_over_and_does_once_healthy_after_a_fresh_probe() -> None:
    d = detector()
    driver = Driver(d)
    out = d.health_changed(0.1, False, "check 'curl' exited 7")
    (warning,) = out
    assert warning.level == "warning" and warning.mail and "will not take over" in warning.message
    driver.advance(10.0)
    assert d.state == "unfit" and driver.log.acquires == []
    declined = [a for _, a in driver.log.other if isinstance(a, Alarm) and a.level == "critical"]
    assert len(declined) == 1 and "not taking over" in declined[0].message and "exited 7" in declined[0].message
    probes_before = len(driver.log.probes)
    driver._handle(d.health_changed(10.0, True))
    assert d.state == "suspect" and len(driver.log.probes) == probes_before + 1  # a fresh look first
    driver.advance(10.0 + d.timing.probe_duration)
    assert d.state == "failed_over" and driver.log.acquires[0][0] == pytest.approx(10.0 + d.timing.probe_duration)


def test_an_unfit_backup_hearing_the_master_again_just_monitors() -> None:
    d = detector()
    driver = Driver(d)
    d.health_changed(0.1, False, "x")
    driver.advance(5.0)
    assert d.state == "unfit"
    driver.deliver(5.5, PeerMaster(d, driver=driver).seal(5.5, holds=True))
    assert d.state == "monitoring"
    driver._handle(d.health_changed(6.0, True))
    assert d.state == "monitoring" and driver.log.acquires == []


def test_a_leaving_master_is_not_taken_over_by_an_unhealthy_backup() -> None:
    d = detector()
    driver = Driver(d)
    peer = PeerMaster(d, driver=driver)
    driver.deliver(0.5, peer.seal(0.5, holds=True))
    d.health_changed(0.6, False, "x")
    driver.deliver(0.7, peer.seal(0.7, holds=False, leaving=True))
    driver.advance(0.7 + d.timing.probe_duration)
    assert d.state == "unfit" and driver.log.acquires == []
    assert any("says it is leaving" in a.message for _, a in driver.log.other if isinstance(a, Alarm))


def test_a_contested_backup_that_turns_unhealthy_declines_when_the_wire_goes_quiet() -> None:
    d = detector()
    driver = Driver(d, answered=lambda now: VIPS if now < 4.0 else frozenset())
    driver.advance(3.5)
    assert d.state == "contested"
    d.health_changed(3.6, False, "x")
    driver.advance(8.0)
    assert d.state == "unfit" and driver.log.acquires == []


def test_a_backup_holding_the_addresses_keeps_them_when_its_check_fails() -> None:
    d = detector()
    driver = Driver(d)
    driver.advance(5.0)
    assert d.state == "failed_over"
    out = d.health_changed(5.1, False, "check 'curl' exited 7")
    assert d.state == "failed_over" and not any(isinstance(a, Release) for a in out)
    (alarm,) = out
    assert alarm.level == "critical" and "keeping them" in alarm.message
    # The master's return still takes them back, healthy or not.
    driver.deliver(6.0, PeerMaster(d, driver=driver).seal(6.0, holds=False))
    driver.advance(6.1)
    assert d.state == "monitoring" and driver.log.releases


def test_without_arp_probe_a_healthy_again_backup_takes_over_at_once() -> None:
    d = detector(arp_probe=False)
    driver = Driver(d)
    d.health_changed(0.1, False, "x")
    driver.advance(5.0)
    assert d.state == "unfit"
    out = d.health_changed(5.0, True)
    assert [a.dest for a in out if isinstance(a, StateChanged)] == ["suspect", "acquiring"]
    assert any(isinstance(a, Acquire) for a in out)


# --- the pair, coupled ------------------------------------------------------------------------------

WIRE_DELAY = 0.005
CHANGE_DELAY = 0.05


class Pair:
    """A managing master and its backup on a wire; address changes and ARP probes modelled.

    Each datagram takes the next of ``delays`` (cyclically; datagrams may
    overtake each other), or what ``delay(destination, now)`` says. A probe is answered for an address the other host
    holds when it starts or ends (a host answers any probe while its address
    is configured).
    """

    def __init__(
        self,
        delays: list[float] | None = None,
        *,
        delay: Callable[[str, float], float] | None = None,
        backup_acquire: float = CHANGE_DELAY,
    ) -> None:
        self._delays = itertools.cycle(delays or [WIRE_DELAY])
        self._delay = delay
        self._backup_acquire = backup_acquire
        self.timing = Timing(interval=1.0)
        self.master = Master(MasterSettings(["backup"], 1.0, managed=VIPS, backup_fail_after=self.timing.fail_after), 0.0, key=KEY, epoch=9)
        self.backup = Detector(DetectorSettings(VIPS, self.timing, master="master"), 0.0, key=KEY, epoch=3)
        self.holds = {"master": set(), "backup": set()}
        self.now = 0.0
        self._events: list[tuple[float, int, str, object]] = []
        self._order = itertools.count()
        self.overlaps: list[float] = []

    def core(self, host: str):
        return self.master if host == "master" else self.backup

    def other(self, host: str) -> str:
        return "backup" if host == "master" else "master"

    def at(self, when: float, host: str, what: object) -> None:
        heapq.heappush(self._events, (when, next(self._order), host, what))

    def handle(self, host: str, actions: list) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                to = self.other(host)
                delay = next(self._delays) if self._delay is None else self._delay(to, self.now)
                self.at(self.now + delay, self.other(host), ("datagram", action.payload))
            elif isinstance(action, Acquire):
                latency = self._backup_acquire if host == "backup" else CHANGE_DELAY
                self.at(self.now + latency, host, ("acquire", action.addresses))
            elif isinstance(action, Release):
                self.at(self.now + CHANGE_DELAY, host, ("release", action.addresses))
            elif isinstance(action, Probe):
                seen = set(self.holds[self.other(host)]) & action.addresses
                self.at(self.now + self.timing.probe_duration, host, ("probed", action.addresses, seen))

    def run_until(self, until: float) -> None:
        for _ in range(200_000):
            deadlines = [(self.core(h).next_deadline(), h) for h in ("master", "backup")]
            timers = [(t, h) for t, h in deadlines if t is not None]
            timer = min(timers) if timers else None
            event = self._events[0] if self._events else None
            if event is not None and (timer is None or event[0] <= timer[0]):
                if event[0] > until:
                    break
                heapq.heappop(self._events)
                self.now = max(self.now, event[0])
                self.deliver(event[2], event[3])
            elif timer is not None and timer[0] <= until:
                self.now = max(self.now, timer[0])
                self.handle(timer[1], self.core(timer[1]).handle_timer(self.now))
            else:
                break
            if self.holds["master"] & self.holds["backup"]:
                self.overlaps.append(self.now)
        else:  # pragma: no cover - a livelock
            raise AssertionError("the pair never settled")
        self.now = max(self.now, until)

    def deliver(self, host: str, what: object) -> None:
        core = self.core(host)
        kind = what[0]  # type: ignore[index]
        if kind == "datagram":
            source = "master" if host == "backup" else "backup"
            self.handle(host, core.receive_datagram(self.now, what[1], source, "priv0"))  # type: ignore[index]
        elif kind == "acquire":
            self.holds[host] |= what[1]  # type: ignore[index]
            self.handle(host, core.action_done(self.now, AcquireDone(acquired=what[1])))  # type: ignore[index]
        elif kind == "release":
            self.holds[host] -= what[1]  # type: ignore[index]
            self.handle(host, core.action_done(self.now, ReleaseDone(released=what[1])))  # type: ignore[index]
        elif kind == "probed":
            seen = set(what[2]) | (set(self.holds[self.other(host)]) & what[1])  # type: ignore[index]
            self.handle(host, core.action_done(self.now, ProbeDone(answered=frozenset(seen))))
        elif kind == "health":
            self.handle(host, core.health_changed(self.now, what[1], "" if what[1] else "check failed"))  # type: ignore[index]


health_flips = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=30.0), st.sampled_from(["master", "backup"]), st.booleans()),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(health_flips, st.booleans(), st.booleans(), st.lists(st.floats(min_value=0.001, max_value=0.5), min_size=1, max_size=8))
def test_health_flapping_on_either_host_never_gives_two_holders_and_settles_where_the_checks_say(
    flips: list[tuple[float, str, bool]], master_healthy: bool, backup_healthy: bool, delays: list[float]
) -> None:
    pair = Pair(delays)
    for when, host, healthy in sorted(flips):
        pair.at(5.0 + when, host, ("health", healthy))
    pair.at(40.0, "master", ("health", master_healthy))
    pair.at(40.0, "backup", ("health", backup_healthy))
    pair.run_until(60.0)
    assert pair.overlaps == []
    if master_healthy:
        assert pair.holds == {"master": set(VIPS), "backup": set()}
    elif backup_healthy:
        assert pair.holds == {"master": set(), "backup": set(VIPS)}
    else:
        assert not pair.holds["master"] and pair.master.state == "standing_down"


def test_the_pair_steps_down_to_the_backup_and_back() -> None:
    pair = Pair()
    pair.run_until(5.0)
    assert pair.holds == {"master": set(VIPS), "backup": set()}
    pair.at(5.0, "master", ("health", False))
    pair.run_until(5.0 + CHANGE_DELAY + WIRE_DELAY + pair.timing.probe_duration + CHANGE_DELAY + 1e-6)
    # Release, a leaving heartbeat, the backup's probe, its acquire: no waiting for silence.
    assert pair.holds == {"master": set(), "backup": set(VIPS)}
    pair.at(10.0, "master", ("health", True))
    pair.run_until(11.0)
    assert pair.holds == {"master": set(VIPS), "backup": set()} and pair.overlaps == []
    assert pair.master.state == "holding" and pair.backup.state == "monitoring"


def test_a_status_made_while_the_master_said_leaving_does_not_start_its_failback() -> None:
    """The backup answers the master's first "leaving" heartbeat with "I hold nothing" (it has
    only begun its takeover); that answer is slow to arrive. The master is healthy again by
    then, its first heartbeat since is slow too, and the backup's acquire (slow hooks) is in
    flight: taking the addresses on that old answer would put them on both hosts."""

    def slow(to: str, now: float) -> float:
        if to == "master" and 5.0 < now < 5.2:
            return 0.5  # the answer to the first "leaving" heartbeat
        if to == "backup" and 5.39 < now < 5.5:
            return 0.3  # the first heartbeat after standing down
        return WIRE_DELAY

    pair = Pair(delay=slow, backup_acquire=0.5)
    pair.run_until(5.0)
    pair.at(5.0, "master", ("health", False))
    pair.run_until(5.39)
    assert pair.backup.state == "acquiring" and pair.master.state == "standing_down"
    pair.at(5.4, "master", ("health", True))
    pair.run_until(8.0)
    assert pair.overlaps == []
    assert pair.holds == {"master": set(VIPS), "backup": set()}


def test_a_master_waiting_with_some_addresses_adopted_releases_them_before_saying_leaving() -> None:
    a, _b = sorted(VIPS)
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, held={a}, key=KEY, epoch=9)
    assert m.state == "waiting" and m.held == {a}
    out = m.health_changed(0.1, False, "x")
    assert m.state == "releasing" and [x.addresses for x in out if isinstance(x, Release)] == [frozenset({a})]
    assert _frames(out) == []
    (goodbye,) = _frames(m.action_done(0.2, ReleaseDone(released=frozenset({a}))))
    assert m.state == "standing_down" and goodbye.leaving and not goodbye.holds


def test_a_rejoined_master_gives_a_backup_taking_over_on_its_leaving_a_failure_timeout_first() -> None:
    """spin's counterexample (spec/README.md, "Health checks"), through the real cores, links up.

    The master starts with its check failing and stands down; the backup starts 0.5 s
    later. An attacker replays a heartbeat of the master's previous life to the new
    backup, whose answer the master records without counting it (it acknowledges an
    old epoch), so the master's next heartbeat, still `leaving`, counts at the backup.
    The master's check passes; its first heartbeat without `leaving` is lost and the
    `leaving` one arrives after it: the backup begins its takeover (slow hooks). None of
    its statuses counts at the master until 3 s, 2.5 s after its start (less than the
    failure timeout: links up). The master
    has counted no status since its start, so a failure timeout after its start it
    presumes the backup dead, and its probe looks while the backup's acquire is in
    flight: both hold. Counting the master's wait from its rejoin closes this."""
    rejoin = 0.7

    def lossy(to: str, now: float) -> float:
        if to == "backup" and now < 0.5:
            return 1e6  # the backup is not up yet
        if to == "backup" and 0.6 < now < rejoin:
            return 0.2  # the master's answer to the backup's first status: `leaving`, slow
        if to == "backup" and now == rejoin:
            return 1e6  # the first heartbeat without `leaving`: lost
        if to == "master" and 0.7 < now < 3.0:
            return 1e6  # every later status of the backup's until 3 s: lost
        return WIRE_DELAY

    pair = Pair(delay=lossy, backup_acquire=2.5)
    pair.backup = Detector(DetectorSettings(VIPS, pair.timing, master="master"), 0.5, key=KEY, epoch=3)
    pair.at(0.0, "master", ("health", False))
    recorded = wire.Sealer(KEY, wire.ROLE_MASTER, 8, 1.0, -100.0).seal(-50.0, holds=True)
    pair.at(0.6, "backup", ("datagram", recorded))
    pair.at(rejoin, "master", ("health", True))
    pair.run_until(1.2)
    assert pair.master.state == "waiting" and pair.backup.state == "acquiring"
    pair.run_until(5.0)
    assert pair.overlaps == []
