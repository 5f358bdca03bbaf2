"""Lost links in the cores: a master or a backup whose address's link goes down lets go.

Charter: pure cores under virtual clocks (no sockets, no netlink), one row of
the ``--- links ---`` blocks per test (tests/test_e2e_links.py plays the whole
of the bench's scenario 2 in namespaces). A link counts through one verdict
with the health checks (``_healthy``: checks AND links): down, the master
steps down as an unhealthy one does, the backup declines to take over; unlike
a failing check, a down link makes a holding backup release.
"""

from __future__ import annotations

from _drive import KEY, VIPS, Driver, PeerMaster, detector

from failoverd.core import wire
from failoverd.core.actions import (
    Acquire,
    AcquireDone,
    Alarm,
    Release,
    ReleaseDone,
    StateChanged,
    Transmit,
)
from failoverd.core.master import Master
from failoverd.core.settings import MasterSettings


def _backup(epoch: int = 3) -> wire.Sealer:
    return wire.Sealer(KEY, wire.ROLE_BACKUP, epoch, 1.0, 0.0)


def _frames(actions) -> list[wire.Heartbeat]:
    return [wire.decode(a.payload, KEY) for a in actions if isinstance(a, Transmit)]


def _alarms(actions) -> list[Alarm]:
    return [a for a in actions if isinstance(a, Alarm)]


def _holding_master(backup: wire.Sealer) -> Master:
    """A managing master holding its addresses that has heard ``backup`` (its heartbeats acknowledge it)."""
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, held=VIPS, key=KEY, epoch=9)
    (hb,) = _frames(m.handle_timer(0.0))
    m.receive_datagram(0.01, backup.seal(0.01, holds=False, ack_epoch=9, ack_seq=hb.seq), "b", "priv0")
    assert m.state == "holding"
    return m


# --- the master ----------------------------------------------------------------------------------


def test_a_master_whose_link_goes_down_releases_at_once_then_says_leaving_and_rejoins_when_it_is_up() -> None:
    backup = _backup()
    m = _holding_master(backup)
    out = m.link_changed(0.5, "pub0", False)
    assert m.state == "releasing" and [a.addresses for a in out if isinstance(a, Release)] == [VIPS]
    (alarm,) = _alarms(out)
    assert alarm.level == "critical" and alarm.mail and alarm.message.startswith("link pub0 down: stepping down")
    assert [(a.source, a.dest, a.trigger) for a in out if isinstance(a, StateChanged)] == [
        ("holding", "releasing", "link_down")
    ]
    (goodbye,) = _frames(m.action_done(0.6, ReleaseDone(released=VIPS)))
    assert m.state == "standing_down" and goodbye.leaving and not goodbye.holds and not m.held
    # The backup takes over (it says it holds them), and answers our leaving heartbeats.
    for t in (1.6, 2.6, 3.6):
        (hb,) = _frames(m.handle_timer(t))
        assert hb.leaving
    m.receive_datagram(3.7, backup.seal(3.7, holds=True, ack_epoch=9, ack_seq=m._sealer.seq), "b", "priv0")
    assert m.snapshot(3.7)["links_down"] == ["pub0"]
    out = m.link_changed(4.0, "pub0", True)
    (hello,) = _frames(out)
    assert m.state == "waiting" and not hello.leaving and not hello.holds
    assert "link pub0 up again" in _alarms(out)[0].message
    # Never an add before the backup says it released, answering a heartbeat without "leaving".
    assert not any(isinstance(a, Acquire) for t in (5.0, 6.0) for a in m.handle_timer(t))
    out = m.receive_datagram(6.1, backup.seal(6.1, holds=False, ack_epoch=9, ack_seq=m._sealer.seq), "b", "priv0")
    assert m.state == "acquiring" and [a.addresses for a in out if isinstance(a, Acquire)] == [VIPS]
    m.action_done(6.2, AcquireDone(acquired=VIPS))
    assert m.state == "holding" and m.held == VIPS


def test_a_master_stays_down_until_every_link_is_up_and_its_checks_pass() -> None:
    m = _holding_master(_backup())
    m.health_changed(0.5, False, "check 'curl' exited 7")
    m.action_done(0.6, ReleaseDone(released=VIPS))
    assert m.state == "standing_down"
    out = m.link_changed(1.0, "pub0", False)
    assert m.state == "standing_down" and "health check fails (check 'curl' exited 7)" in _alarms(out)[0].message
    out = m.health_changed(1.5, True)
    assert m.state == "standing_down" and _frames(out) == []
    assert "link pub0 down: still standing down" in _alarms(out)[0].message
    m.health_changed(2.0, False, "again")
    m.link_changed(2.5, "pub0", True)
    assert m.state == "standing_down"  # the check still fails
    m.link_changed(3.0, "pub0", False)
    m.health_changed(3.5, True)
    out = m.link_changed(4.0, "pub0", True)
    assert m.state == "waiting" and not _frames(out)[0].leaving


def test_a_link_lost_during_the_masters_acquire_releases_what_it_added() -> None:
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS, arp_probe=False), 0.0, key=KEY, epoch=9)
    m.handle_timer(5.0)  # the silent backup is presumed dead
    assert m.state == "acquiring"
    out = m.link_changed(5.1, "pub0", False)
    assert m.state == "acquiring" and not any(isinstance(a, Release) for a in out)
    out = m.action_done(5.2, AcquireDone(acquired=VIPS))
    assert m.state == "releasing" and [a.addresses for a in out if isinstance(a, Release)] == [VIPS]
    m.action_done(5.3, ReleaseDone(released=VIPS))
    assert m.state == "standing_down" and not m.held


def test_a_master_in_waiting_whose_link_goes_down_does_not_presume_and_acquire() -> None:
    m = Master(MasterSettings(["b"], 1.0, managed=VIPS), 0.0, key=KEY, epoch=9)
    out = m.link_changed(0.1, "pub0", False)
    assert m.state == "standing_down" and _frames(out)[0].leaving
    for t in range(1, 10):
        m.handle_timer(float(t))
    assert m.state == "standing_down" and not m.held


def test_a_link_flap_shorter_than_the_release_moves_nothing_to_the_backup() -> None:
    """Down and up again while the release is in flight: no `leaving` is ever sent, and the
    master takes the addresses back through the handshake (the cost: a brief outage)."""
    backup = _backup()
    m = _holding_master(backup)
    sent = _frames(m.link_changed(0.50, "pub0", False))
    sent += _frames(m.link_changed(0.51, "pub0", True))
    assert m.state == "releasing"
    out = m.action_done(0.52, ReleaseDone(released=VIPS))
    sent += _frames(out)
    assert m.state == "waiting" and sent and not any(hb.leaving for hb in sent)
    m.receive_datagram(0.6, backup.seal(0.6, holds=False, ack_epoch=9, ack_seq=m._sealer.seq), "b", "priv0")
    assert m.state == "acquiring"


def test_only_the_managed_addresses_links_count_and_a_repeat_changes_nothing() -> None:
    m = _holding_master(_backup())
    assert m.link_changed(0.5, "priv0", False) == [] and m.state == "holding"
    assert m.link_changed(0.6, "pub0", True) == []
    m.link_changed(0.7, "pub0", False)
    assert m.link_changed(0.8, "pub0", False) == [] and m.state == "releasing"
    unmanaged = Master(MasterSettings(["b"], 1.0), 0.0, key=KEY, epoch=9)
    assert unmanaged.link_changed(0.5, "pub0", False) == [] and unmanaged.state == "holding"


def test_a_stopping_master_ignores_its_links() -> None:
    m = _holding_master(_backup())
    m.shutdown(0.5)
    assert m.link_changed(0.6, "pub0", False) == [] and m.state == "releasing"
    out = m.action_done(0.7, ReleaseDone(released=VIPS))
    assert m.state == "stopped" and _frames(out)[0].leaving
    assert m.link_changed(0.8, "pub0", True) == [] and m.state == "stopped"


# --- the backup ----------------------------------------------------------------------------------


def test_a_holding_backup_whose_link_goes_down_releases_and_does_not_take_over_again_until_it_is_up() -> None:
    d = detector()
    driver = Driver(d)
    driver.advance(5.0)
    assert d.state == "failed_over" and d.held == VIPS
    out = d.link_changed(5.1, "pub0", False)
    driver._handle(out)
    assert [a.addresses for a in out if isinstance(a, Release)] == [VIPS] and d.state == "recovering"
    (alarm,) = _alarms(out)
    assert alarm.level == "critical" and alarm.mail and "link pub0 down while we hold" in alarm.message
    driver.advance(20.0)
    assert d.state == "unfit" and not d.held and len(driver.log.acquires) == 1
    declined = [a for _, a in driver.log.other if isinstance(a, Alarm) and "not taking over" in a.message]
    assert len(declined) == 1 and "our link pub0 down" in declined[0].message
    out = d.link_changed(20.0, "pub0", True)
    driver._handle(out)
    # The master's silence while our link was down proves nothing: it counts from now.
    assert d.state == "monitoring" and "listening for" in _alarms(out)[0].message
    driver.advance(20.0 + d.timing.fail_after - 0.01)
    assert len(driver.log.acquires) == 1 and not d.held
    driver.advance(20.0 + d.timing.fail_after)
    assert d.state == "failed_over" and d.held == VIPS
    assert driver.log.acquires[1][0] == 20.0 + d.timing.fail_after  # after its probe, at the deadline


def test_a_backup_whose_link_is_down_does_not_take_over_from_a_dead_master() -> None:
    d = detector()
    driver = Driver(d)
    out = d.link_changed(0.1, "pub0", False)
    assert d.state == "monitoring" and "will not take over" in _alarms(out)[0].message
    driver.advance(10.0)
    assert d.state == "unfit" and driver.log.acquires == []
    driver.deliver(10.5, PeerMaster(d, driver=driver).seal(10.5, holds=True))
    assert d.state == "monitoring"  # the master heard again: nothing to decline


def test_a_link_lost_during_the_backups_acquire_releases_what_it_added() -> None:
    d = detector()
    driver = Driver(d, action_latency=0.5)
    for step in range(100):
        driver.advance(step * 0.1)
        if driver.log.acquires:
            break
    assert d.state == "acquiring"
    cut = driver.now
    driver._handle(d.link_changed(cut, "pub0", False))
    driver.advance(cut + 10.0)
    assert driver.log.releases and driver.log.releases[0][0] == cut + 0.5 and not d.held
    assert d.state == "unfit" and len(driver.log.acquires) == 1


def test_a_backup_adopting_its_addresses_on_a_down_link_releases_them() -> None:
    from failoverd.core.detector import Detector
    from failoverd.core.settings import DetectorSettings
    from failoverd.core.timing import Timing

    d = Detector(DetectorSettings(VIPS, Timing(), master="10.9.1.1"), 0.0, key=KEY, held=VIPS)
    assert d.state == "failed_over"
    out = d.link_changed(0.0, "pub0", False)
    assert d.state == "recovering" and [a.addresses for a in out if isinstance(a, Release)] == [VIPS]


def test_a_down_link_keeps_the_backup_unfit_when_its_checks_pass_again() -> None:
    d = detector()
    driver = Driver(d)
    d.health_changed(0.1, False, "x")
    d.link_changed(0.2, "pub0", False)
    driver.advance(10.0)
    assert d.state == "unfit"
    out = d.health_changed(10.0, True)
    assert d.state == "unfit" and "link pub0 down" in _alarms(out)[0].message
    d.health_changed(11.0, False, "y")
    d.link_changed(11.5, "pub0", True)
    assert d.state == "unfit"
    driver._handle(d.health_changed(12.0, True))
    assert d.state == "suspect"  # the checks' path: the silence heard with the link up was real


def test_a_backup_whose_link_returns_just_before_its_deadline_hears_the_master_before_taking_over() -> None:
    """The race spin found: both hosts restarted while the backup was cut off, the link returns
    just before both deadlines; a backup counting the silence it could not hear would take
    over in the instant the master presumes it dead, and both would hold."""
    d = detector()
    driver = Driver(d)
    d.link_changed(0.0, "pub0", False)
    returned = d.timing.fail_after - 0.2
    driver.advance(returned)
    assert d.state == "suspect"  # its probe is due: the silence since start looks like a dead master
    driver._handle(d.link_changed(returned, "pub0", True))
    assert d.state == "monitoring"
    peer = PeerMaster(d, driver=driver)
    for beat in range(1, 6):  # the master's heartbeats, from the next one on
        driver.deliver(returned + beat, peer.seal(returned + beat, holds=True))
    driver.advance(returned + 5.5)
    assert d.state == "monitoring" and driver.log.acquires == []


def test_a_stopping_backup_releases_once_even_when_its_link_goes_down() -> None:
    d = detector()
    driver = Driver(d, action_latency=0.5)
    driver.advance(5.0)
    assert d.state == "failed_over"
    out = d.shutdown(5.0)
    out += d.link_changed(5.1, "pub0", False)
    assert len([a for a in out if isinstance(a, Release)]) == 1
