"""Behaviours of the backup's detector that the properties do not single out."""

from __future__ import annotations

from _drive import KEY, MASTER, VIPS, Driver, PeerMaster, detector

from failoverd.core import wire
from failoverd.core.actions import AcquireDone, Alarm, Notify, Probe, ReleaseDone, StateChanged
from failoverd.core.addresses import parse_triplet
from failoverd.core.detector import STATES, TRANSITIONS, Detector
from failoverd.core.settings import DetectorSettings
from failoverd.core.timing import Timing

A, B = sorted(VIPS)


def _peer(d: Detector, epoch: int = 7, driver: Driver | None = None) -> PeerMaster:
    return PeerMaster(d, epoch=epoch, driver=driver)


def test_transition_table_names_only_declared_states() -> None:
    for t in TRANSITIONS:
        sources = t["source"] if isinstance(t["source"], list) else [t["source"]]
        assert set(sources) <= set(STATES)
        assert t["dest"] is None or t["dest"] in STATES


def test_answered_probe_means_contested_not_takeover() -> None:
    d = detector()
    driver = Driver(d, answered=lambda now: frozenset({A}))
    driver.advance(3.0)
    assert d.state == "contested" and driver.log.acquires == []
    assert any(isinstance(a, Alarm) and a.level == "critical" and a.mail for _, a in driver.log.other)
    driver.advance(6.0)
    assert len(driver.log.probes) >= 3  # keeps probing, once per retry interval
    driver.answered = lambda now: frozenset()
    driver.advance(8.0)
    assert d.state == "failed_over" and d.held == VIPS


def test_partial_acquire_is_tracked_exactly_and_retried() -> None:
    d = detector()
    _to_acquiring(d)
    assert d.state == "acquiring"
    d.action_done(3.1, AcquireDone(acquired=frozenset({A}), failed=frozenset({B})))
    assert d.state == "failed_over" and d.held == {A}
    assert d.next_deadline() == 3.1 + d.timing.effective_retry_interval
    actions = d.handle_timer(4.1)
    assert [a.addresses for a in actions if type(a).__name__ == "Acquire"] == [frozenset({B})]
    d.action_done(4.2, AcquireDone(acquired=frozenset({B})))
    assert d.held == VIPS
    # ... and release releases exactly what is held.
    out = d.receive_datagram(5.0, _peer(d).seal(5.0, holds=False), MASTER, "priv0")
    assert [a.addresses for a in out if type(a).__name__ == "Release"] == [VIPS]


def test_release_failure_is_retried_until_done() -> None:
    d = Detector(DetectorSettings(VIPS, Timing()), 0.0, key=KEY, held=VIPS)
    peer = _peer(d)
    assert d.state == "failed_over"  # adopted at start
    d.receive_datagram(0.5, peer.seal(0.5, holds=False), MASTER, "priv0")
    d.action_done(0.6, ReleaseDone(released=frozenset({A}), failed=frozenset({B})))
    assert d.state == "recovering" and d.held == {B}
    out = d.handle_timer(1.6)
    assert [a.addresses for a in out if type(a).__name__ == "Release"] == [frozenset({B})]
    d.receive_datagram(1.5, peer.seal(1.5, holds=False), MASTER, "priv0")  # the master lives on
    d.action_done(1.7, ReleaseDone(released=frozenset({B})))
    assert d.state == "monitoring" and not d.held


def test_heartbeat_during_acquire_releases_when_it_completes() -> None:
    d = detector()
    _to_acquiring(d)
    d.receive_datagram(3.05, _peer(d).seal(3.05, holds=False), MASTER, "priv0")
    assert d.state == "acquiring"
    out = d.action_done(3.1, AcquireDone(acquired=VIPS))
    assert d.state == "recovering"
    assert [type(a).__name__ for a in out] == ["StateChanged", "Notify", "Release"]


def test_leaving_master_is_taken_over_without_waiting_for_the_timeout() -> None:
    d = detector()
    driver = Driver(d)
    sealer = _peer(d)
    driver.deliver(0.5, sealer.seal(0.5, holds=True))
    driver.deliver(0.9, sealer.seal(0.9, holds=False, leaving=True))
    driver.advance(0.9 + d.timing.probe_duration)
    assert driver.log.acquires and driver.log.acquires[0][0] <= 0.9 + d.timing.probe_duration + 1e-9


def test_a_quiet_path_raises_an_alarm_while_another_still_works() -> None:
    d = detector()
    sealer = _peer(d)
    d.receive_datagram(0.1, sealer.seal(0.1, holds=True), "10.9.1.1", "priv0")
    t = 0.1
    alarms = []
    while t < 6:
        t += 1.0
        out = d.receive_datagram(t, sealer.seal(t, holds=True), "10.9.2.1", "pub0")
        alarms += [a for a in out + d.handle_timer(t) if isinstance(a, Alarm)]
    quiet = [a for a in alarms if "priv0 quiet" in a.message]
    assert len(quiet) == 1 and quiet[0].mail  # once, not every second
    assert d.state == "monitoring"
    snapshot = d.snapshot(t)
    assert {p["name"]: p["healthy"] for p in snapshot["paths"]} == {"priv0": False, "pub0": True}
    out = d.receive_datagram(t + 0.1, sealer.seal(t + 0.1, holds=True), "10.9.1.1", "priv0")
    assert any(isinstance(a, Alarm) and "delivers again" in a.message for a in out)


def test_status_frames_go_to_the_master_on_every_path_sealed_once_per_path() -> None:
    d = detector()
    sealer = _peer(d)
    d.receive_datagram(0.1, sealer.seal(0.1, holds=True), "10.9.1.1", "priv0")
    assert d.receive_datagram(0.102, sealer.seal(0.102, holds=True), "10.9.2.1", "pub0") == []  # same round
    out = d.receive_datagram(1.1, sealer.seal(1.1, holds=True), "10.9.2.1", "pub0")
    assert [status.targets for status in out] == [("10.9.1.1",), ("10.9.2.1",)]
    frames = [wire.decode(status.payload, KEY) for status in out]
    assert [(f.role, f.holds, f.ack_epoch, f.ack_seq) for f in frames] == [(wire.ROLE_BACKUP, False, 7, 4)] * 2  # seq 1 was the handshake
    assert frames[0].seq != frames[1].seq


def test_status_rate_is_bounded_but_a_new_master_epoch_is_answered_at_once() -> None:
    d = detector()
    old = _peer(d, epoch=7)
    replies = [d.receive_datagram(t / 100, old.seal(t / 100, holds=True), MASTER, "priv0") for t in range(1, 101)]
    # 100 heartbeats in one second: the handshake's heartbeat and the first one
    # counted are answered at once (both at 0.01), then one status per half
    # interval (the next is due at 0.51).
    assert sum(len(r) for r in replies) == 2
    restarted = _peer(d, epoch=8)
    (status,) = d.receive_datagram(1.011, restarted.seal(1.011, holds=False), MASTER, "priv0")
    assert wire.decode(status.payload, KEY).ack_epoch == 8


def test_legacy_mode_accepts_only_the_message_from_the_master() -> None:
    d = detector(key=None)
    assert d.receive_datagram(0.5, b"heartbeat", "10.9.1.66", "priv0") == []
    assert d.last_verdict == "source"
    d.receive_datagram(0.6, b"heartbeat!", MASTER, "priv0")
    assert d.last_verdict == "message"
    d.receive_datagram(0.7, b"heartbeat", MASTER, "priv0")
    assert d.last_verdict == "accepted" and d.last_heard == 0.7


def test_failover_notifies_down_then_up() -> None:
    d = detector()
    driver = Driver(d)
    driver.advance(3.5)
    driver.deliver(4.0, _peer(d).seal(4.0, holds=False))
    notes = [a for _, a in driver.log.other if isinstance(a, Notify)]
    assert [n.direction for n in notes] == ["down", "up"]
    assert d.counters.failovers == 1 and d.counters.failbacks == 1


def test_without_arp_probe_the_deadline_alone_decides() -> None:
    d = detector(arp_probe=False)
    driver = Driver(d)
    driver.advance(3.0)
    assert driver.log.probes == [] and driver.log.acquires[0][0] == 3.0


def _to_acquiring(d: Detector) -> None:
    """Silence from t=0: suspect at 1.2 s, probe from 2.7 s, silent at the 3.0 s deadline."""
    d.handle_timer(1.2)
    d.handle_timer(d.next_deadline())
    d.action_done(3.0, _probe_silent())
    assert d.state == "acquiring"


def _probe_silent():
    from failoverd.core.actions import ProbeDone

    return ProbeDone()


def test_the_probe_is_timed_to_end_at_the_failure_deadline() -> None:
    d = detector()
    out = d.handle_timer(1.2)
    assert d.state == "suspect" and not any(isinstance(a, Probe) for a in out)
    assert d.next_deadline() == 3.0 - d.timing.probe_duration
    out = d.handle_timer(d.next_deadline())
    assert any(isinstance(a, Probe) for a in out)
    assert d.next_deadline() == 3.0
    # A probe result that arrives after the suspicion ended is ignored.
    d.receive_datagram(2.8, _peer(d).seal(2.8, holds=True), MASTER, "priv0")
    assert d.action_done(2.9, _probe_silent()) == [] and d.state == "monitoring"
    assert d.counters.false_suspicions == 1


def test_a_stale_silent_probe_cannot_outlive_the_deadline() -> None:
    """spin's counterexample: the master finishes an acquire after an early probe looked.

    The master's address appears 2 s after the last heartbeat (a slow PreAcq
    hook); a probe at suspicion time would have missed it, the probe at the
    deadline sees it and the backup stays contested instead of taking it too.
    """
    d = detector()
    driver = Driver(d, answered=lambda now: VIPS if now >= 2.0 else frozenset())
    driver.advance(3.0)
    assert d.state == "contested" and driver.log.acquires == []


def test_adopted_addresses_outside_the_configuration_are_ignored() -> None:
    stranger = parse_triplet("pub0:10.9.2.200/24")
    d = Detector(DetectorSettings(VIPS, Timing()), 0.0, key=KEY, held={A, stranger})
    assert d.held == {A} and d.state == "failed_over"


def test_heartbeats_on_two_paths_keep_both_healthy_and_copies_replayed_across_paths_are_refused() -> None:
    """heartbeatd seals a frame per target; either path's frame may arrive first."""
    d = detector()
    sealer = _peer(d)
    alarms = []
    t = 0.0
    while t < 10:
        t += 0.5
        priv, pub = sealer.seal(t, holds=True), sealer.seal(t, holds=True)
        first, second = ((priv, "priv0"), (pub, "pub0")) if int(t * 2) % 2 else ((pub, "pub0"), (priv, "priv0"))
        alarms += [a for a in d.receive_datagram(t, first[0], MASTER, first[1]) if isinstance(a, Alarm)]
        alarms += [a for a in d.receive_datagram(t + 0.001, second[0], "10.9.2.1", second[1]) if isinstance(a, Alarm)]
        # An attacker replays the priv0 frame on pub0 (or the other way round):
        assert d.receive_datagram(t + 0.002, first[0], "10.9.2.10", second[1]) == []
        alarms += [a for a in d.handle_timer(t + 0.002) if isinstance(a, Alarm)]
    assert alarms == []
    # Half the rounds the pub0 frame was sealed first but arrives second: overtaken, path health only.
    assert d.counters.accepted + d.counters.overtaken == 40 and d.counters.rejected == {"replay": 20}
    assert {p["name"] for p in d.snapshot(t)["paths"] if p["healthy"]} == {"priv0", "pub0"}


def test_rekey_switches_keys_without_disturbing_sequence_numbers() -> None:
    d = detector()
    old = _peer(d)
    d.receive_datagram(0.1, old.seal(0.1, holds=True), MASTER, "priv0")
    new_key = b"a brand new shared key, rotated"
    d.rekey(new_key)
    assert d.receive_datagram(0.2, old.seal(0.2, holds=True), MASTER, "priv0") == []
    assert d.last_verdict == "mac"
    rotated = wire.Sealer(new_key, wire.ROLE_MASTER, 7, 1.0, 0.0)
    rotated.seq = old.sealer.seq
    (status,) = d.receive_datagram(1.3, rotated.seal(1.3, holds=True), MASTER, "priv0")
    frame = wire.decode(status.payload, new_key)
    assert frame.seq == 3 and frame.ack_seq == 4  # the backup's own numbering carried on


def test_legacy_mode_cannot_be_rekeyed() -> None:
    import pytest

    with pytest.raises(ValueError, match="restart with --key-file"):
        detector(key=None).rekey(KEY)


def test_an_address_claimed_by_another_host_while_held_is_released_at_once() -> None:
    """RFC 5227 conflict detection: the master is the owner; the backup yields."""
    d = detector()
    driver = Driver(d)
    driver.advance(3.0)
    assert d.state == "failed_over"
    out = d.conflict_seen(3.5, {A})
    assert [type(a).__name__ for a in out] == ["StateChanged", "Alarm", "Release"]
    assert out[1].level == "critical" and out[2].addresses == VIPS
    assert d.conflict_seen(3.6, {A}) == []  # already letting go
    out = d.action_done(3.7, ReleaseDone(released=VIPS))
    # Back to monitoring, and at once suspect: the master has long been silent.
    assert [(a.source, a.dest) for a in out if isinstance(a, StateChanged)] == [
        ("recovering", "monitoring"), ("monitoring", "suspect")]
    assert not d.held
    driver.now = 3.7
    driver._handle(out)  # the probe of that suspicion
    # Still no heartbeat: the next probe sees the master's address and we stay contested.
    driver.answered = lambda now: frozenset({A})
    driver.advance(12.0)
    assert d.state == "contested" and len(driver.log.acquires) == 1


def test_a_conflict_during_an_acquire_releases_when_it_completes() -> None:
    d = detector()
    _to_acquiring(d)
    assert d.conflict_seen(3.05, {B}) == []
    out = d.action_done(3.1, AcquireDone(acquired=VIPS))
    assert d.state == "recovering" and [a.addresses for a in out if type(a).__name__ == "Release"] == [VIPS]


def test_conflicts_for_addresses_we_do_not_hold_change_nothing() -> None:
    d = detector()
    assert d.conflict_seen(0.5, {A}) == [] and d.state == "monitoring"


def test_an_overtaken_frame_refreshes_its_path_but_not_the_masters_flags() -> None:
    """A non-leaving frame sealed before the master's goodbye must not cancel the fast takeover."""
    d = detector()
    sealer = _peer(d)
    d.receive_datagram(0.1, sealer.seal(0.1, holds=True), MASTER, "priv0")
    early = sealer.seal(0.5, holds=True)  # sealed for pub0 before the goodbye...
    d.receive_datagram(0.55, sealer.seal(0.5, holds=False, leaving=True), MASTER, "priv0")
    assert d.state == "suspect"
    d.receive_datagram(0.56, early, "10.9.2.1", "pub0")  # ...arrives after it
    assert d.last_verdict == "overtaken" and d.state == "suspect"
    assert {p["name"] for p in d.snapshot(0.56)["paths"]} == {"priv0", "pub0"}


def test_a_restarted_backup_is_not_kept_waiting_by_a_replay_of_heartbeats_sent_while_it_was_down() -> None:
    """Issue 9: the master died while the backup was down; the attacker replays
    the master's last heartbeats to the restarted backup. They acknowledge the
    backup's previous epoch (or nothing), so they never count: the backup takes
    over at its bound, counted from its start."""
    master = wire.Sealer(KEY, wire.ROLE_MASTER, 7, 1.0, 0.0)
    recorded = [master.seal(float(t), holds=True, ack_epoch=1, ack_seq=t) for t in range(1, 30)]
    d = Detector(DetectorSettings(VIPS, Timing(), master=MASTER), 40.0, key=KEY, epoch=2)  # restarted: a new epoch
    driver = Driver(d)
    driver.now = 40.0
    for k, frame in enumerate(recorded):
        driver.deliver(40.0 + 0.3 * k, frame)
    assert driver.log.acquires and driver.log.acquires[0][0] <= 40.0 + d.timing.fail_after + 1e-9
    assert d.counters.accepted == 0 and d.counters.unacknowledged == len(recorded)


def test_a_valid_frame_with_a_sequence_number_near_the_end_of_the_range_is_refused_not_a_crash() -> None:
    """Issue 9: the window shift built a 2**64-bit integer (MemoryError)."""
    d = detector()
    peer = _peer(d)
    d.receive_datagram(0.1, peer.seal(0.1, holds=True), MASTER, "priv0")
    peer.sealer.seq = 2**64 - 3
    out = d.receive_datagram(0.2, wire.encode(wire.decode(peer.seal(0.2, holds=True), KEY)._replace(ack_seq=0), KEY),
                             MASTER, "priv0")
    assert out == [] and d.last_verdict == "seq"
    out = d.receive_datagram(1.1, peer.seal(1.1, holds=True), MASTER, "priv0")  # proves itself fresh: accepted
    assert d.last_verdict == "accepted" and d.state == "monitoring"


def test_a_rekey_forgets_an_epoch_forged_under_the_old_key() -> None:
    """Issue 9: a forger holding the old key pushed the window to a future
    epoch, so the real master's frames were refused as replays even after the
    key was rotated (the floor on disk kept the forged epoch)."""
    d = detector()
    peer = _peer(d)
    d.receive_datagram(0.1, peer.seal(0.1, holds=True), MASTER, "priv0")
    forger = wire.Sealer(KEY, wire.ROLE_MASTER, 7 + 3600 * 10**9, 1.0, 0.0)  # an hour ahead: plausible
    d.receive_datagram(0.2, forger.seal(0.2, holds=True), MASTER, "priv0")
    d.receive_datagram(0.3, peer.seal(0.3, holds=True), MASTER, "priv0")
    assert d.last_verdict == "replay"  # the window is the forger's now
    new_key = b"the rotated key, thirty-two byte"
    d.rekey(new_key)
    rotated = wire.Sealer(new_key, wire.ROLE_MASTER, 7, 1.0, 0.0)
    rotated.seq = peer.sealer.seq
    (answer,) = d.receive_datagram(0.4, rotated.seal(0.4, holds=True), MASTER, "priv0")
    assert d.last_verdict == "unacknowledged"  # the handshake under the new key, answered
    status = wire.decode(answer.payload, new_key)
    frame = rotated.seal(0.5, holds=True, ack_epoch=status.epoch, ack_seq=status.seq)
    d.receive_datagram(0.5, frame, MASTER, "priv0")
    assert d.last_verdict == "accepted" and d.last_heard == 0.5


def test_a_master_whose_clock_leapt_years_ahead_is_let_in_once_it_acknowledges_us() -> None:
    """A master that booted with a wrong clock far in the future and restarted:
    its new epoch is implausible, so it is refused until its heartbeat
    acknowledges our current epoch — which it does after our answer."""
    d = detector()
    peer = _peer(d)
    d.receive_datagram(0.1, peer.seal(0.1, holds=True), MASTER, "priv0")
    leapt = wire.Sealer(KEY, wire.ROLE_MASTER, 7 + 20 * 365 * 24 * 3600 * 10**9, 1.0, 1.0)
    (answer,) = d.receive_datagram(1.1, leapt.seal(1.1, holds=True), MASTER, "priv0")
    assert d.last_verdict == "epoch" and d.counters.rejected == {"epoch": 1}
    status = wire.decode(answer.payload, KEY)
    d.receive_datagram(1.15, leapt.seal(1.15, holds=True, ack_epoch=status.epoch, ack_seq=status.seq), MASTER, "priv0")
    assert d.last_verdict == "accepted" and d.last_heard == 1.15 and d.master_epoch == leapt.epoch
    # A frame of that epoch that does not acknowledge us (a forger without our frames) changes nothing.
    assert d.receive_datagram(1.2, wire.Sealer(KEY, wire.ROLE_MASTER, leapt.epoch * 2, 1.0, 1.0).seal(
        1.2, holds=True), MASTER, "priv0") == [] and d.last_verdict == "epoch"


def test_garp_refresh_announces_what_is_held_while_failed_over_and_only_then() -> None:
    d = Detector(DetectorSettings(VIPS, Timing(garp_refresh=60.0), master=MASTER), 0.0, key=KEY, epoch=1)
    driver = Driver(d)
    driver.advance(3.0 + 60.0 * 3 + 1)  # takes over at 3 s, then three refreshes
    announces = [(t, a.addresses) for t, a in driver.log.other if type(a).__name__ == "Announce"]
    assert [t for t, _ in announces] == [3.0 + 60.0 * k for k in (1, 2, 3)] and all(a == VIPS for _, a in announces)
    peer = _peer(d, driver=driver)
    for t in range(250, 500):  # the master is back: release, and no more refreshes while it lives
        driver.deliver(float(t), peer.seal(float(t), holds=False))
    assert d.state == "monitoring"
    assert [t for t, a in driver.log.other if type(a).__name__ == "Announce" and t >= 250.0] == []


def test_garp_refresh_must_be_positive() -> None:
    import pytest

    from failoverd.core.timing import TimingError

    with pytest.raises(TimingError, match="refresh"):
        Timing(garp_refresh=0.0)
