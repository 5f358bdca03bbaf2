"""heartbeatd's core: heartbeats on time, managed failback without overlap."""

from __future__ import annotations

from _drive import KEY, VIPS

from failoverd.core import wire
from failoverd.core.actions import AcquireDone, Alarm, Probe, ProbeDone, ReleaseDone, Transmit
from failoverd.core.master import Master
from failoverd.core.settings import MasterSettings


def _backup(epoch: int = 3) -> wire.Sealer:
    return wire.Sealer(KEY, wire.ROLE_BACKUP, epoch, 1.0, 0.0)


def _frames(actions) -> list[wire.Heartbeat]:
    return [wire.decode(a.payload, KEY) for a in actions if isinstance(a, Transmit)]


def test_heartbeats_every_interval_without_drift_or_bursts() -> None:
    m = Master(MasterSettings(["10.9.1.2", "10.9.2.2"], 0.5), 100.0, key=KEY, epoch=9)
    sent = []
    for t in [100.0, 100.5, 101.0, 103.7]:
        assert m.next_deadline() <= t
        out = m.handle_timer(t)
        sent.append((t, out))
    assert all([a.targets for a in out] == [("10.9.1.2",), ("10.9.2.2",)] for _, out in sent)
    assert m.next_deadline() == 104.2  # late by 2 s: one heartbeat, not four
    assert [f.seq for _, out in sent for f in _frames(out)] == list(range(1, 9))  # a frame per target
    assert all(f.holds for _, out in sent for f in _frames(out))  # unmanaged: always the owner


def test_legacy_heartbeat_is_the_message() -> None:
    m = Master(MasterSettings(["10.9.1.255"], 1.0, legacy_message=b"hello"), 0.0)
    assert m.handle_timer(0.0) == [Transmit(b"hello", ("10.9.1.255",))]


def test_managed_failback_waits_for_the_backup_to_release() -> None:
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, key=KEY, epoch=9)
    (hb,) = _frames(m.handle_timer(0.0))
    assert m.state == "waiting" and not hb.holds
    backup = _backup()
    # The backup still holds (it is releasing): nothing happens but that its
    # new epoch is acknowledged at once (it counts our heartbeats only then).
    (ack,) = _frames(m.receive_datagram(0.01, backup.seal(0.01, holds=True, ack_epoch=9, ack_seq=1), "b", "priv0"))
    assert m.state == "waiting" and (ack.ack_epoch, ack.ack_seq, ack.holds) == (3, 1, False)
    # A status that does not acknowledge this epoch is not enough either ...
    assert m.receive_datagram(0.02, backup.seal(0.02, holds=False, ack_epoch=8, ack_seq=5), "b", "priv0") == []
    # ... nor one answering our first heartbeat, which the backup did not count
    # (it acknowledged nothing of the backup): made while the backup perhaps
    # still heeded our previous life.
    assert m.receive_datagram(0.025, backup.seal(0.025, holds=False, ack_epoch=9, ack_seq=1), "b", "priv0") == []
    assert m.state == "waiting"
    out = m.receive_datagram(0.03, backup.seal(0.03, holds=False, ack_epoch=9, ack_seq=2), "b", "priv0")
    assert m.state == "acquiring" and [type(a).__name__ for a in out] == ["StateChanged", "Acquire"]
    out = m.action_done(0.04, AcquireDone(acquired=VIPS))
    assert m.state == "holding" and _frames(out)[0].holds  # tells the backup at once


def test_silent_backup_is_presumed_dead_only_after_its_timeout_and_a_silent_probe() -> None:
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, key=KEY, epoch=9)
    for t in (0.0, 1.0, 2.0):
        m.handle_timer(t)
    assert m.state == "waiting"
    out = m.handle_timer(3.0)
    assert m.state == "probing" and any(isinstance(a, Probe) for a in out)
    m.action_done(3.3, ProbeDone(answered=frozenset(VIPS)))  # somebody still has them
    assert m.state == "waiting"
    m.handle_timer(4.3)
    assert m.state == "probing"
    m.action_done(4.6, ProbeDone())
    assert m.state == "acquiring"


def test_shutdown_releases_before_saying_goodbye() -> None:
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, held=VIPS, key=KEY, epoch=9)
    assert m.state == "holding"  # restarted while holding: adopted
    out = m.shutdown(5.0)
    assert [type(a).__name__ for a in out] == ["StateChanged", "Release"]
    out = m.action_done(5.1, ReleaseDone(released=VIPS))
    (goodbye,) = _frames(out)
    assert goodbye.leaving and not goodbye.holds and m.state == "stopped"
    assert m.next_deadline() is None


def test_backup_silence_is_reported_once_and_its_return_too() -> None:
    m = Master(MasterSettings(["b"], 1.0), 0.0, key=KEY, epoch=9)
    backup = _backup()
    m.handle_timer(0.0)
    m.receive_datagram(0.1, backup.seal(0.1, holds=False, ack_epoch=9, ack_seq=1), "b", "priv0")
    alarms = []
    for t in range(1, 8):
        alarms += [a for a in m.handle_timer(float(t)) if isinstance(a, Alarm)]
    assert len(alarms) == 1 and "backup silent" in alarms[0].message
    out = m.receive_datagram(8.1, backup.seal(8.1, holds=False, ack_epoch=9, ack_seq=8), "b", "priv0")
    assert any(isinstance(a, Alarm) and "heard again" in a.message for a in out)


def test_forged_status_is_ignored() -> None:
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, key=KEY, epoch=9)
    m.handle_timer(0.0)
    forged = wire.Sealer(b"the wrong key, but long enough", wire.ROLE_BACKUP, 3, 1.0, 0.0)
    assert m.receive_datagram(0.1, forged.seal(0.1, holds=False, ack_epoch=9, ack_seq=1), "b", "priv0") == []
    assert m.state == "waiting" and m.counters.rejected == {"mac": 1}


def test_a_conflict_while_holding_is_answered_by_announcing_again_once_per_interval() -> None:
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, held=VIPS, key=KEY, epoch=9)
    a = sorted(VIPS)[0]
    out = m.conflict_seen(1.0, {a})
    assert [type(x).__name__ for x in out] == ["Alarm", "Announce"] and out[1].addresses == {a}
    assert m.conflict_seen(1.5, {a}) == []  # rate-limited
    assert [type(x).__name__ for x in m.conflict_seen(2.0, {a})] == ["Alarm", "Announce"]
    assert m.state == "holding" and m.held == VIPS


def test_a_waiting_master_ignores_conflicts() -> None:
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, key=KEY, epoch=9)
    assert m.conflict_seen(1.0, VIPS) == [] and m.state == "waiting"


def test_a_backup_that_still_holds_is_reported_once_per_episode() -> None:
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, held=VIPS, key=KEY, epoch=9)
    backup = _backup()
    alarms = []

    def status(t: float, holds: bool) -> list[Alarm]:
        m.handle_timer(t)
        payload = backup.seal(t, holds=holds, ack_epoch=9, ack_seq=m._sealer.seq)
        return [a for a in m.receive_datagram(t, payload, "b", "priv0") if isinstance(a, Alarm)]

    for i in range(1, 6):
        alarms += status(i * 0.5, holds=True)
    assert len(alarms) == 1 and alarms[0].level == "critical"
    status(3.0, holds=False)
    assert len(status(3.5, holds=True)) == 1


def test_replayed_statuses_of_a_dead_backup_do_not_keep_a_restarted_master_off_its_addresses() -> None:
    """Issue 9: the backup died holding nothing; an attacker replays its recorded
    status frames at their pace. They acknowledge the master's previous epoch,
    so they are not news of a live backup: the master presumes it dead after
    its timeout, probes, and acquires — as without the replay."""
    previous = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, key=KEY, epoch=8)
    backup = _backup()
    recorded = []
    for t in range(10):
        previous.handle_timer(float(t))
        recorded.append(backup.seal(t + 0.01, holds=False, ack_epoch=8, ack_seq=previous._sealer.seq))
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 100.0, key=KEY, epoch=9)  # restarted; the backup is dead
    probed_at = None
    for k in range(40):
        t = 100.0 + 0.25 * k
        out = m.handle_timer(t) if m.next_deadline() <= t else []
        out += m.receive_datagram(t + 0.01, recorded[k % len(recorded)], "b", "priv0")
        if any(isinstance(a, Probe) for a in out) and probed_at is None:
            probed_at = t
            m.action_done(t + 0.3, ProbeDone())
    assert probed_at is not None and probed_at <= 100.0 + m.backup_fail_after + 0.25
    assert m.state in ("acquiring", "holding") and m.backup_last_heard is None
    assert m.counters.accepted == 0 and m.counters.unacknowledged >= 1


def test_a_status_made_before_a_long_gap_is_delayed_not_news() -> None:
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, key=KEY, epoch=9)
    backup = _backup()
    m.handle_timer(0.0)
    withheld = backup.seal(0.05, holds=True, ack_epoch=9, ack_seq=1)
    for t in (1.0, 2.0, 3.0, 4.0):
        m.handle_timer(t)
    m.receive_datagram(4.5, withheld, "b", "priv0")  # acknowledges our frame of 4.5 s ago
    assert m.counters.rejected == {"delayed": 1} and m.backup_last_heard is None and m.backup_holds is None


def test_garp_refresh_announces_held_addresses_while_holding() -> None:
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS, garp_refresh=10.0), 0.0, held=VIPS, key=KEY, epoch=9)
    announced = []
    t = 0.0
    while t < 35.0:
        t = m.next_deadline()
        announced += [(t, a.addresses) for a in m.handle_timer(t) if type(a).__name__ == "Announce"]
    assert announced == [(10.0, VIPS), (20.0, VIPS), (30.0, VIPS)]
    m.shutdown(35.5)
    assert m.state == "releasing" and m.next_deadline() != 40.0


def test_the_status_lists_every_counter_the_core_keeps() -> None:
    # failoverctl status and watch show what the snapshot lists: all of Counters, not a few.
    import dataclasses

    from failoverd.core.actions import Counters

    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, key=KEY, epoch=9)
    m.counters.contested = 2
    counters = m.snapshot(0.0)["counters"]
    assert set(counters) == {f.name for f in dataclasses.fields(Counters)}
    assert counters["contested"] == 2
